# Configuration checks, the expansion of the study into runs and jobs, and shared paths.
import os
import sys
from pathlib import Path

sys.path.insert(0, workflow.basedir)  # adabench, also when the package is not installed

from adabench.config import ConfigError, validate_config
from adabench.study import (
    FASHION_MNIST_FILE,
    problem_settings,
    run_dir,
    shard_device,
    shard_id,
    shards,
    study_runs,
    tuned_jobs,
    tuning_grid_runs,
)
from adabench.tracking import sqlite_uri

try:
    validate_config(config)
except ConfigError as error:
    raise WorkflowError(str(error)) from None

STUDY_RUNS = study_runs(config)
GRID_RUNS = tuning_grid_runs(config)
RUNS = STUDY_RUNS + GRID_RUNS
SHARDS = shards(config, RUNS)
GRID_MARKERS = sorted({f"results/shards/{shard_id(config, spec)}.json" for spec in GRID_RUNS})
TUNED_JOBS = tuned_jobs(config)
TUNED_MARKERS = [f"results/tuned/{job}.json" for job in TUNED_JOBS]

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

FIGURE_SETTINGS = config.get("figures", {})

TUNING = config.get("tuning")
TABLE_NAMES = ["comparison", "seed_vs_pipeline"] + (["protocols", "paired_tests", "time_to_target"] if TUNING else [])
TABLES = expand("results/tables/{table}.{ext}", table=TABLE_NAMES, ext=["md", "tex", "csv"])
if TUNING:
    TABLES.append("results/tuning/selection_check.json")

# figure -> the tables it is drawn from
FIGURE_INPUTS = {
    "learning_curves": {"curves": "results/tables/curves.csv.gz"},
    "quadratic_trajectories": {"curves": "results/tables/curves.csv.gz"},
    "final_metric": {"runs": "results/tables/runs.csv"},
    "effective_lr": {"curves": "results/tables/curves.csv.gz"},
    "sparse_features": {"runs": "results/tables/runs.csv"},
    "gerschgorin": {},
}
if TUNING:
    FIGURE_INPUTS.update(
        lr_sensitivity={
            "sensitivity": "results/tuning/lr_sensitivity.csv",
            "selection": "results/tuning/selection.csv",
        },
        performance_profile={"profile": "results/tables/performance_profile.csv"},
        time_to_target={"times": "results/tables/time_to_target.csv"},
    )
FIGURE_NAMES = list(FIGURE_INPUTS)
FIGURES = expand("results/figures/{figure}.{ext}", figure=FIGURE_NAMES, ext=["png", "pdf"])


def figure_inputs(wildcards):
    return FIGURE_INPUTS[wildcards.figure]


def shard_marker(shard):
    return f"results/shards/{shard}.json"


def shard_runs(wildcards):
    return [spec.to_dict() for spec in SHARDS[wildcards.shard]]


def shard_problem(wildcards):
    return SHARDS[wildcards.shard][0].problem


def training_inputs(problems):
    inputs = {"store": "results/mlflow/experiment.json", "sources": TRAINING_SOURCES}
    if any("data_file" in problem_settings(config, problem) for problem in problems):
        inputs["data"] = FASHION_MNIST_FILE
    return inputs


def shard_inputs(wildcards):
    return training_inputs({spec.problem for spec in SHARDS[wildcards.shard]})


def tuned_inputs(wildcards):
    return {**training_inputs([TUNED_JOBS[wildcards.tuned][0]]), "selection": "results/tuning/selection.csv"}


def shard_gpus(wildcards):
    """One GPU for every job not pinned to the CPU: on a GPU machine or a cluster, device auto picks CUDA.
    Locally the resource is a counter: `--resources gpu=1` (profiles/default) keeps one such job at a time."""
    return 0 if shard_device(config, shard_problem(wildcards)) == "cpu" else 1
