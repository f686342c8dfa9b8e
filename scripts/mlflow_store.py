"""Snakemake rule `mlflow_store`: create the MLflow store and experiment once, before training."""
from adabench.pipeline import create_store, start_job
from adabench.layout import StudyLayout

sm = snakemake  # noqa: F821  (injected by Snakemake)
log = start_job(sm)
create_store(StudyLayout(sm.config), sm.output[0], log)
