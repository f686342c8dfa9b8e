"""The study's MLflow store and experiment, created once and whole before any job logs into them: a SQLite store
made in a temporary file and renamed, a damaged one set aside and made again, MLflow's HTTP time-outs short. Light
(no torch): the workflow's mlflow_store job starts in the time MLflow takes to import; workflow.tracking logs runs
into what this makes.
"""
from __future__ import annotations

# mlflow is imported inside the functions that use it: it takes seconds to import (see tracking.py).

import contextlib
import json
import os
import sqlite3
from pathlib import Path

from ..core.atomic import atomic_write_text, fsync_directory
from ..study.layout import StudyLayout, sqlite_uri
from ..core.records import set_aside

# MLflow 3 opens an experiment on the view its kind names: training runs, not the GenAI overview
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}


def configure_timeouts(timeout_s: float) -> None:
    """Tracking calls give up within seconds: MLflow's client otherwise retries a dead server for minutes."""
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(int(max(1, timeout_s)))
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "1"
    os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"] = "1"
    os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_JITTER"] = "0"


def store_fault(database: Path) -> str:
    """Why a SQLite store cannot be used, or "" if it looks whole: MLflow's tables and a schema version (MLflow
    creates its tables, then stamps the version; a kill in between leaves tables without one). Read with sqlite3
    itself: MLflow caches a store's engine per URI, and an engine opened on a damaged file would outlive its
    replacement."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            missing = sorted({"alembic_version", "experiments", "runs", "metrics"} - tables)
            if missing:
                return f"half created: no table {', '.join(missing)}"
            if db.execute("SELECT version_num FROM alembic_version").fetchone() is None:
                return "half created: no schema version"
            check = db.execute("PRAGMA quick_check").fetchone()
            if check is None or check[0] != "ok":
                return f"fails SQLite's quick_check ({check[0] if check else 'no answer'})"
    except sqlite3.Error as error:
        return f"{type(error).__name__}: {error}"
    return ""


def create_sqlite_store(database: Path) -> None:
    """Create a SQLite store in a temporary file, then rename it: a kill never leaves a half-created store."""
    from mlflow.tracking import MlflowClient

    database = Path(database)
    database.parent.mkdir(parents=True, exist_ok=True)
    tmp = database.with_name(f".{database.name}.creating-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    try:
        MlflowClient(sqlite_uri(tmp)).search_experiments(max_results=1)  # creates and migrates its tables
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, database)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_directory(database.parent)


def ensure_experiment(tracking_uri: str, experiment: str, artifact_root: Path | None) -> str:
    """Create the store (and its tables) and the experiment once, before any training job runs.

    Concurrent first opens of a fresh SQLite store corrupt it (MLflow creates its tables without a lock),
    so the workflow runs this in one job that every training job depends on.
    """
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        location = Path(artifact_root).resolve().as_uri() if artifact_root else None
        try:
            client.create_experiment(experiment, artifact_location=location, tags=EXPERIMENT_TAGS)
        except MlflowException as error:
            # another process (CLI runs against a shared server) created it first
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        found = client.get_experiment_by_name(experiment)
    for name, value in EXPERIMENT_TAGS.items():  # also on an experiment made before the tag existed
        if found.tags.get(name) != value:
            client.set_experiment_tag(found.experiment_id, name, value)
    return found.experiment_id


def runs_view_url(base: str, experiment_id: str) -> str:
    """The address of an experiment's table of runs in the MLflow UI. MLflow 3.17's UI picks its view from the
    ``workflowType`` query parameter (else the sidebar's last choice, GenAI at first) and, read from its bundle, not
    from the experiment's kind tag: this address opens on the runs, whatever the browser chose before."""
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}?workflowType=machine_learning"


def ensure_store(study: StudyLayout, log) -> str:
    """The study's MLflow store and experiment, made whole: a damaged SQLite store of the study's own (MLflow's
    tables half created, or a file that fails SQLite's quick_check) is set aside and created anew, before MLflow
    opens it (MLflow keeps an engine per store, which would outlive the damaged file). Returns the experiment id."""
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


def create_store(study: StudyLayout, output: Path, log) -> None:
    """The workflow's mlflow_store job: the store and experiment made whole, and its marker written (what every
    training job waits for)."""
    experiment_id = ensure_store(study, log)
    log(f"MLflow experiment {study.experiment!r} is {experiment_id} at {study.tracking_uri()}")
    atomic_write_text(Path(output), json.dumps({"tracking_uri": study.tracking_uri(),
                                                "study_store": study.default_store(), "experiment": study.experiment,
                                                "experiment_id": experiment_id}, indent=2))
