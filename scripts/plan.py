"""Snakemake rule `plan`: write the study's plan, one row per run (see adabench.study)."""
from adabench.pipeline import start_job
from adabench.study import Study

sm = snakemake  # noqa: F821  (injected by Snakemake)
log = start_job(sm)
plan = Study(sm.config).plan()
plan.to_csv(sm.output[0], index=False)
log(f"{len(plan)} planned runs in {plan.job.nunique()} jobs")
