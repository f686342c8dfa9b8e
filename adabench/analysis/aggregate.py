"""Gather every run's own files (summary.json, metrics.csv) into two tidy tables."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

RUN_COLUMNS = ["run_key", "problem", "optimizer", "setting", "seed", "role"]


def run_row(summary: dict, role: str) -> dict:
    spec = summary["spec"]
    best = summary.get("best") or {}
    selection = summary.get("best_selection") or {}
    unit = summary["unit"]
    row = {
        "run_key": summary["run_key"],
        "problem": spec["problem"],
        "optimizer": spec["optimizer"],
        "setting": summary["run_key"].split("/")[2],
        "seed": spec["seed"],
        "role": role,
        "lr": spec["hyperparameters"].get("lr"),
        "hyperparameters": json.dumps(spec["hyperparameters"], sort_keys=True),
        "status": summary["status"],
        "unit": unit,
        "epochs_completed": summary["epochs_completed"],
        "epochs_planned": summary["epochs_planned"],
        "headline_metric": summary["headline"]["metric"],
        "headline_mode": summary["headline"]["mode"],
        "best_value": best.get("value"),
        "best_epoch": best.get(unit),
        "selection_metric": selection.get("metric"),
        "selection_best_value": selection.get("value"),
        "train_time_s": summary["train_time_s"],
        "wall_time_s": summary["wall_time_s"],
        "device": summary["device"],
        "device_name": summary["device_name"],
        "threads": summary["threads"],
    }
    row.update({f"final_{name}": value for name, value in summary["final"].items() if name != unit})
    row["final_headline"] = summary["final"].get(row["headline_metric"])
    return row


def gather(run_dirs: list[str | Path], study_keys: set[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One row per run, and every run's curve (its metrics.csv) with the run's identity columns.

    ``role`` is "study" for runs of the configured study, "tuning" for runs only the tuning grid asked for.
    """
    rows, curves = [], []
    for directory in map(Path, run_dirs):
        summary = json.loads((directory / "summary.json").read_text())
        row = run_row(summary, "study" if summary["run_key"] in study_keys else "tuning")
        rows.append(row)
        curve = pd.read_csv(directory / "metrics.csv").rename(columns={summary["unit"]: "epoch"})
        for column in reversed(RUN_COLUMNS):
            curve.insert(0, column, row[column])
        curves.append(curve)
    return pd.DataFrame(rows), pd.concat(curves, ignore_index=True)
