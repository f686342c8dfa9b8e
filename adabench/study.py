"""From a validated config to the runs it asks for, and the jobs (shards) that train them."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .config import settings_list
from .problems import problem_options
from .run import RunSpec

FASHION_MNIST_FILE = "results/data/fashion_mnist.pt"
RUNS_DIR = "results/runs"


def problem_settings(config: dict, problem: str) -> dict:
    """The problem's options as runs get them: the prepared dataset path filled in where the problem reads one."""
    options = dict(config["problems"][problem].get("options", {}))
    if "data_file" in problem_options(problem):
        options.setdefault("data_file", FASHION_MNIST_FILE)
    return options


def problem_seeds(config: dict, problem: str) -> list[int]:
    return config["problems"][problem].get("seeds", config["seeds"])


def lr_grid(tuning: dict) -> list[float]:
    """Log-spaced learning rates, rounded to 3 significant digits so that run keys stay readable."""
    grid = tuning["lr_grid"]
    return [float(f"{lr:.3g}") for lr in np.geomspace(grid["low"], grid["high"], grid["points"])]


def unique(runs: list[RunSpec]) -> list[RunSpec]:
    seen: dict[str, RunSpec] = {}
    for spec in runs:
        seen.setdefault(spec.key, spec)
    return list(seen.values())


def study_runs(config: dict) -> list[RunSpec]:
    """Every configured (problem, optimizer, setting) with each seed, and the seed study's own settings."""
    runs = []
    for problem, entry in config["problems"].items():
        options = problem_settings(config, problem)
        for optimizer, settings in entry["optimizers"].items():
            for hyperparameters in settings_list(settings):
                runs += [RunSpec(problem, optimizer, dict(hyperparameters), seed, options)
                         for seed in problem_seeds(config, problem)]
    for reference in config.get("seed_reference", []):
        problem = reference["problem"]
        runs += [RunSpec(problem, reference["optimizer"], dict(reference["hyperparameters"]), seed,
                         problem_settings(config, problem)) for seed in problem_seeds(config, problem)]
    return unique(runs)


def tuning_grid_runs(config: dict) -> list[RunSpec]:
    """The tuning protocol's grid: every tuned optimizer at every grid lr, with the grid seeds."""
    tuning = config.get("tuning")
    if not tuning:
        return []
    return unique([
        RunSpec(problem, optimizer, {"lr": lr}, seed, problem_settings(config, problem))
        for problem in tuning["problems"]
        for optimizer in tuning["optimizers"]
        for lr in lr_grid(tuning)
        for seed in tuning["grid_seeds"]
    ])


def shard_id(config: dict, spec: RunSpec) -> str:
    """Grouped problems train all of one optimizer's runs in one job; the others one run per job."""
    if config["problems"][spec.problem].get("group_runs", False):
        return f"{spec.problem}/{spec.optimizer}"
    # no commas: Snakemake 9 splits a job's --target-jobs wildcards on them, which breaks cluster jobs
    # (snakemake/snakemake#2366); run directories keep the run key as it is
    return spec.key.replace(",", "+")


def shards(config: dict, runs: list[RunSpec]) -> dict[str, list[RunSpec]]:
    grouped: dict[str, list[RunSpec]] = {}
    for spec in runs:
        grouped.setdefault(shard_id(config, spec), []).append(spec)
    return grouped


def run_dir(spec: RunSpec, root: str | Path = RUNS_DIR) -> Path:
    return Path(root) / spec.key


def shard_device(config: dict, problem: str) -> str:
    return config["problems"][problem].get("device", config.get("device", "auto"))


def tuned_jobs(config: dict) -> dict[str, tuple[str, str, list[int]]]:
    """The reruns of each tuned setting with the study's seeds: job id -> (problem, optimizer, seeds).

    Which learning rate they use is data (results/tuning/selection.csv), so the jobs are known before it is.
    """
    tuning = config.get("tuning")
    if not tuning:
        return {}
    jobs = {}
    for problem in tuning["problems"]:
        seeds = problem_seeds(config, problem)
        for optimizer in tuning["optimizers"]:
            if config["problems"][problem].get("group_runs", False):
                jobs[f"{problem}/{optimizer}"] = (problem, optimizer, seeds)
            else:
                jobs.update({f"{problem}/{optimizer}/seed={seed}": (problem, optimizer, [seed]) for seed in seeds})
    return jobs
