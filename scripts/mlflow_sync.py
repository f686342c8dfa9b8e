"""Snakemake rule `mlflow_sync`: bring MLflow up to date with the run records (adabench.workflow.steps.sync_mlflow)."""
from adabench.workflow.steps import start_job, sync_mlflow
from adabench.study.plan import study_run_dirs

sm = snakemake  # noqa: F821  (injected by Snakemake)
log = start_job(sm)
sync_mlflow(sm.config, study_run_dirs(sm.input.plan, sm.input.get("search_runs"), sm.input.get("tuned_runs")), sm.output[0], log)
