"""Snakemake rule `train`: train one job's population of runs (see adabench.pipeline.train_job)."""
from adabench.pipeline import LogFile, train_job

sm = snakemake  # noqa: F821  (injected by Snakemake)
train_job(sm.config, sm.wildcards.job, sm.output[0], sm.params.tracking_uri, sm.threads, LogFile(sm.log[0]),
          selection=sm.input.get("selection"))
