"""Snakemake rule `plan`: write the study's plan, one row per run (see adabench.study.design), and what its problems
declare (problems.json: what the tables, figures and results page read of them)."""
from pathlib import Path

from adabench.workflow.steps import start_job
from adabench.study.design import Study

sm = snakemake  # noqa: F821  (injected by Snakemake)
log = start_job(sm)
study = Study(sm.config)
plan = study.plan()
plan.to_csv(sm.output.plan, index=False)
Path(sm.output.problems).write_text(study.declarations_json())
log(f"{len(plan)} planned runs in {plan.job.nunique()} jobs")
