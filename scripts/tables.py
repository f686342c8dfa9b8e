"""Snakemake rule `tables`: the comparison table, the reproduction of the reference report and the optimizers'
step costs (CSV, Markdown, LaTeX)."""
from pathlib import Path

import pandas as pd

from adabench.analysis.tables import (comparison_table, display_comparison, display_reproduction, overhead_table,
                                      reproduction_table, rounded, write_table)
from adabench.pipeline import start_job
from adabench.study import Study

sm = snakemake  # noqa: F821  (injected by Snakemake)
log = start_job(sm)
runs = pd.read_csv(sm.input.runs)
comparison = comparison_table(runs)
write_table(comparison, display_comparison(comparison), Path(sm.output.comparison[0]).with_suffix(""))
study = Study(sm.config)
reference = [(run, study.spec(run.problem, run.optimizer, run.hyperparameters, 0).setting) for run in study.reference]
reproduction = reproduction_table(runs, reference)
write_table(reproduction, display_reproduction(reproduction), Path(sm.output.reproduction[0]).with_suffix(""))
overhead = overhead_table(runs)
write_table(overhead, rounded(overhead), Path(sm.output.overhead[0]).with_suffix(""))
log(f"comparison: {len(comparison)} rows; reproduction of the reference report: {len(reproduction)} rows; "
    f"optimizer overhead: {len(overhead)} rows")
