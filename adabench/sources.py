"""Which run records an output was made from: a sidecar beside each output made from records (tables, the tuning
selection, the MLflow sync), so that a later run can tell the output is out of date and say which records changed
(adabench.housekeeping). Light (no torch): the analysis scripts write them."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .atomic import atomic_write_text, read_json_object


def records_digest(summaries: dict[str, dict]) -> str:
    """One digest of a set of run records: run keys and their summaries' own digests (which cover the metrics)."""
    pairs = sorted((summary["run_key"], summary["summary_sha256"]) for summary in summaries.values())
    return hashlib.sha256(json.dumps(pairs).encode()).hexdigest()


def recorded_sources(path: Path) -> dict:
    """What an output's sidecar says it was made from (see write_sources): {"records_sha256", "records"}, or {}."""
    return read_json_object(path)


def write_sources(path: Path, summaries: dict[str, dict], extra: dict | None = None) -> None:
    """Record which run records an output was made from (each run's key and summary digest, and one digest of
    them all), so that a later run can tell it is out of date, and say which records changed."""
    records = {summary["run_key"]: summary["summary_sha256"] for summary in summaries.values()}
    atomic_write_text(Path(path), json.dumps({"runs": len(records), **(extra or {}),
                                              "records_sha256": records_digest(summaries),
                                              "records": dict(sorted(records.items()))}, indent=1) + "\n")
