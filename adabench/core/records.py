"""A run's files on disk: written so that a crash or a full disk never leaves a half-written file that is trusted
(adabench.core.atomic), and read back only after they are verified (complete, intact, of the run they claim to be).

- ``summary.json`` marks a run complete. It carries the sha256 of ``metrics.csv`` and of its own content, so a
  truncated curve or an edited summary is detected, and the run is trained again rather than used.
- A checkpoint that does not load, or is of another run, is moved aside and the run restarts from scratch.
- A lock file per run directory keeps two processes (a rerun beside a leftover job) from training it at once.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import os
import time
from pathlib import Path

import pandas as pd

from .atomic import DamagedJSON, atomic_write_bytes, atomic_write_text, read_json, sha256_bytes
from .locks import ProcessLock, describe
from .identity import key_options_id

SUMMARY = "summary.json"
METRICS = "metrics.csv"
CHECKPOINT = "checkpoint.pt"
LOCK = ".lock"
# every status a complete run ends with; "failed": its optimizer raised (its summary holds the error: core.trainer)
FINISHED_STATUSES = ("finished", "diverged", "failed")
# the statuses of a complete run that ended before its planned epochs with no result: its loss diverged, or its
# optimizer raised ("failed"). One tuple, so that every table, score and count treats the two alike
ENDED_EARLY = ("diverged", "failed")
# the measured seconds of a run's records: the only columns two trainings of one run may differ in
TIME_COLUMNS = ["time_s", "step_time_s"]
SUMMARY_FIELDS = ("run_key", "identity", "spec", "status", "unit", "epochs_completed", "epochs_planned", "final",
                  "headline", "selection", "best", "best_selection", "steps", "train_time_s", "step_time_s", "wall_time_s",
                  "resumed_from", "population_size", "data_digest", "environment", "records_sha256", "summary_sha256")


def duration(seconds: float | None) -> str:
    """A time as a training log and ``adabench status`` print it: 1h05m, 4m07s; "?" when not known."""
    if seconds is None or math.isnan(seconds):
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def best_of(records: list[dict], metric: str, mode: str, unit: str) -> dict | None:
    """The best finite value of ``metric`` over the records ("max" or "min") and the unit it came at."""
    values = [(row[metric], row[unit]) for row in records if metric in row and math.isfinite(row[metric])]
    if not values:
        return None
    value, at = (max if mode == "max" else min)(values, key=lambda pair: pair[0])
    return {"metric": metric, "mode": mode, "value": value, unit: at}


def build_summary(spec, status: str, unit: str, records: list[dict], epochs_planned: int,
                  headline: tuple[str, str], selection: tuple[str, str], steps: int, train_time_s: float,
                  step_time_s: float,
                  wall_time_s: float, resumed_from: int, population_size: int, data_digest: str,
                  environment: dict) -> dict:
    """What summary.json says of a finished run (sealed by write_run with the digests of both files).

    ``steps`` counts its optimizer steps; ``train_time_s`` is the run's own training seconds: its share of the
    passes it was computed in plus its optimizer's steps (``step_time_s``); ``environment`` where and with what
    code it was trained."""
    return {
        "run_key": spec.key,
        "identity": spec.identity(),
        "spec": spec.to_dict(),
        "status": status,
        "unit": unit,
        "epochs_completed": records[-1][unit] if records else 0,
        "epochs_planned": epochs_planned,
        "final": records[-1] if records else {},
        "headline": {"metric": headline[0], "mode": headline[1]},
        "selection": {"metric": selection[0], "mode": selection[1]},
        "best": best_of(records, *headline, unit),
        "best_selection": best_of(records, *selection, unit),
        "steps": steps,
        "train_time_s": train_time_s,
        "step_time_s": step_time_s,
        "wall_time_s": wall_time_s,
        "resumed_from": resumed_from,
        "population_size": population_size,
        "data_digest": data_digest,
        "environment": dict(environment),
    }


class RecordError(ValueError):
    """A run's files are missing, damaged or of another run."""


def records_csv(records: list[dict], unit: str) -> bytes:
    frame = pd.DataFrame(records, columns=None if records else [unit])  # none: a run that failed at its first step
    frame = frame[[unit] + [column for column in frame.columns if column != unit]]
    return frame.to_csv(index=False).encode()


def canonical_json(data: dict) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=float, allow_nan=True).encode()


