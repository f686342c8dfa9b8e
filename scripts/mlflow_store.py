"""Snakemake rule `mlflow_store`: create the MLflow store and experiment once, before training (no torch: light)."""
from adabench.workflow.joblog import job_log
from adabench.study.layout import StudyLayout
from adabench.workflow.store import create_store

sm = snakemake  # noqa: F821  (injected by Snakemake)
create_store(StudyLayout(sm.config), sm.output[0], job_log(sm))
