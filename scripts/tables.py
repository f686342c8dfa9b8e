"""Snakemake rule `tables`: the comparison table, the reproduction of the reference report, the optimizers'
step costs, what the study cost per machine and each copy of an optimizer against its original (CSV, Markdown,
LaTeX)."""
from pathlib import Path

import pandas as pd

from adabench.analysis.tables import (comparison_table, compute_table, display_comparison,
                                      display_implementation_checks, display_reproduction, implementation_check_table,
                                      overhead_table, reproduction_table, rounded, write_table)
from adabench.workflow.joblog import job_log

sm = snakemake  # noqa: F821  (injected by Snakemake)
log = job_log(sm)  # the tables and the rule's params alone: no registry read, no torch
runs = pd.read_csv(sm.input.runs)
# what the problems declare (metric bounds, chance levels) and which optimizers are copies of another (no competitors)
declarations, checks = sm.params.declarations, sm.params.checks
comparison = comparison_table(runs, declarations, checks)
write_table(comparison, display_comparison(comparison), Path(sm.output.comparison[0]).with_suffix(""))
reproduction = reproduction_table(runs, sm.params.reference, declarations)
write_table(reproduction, display_reproduction(reproduction), Path(sm.output.reproduction[0]).with_suffix(""))
overhead = overhead_table(runs)
write_table(overhead, rounded(overhead), Path(sm.output.overhead[0]).with_suffix(""))
compute = compute_table(runs)
write_table(compute, rounded(compute), Path(sm.output.compute[0]).with_suffix(""))
implementation_checks = implementation_check_table(runs, checks)
write_table(implementation_checks, display_implementation_checks(implementation_checks),
            Path(sm.output.implementation_checks[0]).with_suffix(""))
log(f"comparison: {len(comparison)} rows; reproduction of the reference report: {len(reproduction)} rows; "
    f"optimizer overhead: {len(overhead)} rows; compute: {len(compute)} rows; "
    f"implementation checks: {len(implementation_checks)} rows")
