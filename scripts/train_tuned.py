"""Snakemake rule `train_tuned`: rerun a tuned setting with the study's seeds."""
import pandas as pd

from adabench.analysis.tuning import chosen_lr
from adabench.pipeline import LogFile, train_shard
from adabench.run import RunSpec

sm = snakemake  # noqa: F821  (injected by Snakemake)
lr = chosen_lr(pd.read_csv(sm.input.selection), sm.params.problem, sm.params.optimizer)
runs = [RunSpec(sm.params.problem, sm.params.optimizer, {"lr": lr}, seed, dict(sm.params.options)).to_dict()
        for seed in sm.params.seeds]
train_shard(runs, sm.output[0], sm.params.tracking_uri, sm.params.experiment, sm.params.device,
            sm.params.deterministic, sm.threads, sm.config, LogFile(sm.log[0]))
