"""Snakemake rule `train`: train one job's population of runs (see adabench.workflow.steps.train_job)."""
from adabench.workflow.steps import start_job, train_job

sm = snakemake  # noqa: F821  (injected by Snakemake)
log = start_job(sm)
train_job(sm.config, sm.wildcards.job, sm.params.job, sm.output[0], sm.threads, log, plan=sm.input.plan)
