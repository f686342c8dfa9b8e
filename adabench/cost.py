"""What a study costs before it runs: its runs, jobs and epochs per stage and problem, and, from runs already
measured on some machine, the seconds that machine needs for them.

Training time per epoch is taken from finished runs' ``summary.json`` (wall time, which includes the per-epoch
evaluation) that trained the same problem with the same options but the number of epochs. Nothing is assumed
for problems without such a measurement: their seconds stay empty.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .problems import problem_options
from .study import problem_settings, shard_id, study_runs, tuned_jobs, tuning_grid_runs, unique

STAGES = ("study", "grid", "tuned")
# options that say how long a run is, not what it computes per epoch
LENGTH_OPTIONS = ("epochs", "steps")
PATH_OPTIONS = ("data_file",)


def planned_epochs(problem: str, options: dict) -> int:
    """Epochs (steps for the full-batch problems) a run will train: its options, else the problem's default."""
    full = {**problem_options(problem), **options}
    for name in LENGTH_OPTIONS:
        if name in full:
            return int(full[name])
    raise ValueError(f"problem {problem!r} has no epochs or steps option")


def per_epoch_options(problem: str, options: dict) -> tuple:
    """The options that decide what one epoch costs, with the problem's defaults filled in (hashable)."""
    full = {**problem_options(problem), **options}
    return tuple(sorted((name, repr(value)) for name, value in full.items()
                        if name not in LENGTH_OPTIONS + PATH_OPTIONS))


def planned_runs(config: dict) -> pd.DataFrame:
    """One row per run the workflow trains (validated config): stage, problem, optimizer, run key (none yet for
    the tuned reruns), job, epochs and the per-epoch options.

    A grid run that the study already has is counted once, under "study", as the workflow trains it once. The
    tuned reruns' learning rate is chosen from the grid, so they are counted as new runs: an upper bound, as a
    chosen setting equal to a study setting is not trained again.
    """
    rows, seen = [], set()
    for stage, specs in (("study", study_runs(config)), ("grid", tuning_grid_runs(config))):
        for spec in unique(specs):
            if spec.key not in seen:
                seen.add(spec.key)
                rows.append({"stage": stage, "problem": spec.problem, "optimizer": spec.optimizer, "run_key": spec.key,
                             "job": f"train/{shard_id(config, spec)}",
                             "epochs": planned_epochs(spec.problem, spec.problem_options),
                             "options": per_epoch_options(spec.problem, spec.problem_options)})
    for job, (problem, optimizer, seeds) in tuned_jobs(config).items():
        options = problem_settings(config, problem)
        rows += [{"stage": "tuned", "problem": problem, "optimizer": optimizer, "run_key": None,
                  "job": f"train_tuned/{job}", "epochs": planned_epochs(problem, options),
                  "options": per_epoch_options(problem, options)} for _ in seeds]
    return pd.DataFrame(rows, columns=["stage", "problem", "optimizer", "run_key", "job", "epochs", "options"])


def measured_epoch_seconds(run_roots: list[Path]) -> pd.DataFrame:
    """Wall seconds per epoch of every finished run under ``run_roots`` (their summary.json files)."""
    rows = []
    for root in run_roots:
        for path in sorted(Path(root).rglob("summary.json")):
            summary = json.loads(path.read_text())
            if summary.get("status") != "finished" or not summary.get("epochs_completed"):
                continue
            if summary.get("resumed_from"):  # the wall time of a resumed run covers only its last part
                continue
            spec = summary["spec"]
            rows.append({"problem": spec["problem"], "optimizer": spec["optimizer"],
                         "options": per_epoch_options(spec["problem"], spec["problem_options"]),
                         "device": summary.get("device"), "device_name": summary.get("device_name"),
                         "threads": summary.get("threads"),
                         "s_per_epoch": summary["wall_time_s"] / summary["epochs_completed"]})
    return pd.DataFrame(rows, columns=["problem", "optimizer", "options", "device", "device_name", "threads",
                                       "s_per_epoch"])


def cost_table(plan: pd.DataFrame, measured: pd.DataFrame) -> pd.DataFrame:
    """Per stage and problem: jobs, runs, epochs, the measured median seconds per epoch (over the measured runs
    of the same problem and options, all optimizers) and the serial seconds it predicts."""
    rates = (measured.groupby(["problem", "options"]).agg(
        s_per_epoch=("s_per_epoch", "median"), measured_runs=("s_per_epoch", "size"),
        measured_on=("device_name", lambda names: ", ".join(sorted(set(map(str, names))))))
        .reset_index())
    table = (plan.groupby(["stage", "problem", "options"], sort=False)
             .agg(jobs=("job", "nunique"), runs=("job", "size"), epochs=("epochs", "sum")).reset_index()
             .merge(rates, on=["problem", "options"], how="left"))
    table["measured_runs"] = table["measured_runs"].fillna(0).astype(int)
    table["serial_s"] = table["epochs"] * table["s_per_epoch"]
    table["stage"] = pd.Categorical(table["stage"], STAGES, ordered=True)
    table = table.sort_values(["stage", "problem"], kind="stable").drop(columns="options").reset_index(drop=True)
    table["stage"] = table["stage"].astype(str)
    return table
