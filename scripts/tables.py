"""Snakemake rule `tables`: the comparison and seed-vs-pipeline tables (CSV, Markdown, LaTeX)."""
from pathlib import Path

import pandas as pd

from adabench.analysis.tables import (comparison_table, display_comparison, display_seed_comparison,
                                      seed_comparison_table, write_table)
from adabench.pipeline import LogFile

sm = snakemake  # noqa: F821  (injected by Snakemake)
log = LogFile(sm.log[0])
runs = pd.read_csv(sm.input.runs)
comparison = comparison_table(runs)
write_table(comparison, display_comparison(comparison), Path(sm.output.comparison[0]).with_suffix(""))
versus_seed = seed_comparison_table(runs, sm.params.seed_reference)
write_table(versus_seed, display_seed_comparison(versus_seed), Path(sm.output.seed[0]).with_suffix(""))
log(f"comparison: {len(comparison)} rows; seed vs pipeline: {len(versus_seed)} rows")
