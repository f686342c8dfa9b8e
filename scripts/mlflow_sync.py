"""Snakemake rule `mlflow_sync`: bring MLflow up to date with the run records (see adabench.pipeline.sync_mlflow)."""
from adabench.pipeline import start_job, sync_mlflow

sm = snakemake  # noqa: F821  (injected by Snakemake)
log = start_job(sm)
sync_mlflow(sm.config, sm.input.plan, list(sm.input.markers), sm.output[0], log)
