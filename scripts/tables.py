"""Snakemake rule `tables`: the comparison table, the reproduction of the reference report, the optimizers'
step costs and what the study cost per machine (CSV, Markdown, LaTeX)."""
from pathlib import Path

import pandas as pd

from adabench.analysis.tables import (comparison_table, compute_table, display_comparison, display_reproduction,
                                      overhead_table, reproduction_table, rounded, write_table)
from adabench.joblog import job_log

sm = snakemake  # noqa: F821  (injected by Snakemake)
log = job_log(sm)  # the tables and the rule's params alone: no registry read, no torch
runs = pd.read_csv(sm.input.runs)
comparison = comparison_table(runs)
write_table(comparison, display_comparison(comparison), Path(sm.output.comparison[0]).with_suffix(""))
reproduction = reproduction_table(runs, sm.params.reference)
write_table(reproduction, display_reproduction(reproduction), Path(sm.output.reproduction[0]).with_suffix(""))
overhead = overhead_table(runs)
write_table(overhead, rounded(overhead), Path(sm.output.overhead[0]).with_suffix(""))
compute = compute_table(runs)
write_table(compute, rounded(compute), Path(sm.output.compute[0]).with_suffix(""))
log(f"comparison: {len(comparison)} rows; reproduction of the reference report: {len(reproduction)} rows; "
    f"optimizer overhead: {len(overhead)} rows; compute: {len(compute)} rows")
