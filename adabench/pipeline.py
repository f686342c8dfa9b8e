"""What the workflow's jobs do; scripts/ only unpack Snakemake's arguments and call these."""
from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import torch

from .atomic import atomic_write_text
from .data import FASHION_MNIST_FILES, fetch_file, prepare_fashion_mnist
from .joblog import LogFile, job_log
from .layout import StudyLayout
from .plan import read_plan
from .records import RecordError, read_run, read_summary
from .runtime import PREEMPTED_EXIT_CODE, Preempted, stop_on_sigterm
from .spec import RunSpec
from .status import write_progress
from .study import StudyProblems
from .trainer import train_population


def start_job(snakemake) -> LogFile:
    """What every rule's script that reads the registries does first: its log file, and the study's plugins
    imported (a plugin's problems and optimizers must be registered wherever the registries are read)."""
    from .config import load_plugins

    log = job_log(snakemake)
    load_plugins(snakemake.config.get("plugins", []))
    return log


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


def complete_runs_of(plan: Path, problem: str) -> list[dict]:
    """The verified summaries of the complete runs of ``problem`` in the study's plan (tuned reruns are found by
    their own jobs): what a job's new runs will be compared with."""
    summaries = []
    runs = read_plan(plan)
    for run_dir in runs[(runs.problem == problem) & (runs.run_dir != "")].run_dir:  # a tuned slot has none yet
        try:
            summaries.append(read_summary(Path(run_dir)))
        except RecordError:
            continue
    return summaries


def train_job(config: dict, job_id: str, job: dict, marker: Path, threads: int, log: LogFile, plan: Path,
              selection: str | None = None) -> None:
    """Train one job's population: ``job`` as the rule's params give it (Job.params: its runs, and tuned slots
    whose learning rate ``selection`` gives); the study's other runs of its problem are read from ``plan``. Runs
    already complete are skipped, so a failed job loses nothing that finished before it; SIGTERM stops after the
    current epoch with every checkpoint written."""
    from .analysis.tuning import chosen_lr
    from .tracking import mlflow_trackers

    stop_on_sigterm()
    die_with_parent(log)
    torch.set_num_threads(threads)
    study = StudyProblems(config)
    specs = [RunSpec.from_dict(run) for run in job["runs"]]
    if job["tuned_slots"]:
        chosen = pd.read_csv(selection)
        specs += [study.spec(job["problem"], optimizer, {"lr": chosen_lr(chosen, job["problem"], optimizer)}, seed)
                  for optimizer, seed in job["tuned_slots"]]
    specs = list({spec.key: spec for spec in specs}.values())
    trackers = mlflow_trackers(study.tracking_uri(), study.experiment, config["mlflow"]["timeout_s"], log)
    progress_file = Path(study.progress_file(job_id))
    write_progress(progress_file, job_id, job["problem"], {"size": len(specs)})  # `adabench status`: starting

    def on_epoch(progress: dict) -> None:
        write_progress(progress_file, job_id, job["problem"], progress)

    try:
        train_population([(spec, study.run_dir(spec)) for spec in specs], device=study.device(job["problem"]),
                         deterministic=config["deterministic"], trackers=trackers, log=log, on_epoch=on_epoch,
                         trained_beside=complete_runs_of(plan, job["problem"]))
    except Preempted as stop:
        log(str(stop))
        sys.exit(PREEMPTED_EXIT_CODE)  # the scheduler requeues or Snakemake retries; the rerun resumes
    finally:
        progress_file.unlink(missing_ok=True)
    atomic_write_text(Path(marker), json.dumps([{"key": spec.key, "run_dir": str(study.run_dir(spec))}
                                                for spec in specs], indent=2) + "\n")


def ensure_store(study: StudyLayout, log) -> str:
    """The study's MLflow store and experiment, made whole: a damaged SQLite store of the study's own (MLflow's
    tables half created, or a file that fails SQLite's quick_check) is set aside and created anew, before MLflow
    opens it (MLflow keeps an engine per store, which would outlive the damaged file). Returns the experiment id."""
    from .records import set_aside
    from .tracking import configure_timeouts, create_sqlite_store, ensure_experiment, store_fault

    configure_timeouts(study.config["mlflow"]["timeout_s"])  # a dead tracking server fails the job in seconds
    tracking_uri, experiment = study.tracking_uri(), study.experiment
    local = tracking_uri.startswith("sqlite:///")
    if local:
        database = Path(tracking_uri.removeprefix("sqlite:///"))
        if database.exists() and (fault := store_fault(database)):
            log(f"WARNING: the MLflow store {database} is unusable ({fault}); it is set aside and rebuilt, and "
                "every run is logged again from its records")
            set_aside(database, log)
        if not database.exists():
            create_sqlite_store(database)
    # a tracking server keeps artifacts where it was told to; a local store keeps them beside the database
    artifact_root = Path(study.path("mlflow", "artifacts")) if local else None
    return ensure_experiment(tracking_uri, experiment, artifact_root)


def create_store(study: StudyLayout, output: Path, log: LogFile) -> None:
    experiment_id = ensure_store(study, log)
    log(f"MLflow experiment {study.experiment!r} is {experiment_id} at {study.tracking_uri()}")
    atomic_write_text(Path(output), json.dumps({"tracking_uri": study.tracking_uri(),
                                                "study_store": study.default_store(), "experiment": study.experiment,
                                                "experiment_id": experiment_id}, indent=2))


def sync_mlflow(config: dict, run_dirs: dict[str, set[str]], output: Path, log: LogFile) -> None:
    """Bring MLflow up to date with the run records: every complete run, each step once, one run per key."""
    from .sources import write_sources
    from .tracking import sync_runs

    study = StudyLayout(config)
    ensure_store(study, log)  # damaged since it was created: rebuilt, then filled from the records below
    records = []
    for directory in sorted(run_dirs):
        try:
            records.append((Path(directory), *read_run(Path(directory))))
        except RecordError as error:
            log(f"WARNING: {error}; not synced")
    counts = sync_runs(study.tracking_uri(), study.experiment, records, log)
    log(f"MLflow synced from {len(records)} run records: {counts}")
    write_sources(Path(output), {str(directory): summary for directory, summary, _ in records}, counts)


def fetch_one(filename: str, sources: list[str], output: Path, timeout: float, log: LogFile) -> None:
    sha256 = dict(FASHION_MNIST_FILES.values())[filename]
    fetch_file(filename, sha256, sources, Path(output), timeout=timeout, log=log)


def prepare(raw_files: list[str], output: Path, log: LogFile) -> None:
    shapes = prepare_fashion_mnist(Path(raw_files[0]).parent, Path(output))
    log(f"prepared {output}: {shapes}")
