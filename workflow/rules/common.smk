# Configuration checks, the expansion of the study into runs and jobs, and shared paths.
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, workflow.basedir)  # adabench, also when the package is not installed

from adabench.config import ConfigError, validate_config
from adabench.study import FASHION_MNIST_FILE, run_dir, shard_device, shards, study_runs, tuning_grid_runs
from adabench.tracking import sqlite_uri

try:
    validate_config(config)
except ConfigError as error:
    raise WorkflowError(str(error)) from None

RUNS = study_runs(config) + tuning_grid_runs(config)
SHARDS = shards(config, RUNS)

# MLflow: MLFLOW_TRACKING_URI (a shared server on a cluster) wins over the config; default a SQLite file
TRACKING_URI = os.environ.get("MLFLOW_TRACKING_URI") or config["mlflow"].get("tracking_uri") or sqlite_uri(
    "results/mlflow/mlflow.db"
)
if "MLFLOW_TRACKING_URI" in os.environ:

    envvars:
        "MLFLOW_TRACKING_URI",


# Training jobs rerun when the code they import changes; analysis code (adabench/analysis) is not among it
TRAINING_SOURCES = sorted(
    str(path)
    for path in Path(workflow.basedir, "adabench").rglob("*.py")
    if "analysis" not in path.relative_to(workflow.basedir, "adabench").parts
)

PROBLEMS = list(config["problems"])
FIGURE_SETTINGS = config.get("figures", {})

TABLES = expand(
    "results/tables/{table}.{ext}", table=["comparison", "seed_vs_pipeline"], ext=["md", "tex", "csv"]
)
FIGURE_NAMES = [
    "learning_curves",
    "quadratic_trajectories",
    "final_metric",
    "effective_lr",
    "sparse_features",
    "gerschgorin",
]
FIGURES = expand("results/figures/{figure}.{ext}", figure=FIGURE_NAMES, ext=["png", "pdf"])

FIGURE_INPUTS = {
    "learning_curves": ["curves"],
    "quadratic_trajectories": ["curves"],
    "final_metric": ["runs"],
    "effective_lr": ["curves"],
    "sparse_features": ["runs"],
    "gerschgorin": [],
}


def figure_inputs(wildcards):
    return {name: rules.aggregate.output[name] for name in FIGURE_INPUTS[wildcards.figure]}


def shard_marker(shard):
    return f"results/shards/{shard}.json"


def shard_runs(wildcards):
    return [spec.to_dict() for spec in SHARDS[wildcards.shard]]


def shard_problem(wildcards):
    return SHARDS[wildcards.shard][0].problem


def shard_inputs(wildcards):
    inputs = {"store": "results/mlflow/experiment.json", "sources": TRAINING_SOURCES}
    if any("data_file" in spec.problem_options for spec in SHARDS[wildcards.shard]):
        inputs["data"] = FASHION_MNIST_FILE
    return inputs


def shard_gpus(wildcards):
    """One GPU for every job not pinned to the CPU: on a GPU machine or a cluster, device auto picks CUDA.
    Locally the resource is a counter: `--resources gpu=1` (profiles/default) keeps one such job at a time."""
    return 0 if shard_device(config, shard_problem(wildcards)) == "cpu" else 1
