"""Gather every run's own files (summary.json, metrics.csv), verified, into two long tables with generic
columns: one row per run (identity, roles, the problem's declared headline and selection metrics, final
values) and one row per run and epoch (its curve). Nothing here knows a problem or a metric by name."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ..plan import ROLES, key_options_id, setting_string
from ..records import RecordError, check_same_data, read_run

# what the runs table keeps of each run's environment
ENVIRONMENT_COLUMNS = ["device", "device_name", "threads", "torch", "git_commit", "hostname"]
RUN_COLUMNS = ["run_key", "problem", "options_id", "optimizer", "setting", "seed"] + [f"in_{role}" for role in ROLES]


def run_row(summary: dict, roles: set[str]) -> dict:
    """A run's row of the runs table, from its verified summary (whose spec holds canonical hyperparameters)."""
    spec = summary["spec"]
    hyperparameters = spec["hyperparameters"]
    best = summary.get("best") or {}
    selection = summary.get("best_selection") or {}
    unit = summary["unit"]
    row = {
        "run_key": summary["run_key"],
        "problem": spec["problem"],
        "options_id": key_options_id(summary["run_key"]),
        "optimizer": spec["optimizer"],
        "setting": setting_string(hyperparameters),
        "seed": spec["seed"],
        **{f"in_{role}": role in roles for role in ROLES},
        "precision": spec["precision"],
        "lr": hyperparameters.get("lr"),
        "hyperparameters": json.dumps(hyperparameters, sort_keys=True),
        "status": summary["status"],
        "unit": unit,
        "epochs_completed": summary["epochs_completed"],
        "epochs_planned": summary["epochs_planned"],
        "headline_metric": summary["headline"]["metric"],
        "headline_mode": summary["headline"]["mode"],
        "best_value": best.get("value"),
        "best_epoch": best.get(unit),
        "selection_metric": summary["selection"]["metric"],
        "selection_mode": summary["selection"]["mode"],
        "selection_best_value": selection.get("value"),
        "train_time_s": summary["train_time_s"],
        "step_time_s": summary["step_time_s"],
        "steps": summary["steps"],
        "wall_time_s": summary["wall_time_s"],
        "population_size": summary["population_size"],
        "data_digest": summary["data_digest"],
        **{name: summary["environment"].get(name) for name in ENVIRONMENT_COLUMNS},
    }
    row.update({f"final_{name}": value for name, value in summary["final"].items() if name != unit})
    row["final_headline"] = summary["final"].get(row["headline_metric"])
    return row


def gather(roles_by_dir: dict[str, set[str]]) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, dict]]:
    """One row per run, and every run's curve (its metrics.csv, its unit column named ``epoch``: the step where the
    run's ``unit`` is "step") with the run's identity columns, and each run's verified summary by directory. Each run's records are verified first; a
    damaged one stops the table with its reason (a rerun of the workflow trains it again: see adabench.state)."""
    rows, curves, summaries = [], [], {}
    for directory, roles in sorted(roles_by_dir.items()):
        directory = Path(directory)
        try:
            summary, metrics = read_run(directory)
        except RecordError as error:
            raise RecordError(f"{error}; run snakemake again: the job that owns this run trains it again") from None
        summaries[str(directory)] = summary
        row = run_row(summary, roles)
        rows.append(row)
        curve = metrics.rename(columns={summary["unit"]: "epoch"})
        for column in reversed(RUN_COLUMNS + ["unit"]):
            curve.insert(0, column, row[column])
        curves.append(curve)
    check_same_data(list(summaries.values()))
    if not rows:
        return pd.DataFrame(columns=RUN_COLUMNS), pd.DataFrame(columns=RUN_COLUMNS + ["unit", "epoch"]), summaries
    return pd.DataFrame(rows), pd.concat(curves, ignore_index=True), summaries