def seal(summary: dict) -> dict:
    """The summary with its own digest, computed over everything else in it."""
    body = {name: value for name, value in summary.items() if name != "summary_sha256"}
    return {**body, "summary_sha256": sha256_bytes(canonical_json(body))}


def write_run(out_dir: Path, records: list[dict], unit: str, summary: dict | None = None) -> dict | None:
    """metrics.csv, then (if given) the summary.json that marks the run complete, sealed; returns it."""
    data = records_csv(records, unit)
    atomic_write_bytes(Path(out_dir) / METRICS, data)
    if summary is None:
        return None
    text = json.dumps(seal({**summary, "records_sha256": sha256_bytes(data)}), indent=2, default=float)
    atomic_write_text(Path(out_dir) / SUMMARY, text + "\n")
    # as read back (JSON turns tuples into lists); parsed from the text just made here, not from the file, so
    # not through read_json
    return json.loads(text)


def read_summary(out_dir: Path) -> dict:
    """The verified summary of a complete run; RecordError saying what is wrong otherwise."""
    return read_run(out_dir)[0]


def read_run(out_dir: Path) -> tuple[dict, pd.DataFrame]:
    """The verified summary and metrics of a complete run, the metrics parsed from the very bytes that were
    checked against the summary's digest; RecordError saying what is wrong otherwise."""
    out_dir = Path(out_dir)
    path = out_dir / SUMMARY
    try:
        summary = read_json(path)
    except FileNotFoundError:
        raise RecordError(f"{path}: missing") from None
    except DamagedJSON as error:
        raise RecordError(str(error)) from None
    missing = [name for name in SUMMARY_FIELDS if name not in summary]
    if missing:
        raise RecordError(f"{path}: lacks {', '.join(missing)}")
    if seal(summary)["summary_sha256"] != summary["summary_sha256"]:
        raise RecordError(f"{path}: its content does not match its own sha256 (edited or damaged)")
    if summary["status"] not in FINISHED_STATUSES:
        raise RecordError(f"{path}: status {summary['status']!r} is not a finished one")
    return summary, read_verified_csv(out_dir / METRICS, summary["records_sha256"])


class HashingReader(io.RawIOBase):
    """A file's bytes hashed as they are read: what reads through it (pandas' parser) sees exactly the bytes the
    digest covers, and neither of them holds the file whole (a long run's metrics.csv runs to gigabytes)."""

    def __init__(self, handle):
        super().__init__()
        self.handle, self.digest = handle, hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        count = self.handle.readinto(buffer)
        if count:
            self.digest.update(memoryview(buffer)[:count])
        return count

    def drain(self, chunk: int = 1 << 20) -> str:
        """Hash what is left unread (a parser that stopped early), then return the digest of the whole file."""
        while self.read(chunk):
            pass
        return self.digest.hexdigest()


def read_verified_csv(path: Path, sha256: str) -> pd.DataFrame:
    """The CSV at ``path``, parsed in one streaming pass that also hashes it; RecordError unless its sha256 is
    ``sha256``. A file that does not parse is reported by its digest (what damaged it matters, not how pandas
    fails on it)."""
    # a missing file or a folder in its place is a damaged record (RecordError: the study's state and the trainer
    # train it again); a permission or I/O error is not the record's fault and propagates (the CLI and the planning
    # report it in one line: retraining would not help, and the study would seem to have lost its runs)
    try:
        handle = open(path, "rb", buffering=0)
    except FileNotFoundError:
        raise RecordError(f"{path}: missing") from None
    except IsADirectoryError:
        raise RecordError(f"{path}: damaged, a folder, not a file") from None
    with handle:
        reader = HashingReader(handle)
        try:
            frame, failure = pd.read_csv(io.BufferedReader(reader, 1 << 20)), None
        except ValueError as error:  # pandas' ParserError, EmptyDataError, UnicodeDecodeError: all ValueErrors
            frame, failure = None, error
        digest = reader.drain()
    if digest != sha256:
        raise RecordError(f"{path}: does not match the sha256 its summary.json records (truncated or edited)")
    if failure is not None:
        raise RecordError(f"{path}: matches its recorded sha256 but does not parse as CSV ({failure})")
    return frame


