"""Gather every run's own files (summary.json, metrics.csv) into two tidy tables."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

RUN_COLUMNS = ["run_key", "problem", "optimizer", "setting", "seed", "in_study", "in_grid", "in_tuned"]
ROLES = ("study", "grid", "tuned")


def run_row(summary: dict, roles: set[str]) -> dict:
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
        **{f"in_{role}": role in roles for role in ROLES},
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
        "selection_metric": summary["selection"]["metric"],
        "selection_mode": summary["selection"]["mode"],
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


def run_roles(markers: list[str | Path], tuned_markers: list[str | Path], study_keys: set[str],
              grid_keys: set[str]) -> dict[str, set[str]]:
    """Run directory -> the roles it plays: in the configured study, in the tuning grid, a rerun of a tuned
    setting (one run can be all three). The training jobs' markers name each job's run directories."""
    roles: dict[str, set[str]] = {}
    for marker, tuned in [(m, False) for m in markers] + [(m, True) for m in tuned_markers]:
        for entry in json.loads(Path(marker).read_text()):
            found = roles.setdefault(entry["dir"], set())
            found.update(role for role, keys in (("study", study_keys), ("grid", grid_keys)) if entry["run_key"] in keys)
            if tuned:
                found.add("tuned")
    return roles


def gather(roles_by_dir: dict[str, set[str]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One row per run, and every run's curve (its metrics.csv) with the run's identity columns.

    A run may play several roles: in the configured study, in the tuning grid, a rerun of a tuned setting.
    """
    rows, curves = [], []
    for directory, roles in sorted(roles_by_dir.items()):
        directory = Path(directory)
        summary = json.loads((directory / "summary.json").read_text())
        row = run_row(summary, roles)
        rows.append(row)
        curve = pd.read_csv(directory / "metrics.csv").rename(columns={summary["unit"]: "epoch"})
        for column in reversed(RUN_COLUMNS):
            curve.insert(0, column, row[column])
        curves.append(curve)
    return pd.DataFrame(rows), pd.concat(curves, ignore_index=True)
