"""Snakemake rule `train`: train the runs of one job (see adabench.pipeline.train_shard)."""
import sys

from adabench.pipeline import LogFile, train_shard
from adabench.run import Preempted

sm = snakemake  # noqa: F821  (injected by Snakemake)
try:
    train_shard(sm.params.runs, sm.output[0], sm.params.tracking_uri, sm.params.experiment, sm.params.device,
                sm.params.deterministic, sm.threads, sm.config, LogFile(sm.log[0]))
except Preempted as stop:
    print(stop, file=sys.stderr)
    sys.exit(143)
