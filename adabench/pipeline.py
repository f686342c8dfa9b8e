"""What the workflow's jobs do; scripts/ only unpack Snakemake's arguments and call these."""
from __future__ import annotations

import json
import os
import platform
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import torch

from .data import (FASHION_MNIST_CONTENT_SHA256, FASHION_MNIST_FILES, ChecksumError, checksum_file, fetch_file, prepare_fashion_mnist,
                   prepared_problem, verified_bytes)
from .population import train_population
from .records import RecordError, atomic_write_text, complete_summary, read_summary
from .run import PREEMPTED_EXIT_CODE, Preempted, RunSpec, stop_on_sigterm
from .study import DATA_FILE, RAW_DIR_NAME, Study, read_plan, roles_by_dir


class LogFile:
    """A callable that appends lines to a job's log file (and echoes them to stdout).

    The job's stderr goes to the same file, so a traceback lands where Snakemake says to look.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = self.path.open("a", buffering=1)
        sys.stderr = self.handle

    def __call__(self, line: str) -> None:
        self.handle.write(line + "\n")
        print(line, flush=True)


def start_job(snakemake) -> LogFile:
    """What every rule's script does first: its log file, and the study's plugins imported (a plugin's problems
    and optimizers must be registered wherever the registries are read)."""
    from .config import load_plugins

    log = LogFile(snakemake.log[0])
    load_plugins(snakemake.config.get("plugins", []))
    return log


def process_start(pid: int) -> str | None:
    """A process's start time (its /proc stat field 22), or None if it is gone: a pid alone may be reused."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def clear_stale_lock(snakemake_dir: Path, log) -> None:
    """Remove Snakemake's directory lock if the Snakemake that took it is gone (killed: SIGKILL, a power cut), so a
    plain rerun goes on; then record this process as the lock's owner. A lock whose owner cannot be told to be gone
    (another host, no record) is left to Snakemake, which refuses and says to use --unlock."""
    owner_file, locks = snakemake_dir / "adabench-lock-owner.json", sorted((snakemake_dir / "locks").glob("*.lock"))
    if locks:
        try:
            owner = json.loads(owner_file.read_text())
            gone = owner["host"] == platform.node() and process_start(owner["pid"]) != owner["start"]
        except (OSError, ValueError, KeyError, TypeError):
            return
        if not gone:
            return
        for lock in locks:
            lock.unlink(missing_ok=True)
        log(f"adabench: removed the lock of a Snakemake that is gone (pid {owner['pid']} on this host, killed?)")
    snakemake_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(owner_file, json.dumps({"host": platform.node(), "pid": os.getpid(),
                                              "start": process_start(os.getpid())}))


def die_with_parent(log, interval: float = 1.0) -> None:
    """End this process as soon as the process that started it (Snakemake) is gone.

    Killing Snakemake alone would otherwise leave its training jobs running, and a rerun would train the same
    run directories twice at once. Nothing is lost: every completed epoch is in the checkpoints.
    """
    parent = os.getppid()

    def watch():
        while True:
            time.sleep(interval)
            if os.getppid() != parent:
                log(f"the process that started this job ({parent}) is gone: stopping; the checkpoints hold every "
                    "completed epoch")
                os._exit(PREEMPTED_EXIT_CODE)

    threading.Thread(target=watch, daemon=True, name="die-with-parent").start()


def job_marker_entries(study: Study, specs: list[RunSpec]) -> list[dict]:
    return [{"key": spec.key, "run_dir": str(study.run_dir(spec)), "identity": spec.identity()} for spec in specs]


