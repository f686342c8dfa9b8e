"""Snakemake rule `figure`: draw one figure of adabench.analysis.figures by name, from its tables and what the
study's problems declare (problems.json). No torch: drawing needs none."""
import pandas as pd
import seaborn as sns

from adabench.analysis import figures
from adabench.core.atomic import read_json
from adabench.workflow.joblog import job_log

sm = snakemake  # noqa: F821  (injected by Snakemake)
log = job_log(sm)
sns.set_theme(style=sm.params.style)
tables = {name: pd.read_csv(path) for name, path in sm.input.items() if name != "problems"}
problems = read_json(sm.input.problems)
draw = getattr(figures, sm.wildcards.figure)
draw(**tables, problems=problems, outputs=[sm.output.png, sm.output.pdf], dpi=sm.params.dpi,
     optimizers=sm.params.optimizers)
log(f"drew {sm.output.png} and {sm.output.pdf}")
