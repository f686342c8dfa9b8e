"""A study as two tidy DataFrames with typed columns: one row per run, one row per run and epoch (or step).

``load_study("results/default")`` reads what the aggregate step wrote (Parquet where it is there, else the CSV)
and gives every column its type; ``adabench export`` writes the same as Parquet or CSV. No torch.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from ..core.atomic import atomic_write_bytes

# the identity of a run, repeated on each of its curve rows
CATEGORY_COLUMNS = ["problem", "options_id", "optimizer", "setting", "status", "unit", "precision", "headline_metric",
                    "headline_mode", "selection_metric", "selection_mode", "device", "device_name", "cpu_capability"]
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


class DamagedTable(ValueError):
    """A study's table that cannot be read: damaged since the aggregate step wrote it."""


def read_table(path: Path, csv: bool) -> pd.DataFrame:
    """One table as written by the aggregate step; DamagedTable naming the file and the fix where it does not
    parse (a truncated Parquet file, a CSV under a Parquet name: pyarrow's and pandas' errors vary)."""
    try:
        return typed(pd.read_csv(path)) if csv else pd.read_parquet(path)
    except (OSError, ValueError) as error:  # pyarrow.ArrowInvalid is a ValueError
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DamagedTable(f"{path} is damaged ({reason}); run snakemake for this study again: it sees the damage "
                           f"and writes the study's tables again from the run records") from None


def load_study(root: str | Path) -> StudyTables:
    """The runs and curves of the study in ``root`` (e.g. "results/default"), typed. DamagedTable where a table
    does not parse, FileNotFoundError where the study has none."""
    tables = Path(root) / "tables"
    found = {}
    for name, stem in (("runs", "runs"), ("curves", "curves")):
        parquet, csv = tables / f"{stem}.parquet", tables / (f"{stem}.csv.gz" if stem == "curves" else f"{stem}.csv")
        if parquet.exists():
            found[name] = read_table(parquet, csv=False)
        elif csv.exists():
            found[name] = read_table(csv, csv=True)
        else:
            raise FileNotFoundError(f"{tables} has no {stem}.parquet or CSV: run snakemake for this study first")
    return StudyTables(**found)


def write_parquet(runs: pd.DataFrame, curves: pd.DataFrame, runs_path: Path, curves_path: Path) -> None:
    """Both tables as typed Parquet, each written whole or not at all (adabench.core.atomic): a kill mid-write leaves
    no half a file under the table's name."""
    for frame, path in ((runs, runs_path), (curves, curves_path)):
        buffer = io.BytesIO()
        typed(frame).to_parquet(buffer, index=False)
        atomic_write_bytes(Path(path), buffer.getvalue())
