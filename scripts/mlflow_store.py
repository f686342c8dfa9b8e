"""Snakemake rule `mlflow_store`: create the MLflow store and experiment once, before training."""
from adabench.pipeline import LogFile, create_store

sm = snakemake  # noqa: F821  (injected by Snakemake)
create_store(sm.params.tracking_uri, sm.params.experiment, sm.params.artifact_root, sm.output[0], LogFile(sm.log[0]))