def train_job(config: dict, job_id: str, marker: Path, threads: int, log: LogFile, selection: str | None = None) -> None:
    """Train one job's population. Runs already complete are skipped, so a failed job loses nothing that
    finished before it; SIGTERM stops after the current epoch with every checkpoint written."""
    from .tracking import mlflow_trackers

    stop_on_sigterm()
    die_with_parent(log)
    torch.set_num_threads(threads)
    study = Study(config)
    job = study.jobs[job_id]
    specs = study.tuned_specs(job, pd.read_csv(selection)) if job.tuned else list(job.runs)
    trackers = mlflow_trackers(study.tracking_uri(), study.experiment, config["mlflow"]["timeout_s"], log)
    progress_file = Path(study.progress_file(job_id))
    started = time.time()

    def on_epoch(progress: dict) -> None:
        # for `adabench status`: where this job stands, and which process it is (a stalled one stops updating)
        atomic_write_text(progress_file, json.dumps({"job": job_id, "problem": job.problem, "pid": os.getpid(),
                                                     "host": platform.node(), "started": started,
                                                     "updated": time.time(), **progress}, indent=1) + "\n")

    try:
        train_population([(spec, study.run_dir(spec)) for spec in specs], device=study.device(job.problem),
                         deterministic=config["deterministic"], trackers=trackers, log=log, on_epoch=on_epoch)
    except Preempted as stop:
        log(str(stop))
        sys.exit(PREEMPTED_EXIT_CODE)  # the scheduler requeues or Snakemake retries; the rerun resumes
    atomic_write_text(Path(marker), json.dumps(job_marker_entries(study, specs), indent=2) + "\n")


def marker_runs(marker: Path) -> list[dict]:
    """The runs a job marker lists; RecordError if it is unreadable."""
    try:
        entries = json.loads(Path(marker).read_text())
        if not isinstance(entries, list) or not all({"key", "run_dir", "identity"} <= set(e) for e in entries):
            raise ValueError("not a list of runs")
    except (OSError, ValueError) as error:
        raise RecordError(f"{marker}: unreadable ({error})") from None
    return entries


def stale_outputs(study: Study) -> list[tuple[Path, str]]:
    """Outputs that claim more than is true now, with the reason: a job marker whose runs are no longer all
    complete and intact, a prepared dataset that fails its checksum, an MLflow store marker whose SQLite file
    is gone. Deleting them makes Snakemake rebuild them and what depends on them."""
    stale = []
    for job_id in study.jobs:
        marker = Path(study.job_marker(job_id))
        if not marker.exists():
            continue
        try:
            for entry in marker_runs(marker):
                summary, why_not = complete_summary(Path(entry["run_dir"]), entry["identity"])
                if summary is None:
                    raise RecordError(why_not)
        except RecordError as error:
            stale.append((marker, str(error)))
    data = Path(DATA_FILE)
    data_problem = prepared_problem(data, content=FASHION_MNIST_CONTENT_SHA256) if data.exists() else ""
    stale += [(path, data_problem) for path in (data, checksum_file(data)) if data_problem and path.exists()]
    if not data.exists() or data_problem:
        # the data will be prepared again: from raw files that verify, else fetched again
        stale += damaged_raw_files(data.parent / RAW_DIR_NAME)
    store_marker = Path(study.path("mlflow", "experiment.json"))
    if store_marker.exists():
        try:
            recorded = json.loads(store_marker.read_text())
            uri, default = recorded["tracking_uri"], recorded["study_store"]
        except (OSError, ValueError, KeyError, TypeError):
            stale.append((store_marker, "unreadable"))
        else:
            # the study's own SQLite store moves with the study's directory; any other store is named by its URI
            if default != study.default_store() or (not default and uri != study.tracking_uri()):
                stale.append((store_marker, f"MLflow is now at {study.tracking_uri()}, not {uri}"))
            elif default and not Path(study.tracking_uri().removeprefix("sqlite:///")).exists():
                stale.append((store_marker, f"its store {study.tracking_uri()} is gone"))
    return stale


