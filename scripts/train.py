"""Snakemake rule `train`: train the runs of one job (see adabench.pipeline.train_shard)."""
from adabench.pipeline import LogFile, train_shard

sm = snakemake  # noqa: F821  (injected by Snakemake)
train_shard(sm.params.runs, sm.output[0], sm.params.tracking_uri, sm.params.experiment, sm.params.device,
            sm.params.deterministic, sm.threads, sm.config, LogFile(sm.log[0]))
