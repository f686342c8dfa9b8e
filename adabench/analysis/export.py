"""A study as two tidy DataFrames with typed columns: one row per run, one row per run and epoch (or step).

``load_study("results/default")`` reads what the aggregate step wrote (Parquet where it is there, else the CSV)
and gives every column its type; ``adabench export`` writes the same as Parquet or CSV. No torch.
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import pandas as pd

# the identity of a run, repeated on each of its curve rows
CATEGORY_COLUMNS = ["problem", "options_id", "optimizer", "setting", "status", "unit", "precision", "headline_metric",
                    "headline_mode", "selection_metric", "selection_mode", "device", "device_name"]
INTEGER_COLUMNS = ["seed", "epoch", "epochs_completed", "epochs_planned", "steps", "population_size", "threads"]
BOOLEAN_PREFIX = "in_"
STRING_COLUMNS = ["run_key", "hyperparameters", "data_digest", "torch", "git_commit", "hostname"]


class StudyTables(NamedTuple):
    runs: pd.DataFrame  # one row per run
    curves: pd.DataFrame  # one row per run and epoch (or step, where the run's unit is "step")


def typed(frame: pd.DataFrame) -> pd.DataFrame:
    """The columns as their types: identities as categories, counts as (nullable) integers, roles as booleans,
    the rest floats (metrics, seconds) or strings."""
    frame = frame.copy()
    for column in frame.columns:
        if column in CATEGORY_COLUMNS:
            frame[column] = frame[column].astype("category")
        elif column in INTEGER_COLUMNS:
            frame[column] = pd.to_numeric(frame[column]).round().astype("Int64")
        elif column.startswith(BOOLEAN_PREFIX):
            frame[column] = frame[column].astype(bool)
        elif column in STRING_COLUMNS:
            frame[column] = frame[column].astype("string")
    return frame


def load_study(root: str | Path) -> StudyTables:
    """The runs and curves of the study in ``root`` (e.g. "results/default"), typed."""
    tables = Path(root) / "tables"
    found = {}
    for name, stem in (("runs", "runs"), ("curves", "curves")):
        parquet, csv = tables / f"{stem}.parquet", tables / (f"{stem}.csv.gz" if stem == "curves" else f"{stem}.csv")
        if parquet.exists():
            found[name] = pd.read_parquet(parquet)
        elif csv.exists():
            found[name] = typed(pd.read_csv(csv))
        else:
            raise FileNotFoundError(f"{tables} has no {stem}.parquet or CSV: run snakemake for this study first")
    return StudyTables(**found)


def write_parquet(runs: pd.DataFrame, curves: pd.DataFrame, runs_path: Path, curves_path: Path) -> None:
    typed(runs).to_parquet(runs_path, index=False)
    typed(curves).to_parquet(curves_path, index=False)