def damaged_raw_files(raw_dir: Path) -> list[tuple[Path, str]]:
    """The fetched Fashion-MNIST files in ``raw_dir`` that do not verify (damaged since they were fetched)."""
    damaged = []
    for filename, sha256 in FASHION_MNIST_FILES.values():
        path = raw_dir / filename
        if path.exists():
            try:
                verified_bytes(path.read_bytes(), sha256, str(path))
            except ChecksumError as error:
                damaged.append((path, str(error)))
    return damaged


def remove_outputs(paths: list[str], reason: str, log) -> None:
    for path in map(Path, paths):
        if path.exists():
            log(f"adabench: {path} removed, so that it is built again ({reason})")
            path.unlink()


def remove_stale_outputs(study: Study, log) -> list[str]:
    """Remove the stale outputs (see stale_outputs), saying why; return their paths."""
    removed = []
    for path, reason in stale_outputs(study):
        log(f"adabench: {path} no longer holds ({reason}); removed, so that it is built again")
        path.unlink(missing_ok=True)
        removed.append(str(path))
    return removed


def study_run_dirs(study: Study, plan: pd.DataFrame, markers: list[str]) -> dict[str, set[str]]:
    """Run directory -> roles, for every run of the plan and every tuned run the tuned jobs' markers list."""
    roles = roles_by_dir(plan)
    tuned_jobs = {job.id for job in study.jobs.values() if job.tuned}
    for marker in markers:
        if Path(marker).stem in tuned_jobs:
            for entry in marker_runs(Path(marker)):
                roles.setdefault(entry["run_dir"], set()).add("tuned")
    return roles


def create_store(study: Study, artifact_root: str, output: Path, log: LogFile) -> None:
    from .tracking import create_sqlite_store, ensure_experiment, store_problem

    tracking_uri, experiment = study.tracking_uri(), study.experiment
    local = tracking_uri.startswith("sqlite:///")
    if local:
        database = Path(tracking_uri.removeprefix("sqlite:///"))
        if database.exists() and (problem := store_problem(database)):
            from .records import set_aside

            log(f"WARNING: the MLflow store {database} is unusable ({problem}); it is rebuilt, and mlflow_sync "
                "logs every run again from its records")
            set_aside(database, log)
        if not database.exists():
            create_sqlite_store(database)
    # a tracking server keeps artifacts where it was told to; a local store keeps them beside the database
    experiment_id = ensure_experiment(tracking_uri, experiment, Path(artifact_root) if local else None)
    log(f"MLflow experiment {experiment!r} is {experiment_id} at {tracking_uri}")
    atomic_write_text(Path(output), json.dumps({"tracking_uri": tracking_uri, "study_store": study.default_store(),
                                                "experiment": experiment, "experiment_id": experiment_id}, indent=2))


def sync_mlflow(config: dict, plan_path: str, markers: list[str], output: Path, log: LogFile) -> None:
    """Bring MLflow up to date with the run records: every complete run, each step once, one run per key."""
    from .tracking import configure_timeouts, sync_runs

    configure_timeouts(config["mlflow"]["timeout_s"])
    study = Study(config)
    directories = sorted(study_run_dirs(study, read_plan(plan_path), markers))
    summaries = []
    for directory in directories:
        try:
            summaries.append((Path(directory), read_summary(Path(directory))))
        except RecordError as error:
            log(f"WARNING: {error}; not synced")
    counts = sync_runs(study.tracking_uri(), study.experiment, summaries, log)
    log(f"MLflow synced from {len(summaries)} run records: {counts}")
    atomic_write_text(Path(output), json.dumps({"runs": len(summaries), **counts}, indent=2) + "\n")


def fetch_one(filename: str, sources: list[str], output: Path, timeout: float, log: LogFile) -> None:
    sha256 = dict(FASHION_MNIST_FILES.values())[filename]
    fetch_file(filename, sha256, sources, Path(output), timeout=timeout, log=log)


def prepare(raw_files: list[str], output: Path, log: LogFile) -> None:
    shapes = prepare_fashion_mnist(Path(raw_files[0]).parent, Path(output))
    log(f"prepared {output}: {shapes}")
