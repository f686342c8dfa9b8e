"""Snakemake rule `figure`: draw one figure of adabench.analysis.figures by name, from its tables."""
import pandas as pd
import seaborn as sns

from adabench.analysis import figures
from adabench.pipeline import start_job

sm = snakemake  # noqa: F821  (injected by Snakemake)
log = start_job(sm)
sns.set_theme(style=sm.params.style)
tables = {name: pd.read_csv(path) for name, path in sm.input.items()}
draw = getattr(figures, sm.wildcards.figure)
draw(**tables, outputs=[sm.output.png, sm.output.pdf], dpi=sm.params.dpi)
log(f"drew {sm.output.png} and {sm.output.pdf}")