def complete_summary(out_dir: Path, spec) -> tuple[dict | None, str]:
    """(summary, "") if the run in ``out_dir`` is complete, intact and of ``spec`` (a RunSpec: its identity and its
    key); else (None, why not). A record naming another run's key (its digests recomputed) is not this run's: its
    key would file it under the other run (in the tables, the sources, MLflow), as adabench.study.state also says."""
    try:
        summary = read_summary(out_dir)
    except RecordError as error:
        return None, str(error)
    if summary["identity"] != spec.identity():
        return None, f"{Path(out_dir) / SUMMARY}: a run of another configuration"
    if summary["run_key"] != spec.key:
        return None, f"{Path(out_dir) / SUMMARY}: names run {summary['run_key']!r}, not its own {spec.key!r}"
    return summary, ""


class MixedData(RecordError):
    """Runs of one problem and options trained on different data: their results cannot be pooled."""


def check_same_data(summaries: list[dict], new: tuple[str, str] | None = None) -> None:
    """Refuse runs of one problem and options whose records name different data (``data_digest``); ``new`` is
    (options key, digest) of runs about to be trained beside ``summaries``. The message names runs of each."""
    seen: dict[str, dict[str, list[str]]] = {}
    for summary in summaries:
        spec = summary["spec"]
        group = f"{spec['problem']}@{key_options_id(summary['run_key'])}"
        seen.setdefault(group, {}).setdefault(summary["data_digest"], []).append(summary["run_key"])
    if new is not None:
        seen.setdefault(new[0], {}).setdefault(new[1], []).append("the runs of this job")
    for group, by_digest in sorted(seen.items()):
        if len(by_digest) > 1:
            examples = "; ".join(f"data {digest[:12]}: {', '.join(keys[:2])}{' ...' if len(keys) > 2 else ''}"
                                 for digest, keys in sorted(by_digest.items()))
            raise MixedData(f"runs of {group} were trained on different data ({examples}). Fix: give the study "
                            "back the data its runs were trained on (rerun its data rules), or run the other data "
                            "as a study of its own (another study: name)")


def is_run_file(name: str) -> bool:
    """Whether a file name is one a run directory holds: its records, checkpoint, lock, set-aside and temporary
    files."""
    return name in (METRICS, SUMMARY, CHECKPOINT, LOCK, f"{LOCK}.held") or ".bad-" in name or (
        name.startswith(".") and name.endswith(".tmp"))


def foreign_folder(out_dir: Path) -> str:
    """Why ``out_dir`` must not become a run directory ("" if it may): the filesystem's root or a folder at its
    top, a file, a folder holding files that are not a run's, or a metrics.csv that no run of ours wrote (no
    summary, no checkpoint beside it), which training would overwrite."""
    resolved = Path(out_dir).resolve()
    if len(resolved.parts) <= 2:
        return f"{resolved} is the filesystem's root or a folder at its top; give the run a folder of its own"
    if resolved.exists() and not resolved.is_dir():
        return f"{resolved} is a file, not a folder"
    if resolved.is_dir():
        foreign = sorted(path.name for path in resolved.iterdir() if not is_run_file(path.name))
        if foreign:
            return (f"{resolved} holds files that are not a run's ({', '.join(foreign[:3])}"
                    f"{', ...' if len(foreign) > 3 else ''}); give an empty folder or a run's folder")
        if (resolved / METRICS).exists() and not ((resolved / SUMMARY).exists() or (resolved / CHECKPOINT).exists()):
            return f"{resolved / METRICS} is not a run's record (no summary.json or checkpoint.pt beside it)"
    return ""


def set_aside(path: Path, log) -> Path:
    """Move a damaged file out of the way, keeping it for inspection: ``<name>.bad-<time>``."""
    target = path.with_name(f"{path.name}.bad-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}")
    os.replace(path, target)
    log(f"WARNING: {path} moved aside to {target.name}")
    return target


class RunLock(ProcessLock):
    """An exclusive lock on a run directory, held while a process trains it (released when the process dies), so
    that a rerun beside a leftover job never trains one run twice at once: the second waits, then finds it complete."""

    def __init__(self, out_dir: Path, log):
        super().__init__(Path(out_dir) / LOCK)
        self.log = log

    def __enter__(self) -> "RunLock":
        self.acquire(wait=True, on_wait=lambda holder: self.log(
            f"{self.path.parent}: another process is training this run; waiting for it to end ({describe(holder)})"))
        return self
