"""Which run records an output was made from: a sidecar beside each output made from records (tables, the tuning
selection, the MLflow sync), so that a later run can tell the output is out of date and say which records changed
(adabench.study.staleness). Light (no torch): the analysis scripts write them."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..core.atomic import atomic_write_text, read_json_object, sha256_file


def records_digest(summaries: dict[str, dict]) -> str:
    """One digest of a set of run records: run keys and their summaries' own digests (which cover the metrics)."""
    pairs = sorted((summary["run_key"], summary["summary_sha256"]) for summary in summaries.values())
    return hashlib.sha256(json.dumps(pairs).encode()).hexdigest()


def recorded_sources(path: Path) -> dict:
    """What an output's sidecar says it was made from (see write_sources): {"records_sha256", "records"}, or {}
    where it is missing or damaged (read_json), so that its output is made again."""
    found = read_json_object(path)
    records = found.get("records", {})
    if not isinstance(records, dict) or not all(isinstance(sha, str) for sha in records.values()):
        return {}  # valid JSON, but not run keys with their digests: damaged too
    return found


def write_sources(path: Path, summaries: dict[str, dict], extra: dict | None = None) -> None:
    """Record which run records an output was made from (each run's key and summary digest, and one digest of
    them all), so that a later run can tell it is out of date, and say which records changed."""
    records = {summary["run_key"]: summary["summary_sha256"] for summary in summaries.values()}
    atomic_write_text(Path(path), json.dumps({"runs": len(records), **(extra or {}),
                                              "records_sha256": records_digest(summaries),
                                              "records": dict(sorted(records.items()))}, indent=1) + "\n")


def output_digests(paths) -> dict[str, str]:
    """Each output's file name and sha256, for the ``outputs`` of its sidecar (write_sources' extra): an output
    damaged since it was made (a truncated Parquet file, another file under its name) is then made again, as one
    made from other records is (adabench.study.staleness). By name: the sidecar lies beside its outputs."""
    return {Path(path).name: sha256_file(Path(path)) for path in paths}


def damaged_outputs(sidecar: Path, recorded: dict) -> list[tuple[Path, str]]:
    """The outputs that ``recorded`` (``sidecar``'s content, see recorded_sources) lists under ``outputs`` and that
    are gone, or hold other bytes than were written, each with what is wrong. A sidecar without the list (written
    before outputs were listed) vouches for none."""
    outputs = recorded.get("outputs", {})
    if not isinstance(outputs, dict) or not all(isinstance(sha, str) for sha in outputs.values()):
        return [(Path(sidecar), "its list of outputs is damaged")]
    found = []
    for name, sha in outputs.items():
        path = Path(sidecar).parent / Path(name).name
        if not path.is_file():
            found.append((path, "missing"))
        elif sha256_file(path) != sha:
            found.append((path, f"its bytes are not those written (sha256 recorded in {Path(sidecar).name}): "
                                "damaged or replaced"))
    return found
