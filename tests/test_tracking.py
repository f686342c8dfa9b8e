"""MLflow as a view of the run records: one MLflow run per run key, holding exactly the run's own records,
never a condition of training, and caught up from the records by a sync."""
from __future__ import annotations

import sqlite3
import time

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from training_helpers import StopAfter

from adabench.study.layout import StudyLayout, sqlite_uri
from adabench.core.optim import OPTIMIZERS, SGD
from adabench.core.records import read_run, read_summary
from adabench.core.runtime import STOP_REQUESTED, Preempted
from adabench.core.spec import RunSpec
from adabench.workflow.tracking import RECORDS_TAG, RUN_KEY_TAG, MLflowTracker, mlflow_trackers, sync_runs
from adabench.workflow.store import (configure_timeouts, create_sqlite_store, ensure_experiment, ensure_store,
                                     store_fault)
from adabench.core.trainer import train_run

EXPERIMENT = "tracking-test"


@pytest.fixture
def store(tmp_path) -> str:
    uri = sqlite_uri(tmp_path / "mlflow.db")
    ensure_experiment(uri, EXPERIMENT, tmp_path / "artifacts")
    return uri


def quadratic(steps: int = 6) -> RunSpec:
    return RunSpec("quadratic", "adagrad", {"lr": 0.4}, seed=0, problem_options={"steps": steps})


def train(spec: RunSpec, out_dir, store: str, **keywords) -> dict:
    return train_run(spec, out_dir, device="cpu", tracker=MLflowTracker(store, EXPERIMENT, flush_seconds=0), **keywords)


def mlflow_runs(store: str, key: str) -> list:
    """The active runs tagged with ``key``, matched here, not by a filter string (the code under test makes those)."""
    client = MlflowClient(store)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    return [run for run in client.search_runs([experiment.experiment_id], max_results=1000)
            if run.data.tags.get(RUN_KEY_TAG) == key]


def mlflow_history(store: str, key: str, metric: str) -> list[tuple[int, float]]:
    (run,) = mlflow_runs(store, key)
    return sorted((m.step, m.value) for m in MlflowClient(store).get_metric_history(run.info.run_id, metric))


def records(out_dir, metric: str) -> list[tuple[int, float]]:
    frame = pd.read_csv(out_dir / "metrics.csv")
    return list(zip(frame["step"], frame[metric]))


def test_an_mlflow_run_holding_steps_past_the_checkpoint_is_replaced(store, tmp_path):
    spec = quadratic()
    train(spec, tmp_path / "first", store)  # MLflow now holds steps 0..6 of the key
    # the same run, stopped after step 3 (nothing logged to MLflow), then resumed with MLflow on: what MLflow held
    # past step 3 belongs to another training, so the MLflow run is replaced by this one's records
    with pytest.raises(Preempted):
        train_run(spec, tmp_path / "second", device="cpu", tracker=StopAfter(3))
    STOP_REQUESTED.clear()
    train(spec, tmp_path / "second", store)
    assert len(mlflow_runs(store, spec.key)) == 1
    assert mlflow_history(store, spec.key, "x1") == records(tmp_path / "second", "x1")


def test_a_rerun_of_a_complete_run_logs_nothing_twice(store, tmp_path):
    spec = quadratic(4)
    train(spec, tmp_path / "a", store)
    train(spec, tmp_path / "b", store)  # the same training again elsewhere: MLflow holds no step the records lack
    assert [step for step, _ in mlflow_history(store, spec.key, "x1")] == [0, 1, 2, 3, 4]


def test_training_goes_on_without_mlflow_and_the_sync_catches_it_up(store, tmp_path):
    configure_timeouts(2)
    lines = []
    down = mlflow_trackers("http://127.0.0.1:9", EXPERIMENT, 2, lines.append)  # nothing listens on port 9
    spec = quadratic()
    summary = train_run(spec, tmp_path / "run", device="cpu", tracker=down(spec), log=lines.append)
    assert summary["status"] == "finished" and read_summary(tmp_path / "run")["status"] == "finished"
    assert any("MLflow at http://127.0.0.1:9 is unavailable" in line for line in lines)
    assert mlflow_runs(store, spec.key) == []

    counts = sync_runs(store, EXPERIMENT, [(tmp_path / "run", *read_run(tmp_path / "run"))], lines.append)
    assert counts["updated"] == 1
    assert mlflow_history(store, spec.key, "x1") == records(tmp_path / "run", "x1")
    (run,) = mlflow_runs(store, spec.key)
    assert run.data.tags[RECORDS_TAG] == summary["records_sha256"] and run.info.status == "FINISHED"
    # a second sync finds MLflow in step with the records and changes nothing
    again = sync_runs(store, EXPERIMENT, [(tmp_path / "run", *read_run(tmp_path / "run"))], lines.append)
    assert again == {"in_sync": 1, "updated": 0, "duplicates_removed": 0}


def test_the_sync_adds_missing_steps_and_removes_duplicate_runs(store, tmp_path):
    spec = quadratic()
    train_run(spec, tmp_path / "run", device="cpu")  # finished without MLflow
    tracker = MLflowTracker(store, EXPERIMENT, flush_seconds=0)
    tracker.start(spec.key, spec.identity(), "step", {"device": "cpu"}, recorded_up_to=2)
    tracker.log(pd.read_csv(tmp_path / "run" / "metrics.csv").head(3).to_dict("records"))  # steps 0..2 only
    tracker.flush()
    MlflowClient(store).create_run(mlflow_runs(store, spec.key)[0].info.experiment_id,
                                   tags={RUN_KEY_TAG: spec.key})  # a duplicate, as a retried create might leave
    counts = sync_runs(store, EXPERIMENT, [(tmp_path / "run", *read_run(tmp_path / "run"))], lambda line: None)
    assert counts == {"in_sync": 0, "updated": 1, "duplicates_removed": 1}
    assert mlflow_history(store, spec.key, "x1") == records(tmp_path / "run", "x1")


@OPTIMIZERS.register("test_labelled_sgd")
class LabelledSGD(SGD):
    """A plug-in with a string hyperparameter: its value is written into the run key, which MLflow is searched by."""

    def __init__(self, params, lr: float = 0.1, label: str = "plain"):
        super().__init__(params, lr=lr)


# a ' (searched with "..."), a " (with '...'), and both (no MLflow string literal holds both: matched in Python)
@pytest.mark.parametrize("label", ["it's", 'say "hi"', "it's \"x\" `y`"], ids=["single", "double", "both"])
def test_a_key_with_quotes_and_backticks_is_found_by_its_key_and_synced_once(store, tmp_path, label):
    spec = RunSpec("quadratic", "test_labelled_sgd", {"lr": 0.1, "label": label}, seed=0, problem_options={"steps": 4})
    assert label in spec.key
    train_run(spec, tmp_path / "run", device="cpu")  # without MLflow: the sync creates its run
    records_of_run = [(tmp_path / "run", *read_run(tmp_path / "run"))]
    assert sync_runs(store, EXPERIMENT, records_of_run, lambda line: None)["updated"] == 1
    assert sync_runs(store, EXPERIMENT, records_of_run, lambda line: None) == {"in_sync": 1, "updated": 0,
                                                                               "duplicates_removed": 0}
    (run,) = mlflow_runs(store, spec.key)
    assert MLflowTracker(store, EXPERIMENT).find_run(spec.key).info.run_id == run.info.run_id
    assert run.data.params["hp.label"] == label
    assert mlflow_history(store, spec.key, "x1") == records(tmp_path / "run", "x1")
    # trained again elsewhere with MLflow on: the tracker finds the key's run and replaces it, still one run
    train(spec, tmp_path / "again", store)
    assert len(mlflow_runs(store, spec.key)) == 1
    assert mlflow_history(store, spec.key, "x1") == records(tmp_path / "again", "x1")


def test_a_half_created_store_is_detected_and_a_new_one_is_created_atomically(tmp_path):
    broken = tmp_path / "broken.db"
    broken.write_bytes(b"SQLite format 3\x00" + b"\x00" * 200)
    assert store_fault(broken) != ""
    with sqlite3.connect(tmp_path / "half.db") as half:  # what a kill while MLflow created its tables leaves
        half.execute("CREATE TABLE experiments (experiment_id INTEGER PRIMARY KEY)")
    assert "half created" in store_fault(tmp_path / "half.db")
    fresh = tmp_path / "fresh" / "mlflow.db"
    create_sqlite_store(fresh)
    assert store_fault(fresh) == ""
    assert [path.name for path in fresh.parent.iterdir()] == ["mlflow.db"]  # no temporary file left behind


@pytest.fixture
def hung_server() -> str:
    """The address of a server that accepts connections and never answers."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    listener.close()


def test_a_hung_tracking_server_costs_a_training_job_seconds_not_minutes(tmp_path, hung_server):
    lines = []
    start = time.monotonic()
    trackers = mlflow_trackers(hung_server, EXPERIMENT, 2, lines.append)
    spec = quadratic()
    summary = train_run(spec, tmp_path / "run", device="cpu", tracker=trackers(spec), log=lines.append)
    elapsed = time.monotonic() - start
    assert summary["status"] == "finished"
    assert any(f"MLflow at {hung_server} is unavailable" in line for line in lines)
    assert elapsed < 30, elapsed  # MLflow's own defaults retry for minutes


def test_a_hung_tracking_server_fails_the_store_job_in_seconds_not_minutes(hung_server):
    # the mlflow_store job runs before any training: it fails (the study needs its experiment) within the
    # config's mlflow.timeout_s, not after MLflow's own minutes of retries
    config = {"study": "hung", "mlflow": {"experiment": None, "tracking_uri": hung_server, "timeout_s": 1}}
    start = time.monotonic()
    with pytest.raises(Exception, match="127.0.0.1"):
        ensure_store(StudyLayout(config), print)
    elapsed = time.monotonic() - start
    assert elapsed < 30, elapsed


def test_a_locked_store_stops_no_training_and_the_sync_catches_up(store, tmp_path):
    spec = quadratic()
    tracker = MLflowTracker(store, EXPERIMENT, flush_seconds=0)
    lines = []
    holder = sqlite3.connect(store.removeprefix("sqlite:///"), timeout=0)
    holder.execute("BEGIN EXCLUSIVE")  # another process holds the store
    try:
        summary = train_run(spec, tmp_path / "run", device="cpu", tracker=tracker, log=lines.append)
    finally:
        holder.rollback()
        holder.close()
    assert summary["status"] == "finished"
    assert any("WARNING: MLflow tracking" in line for line in lines)
    sync_runs(store, EXPERIMENT, [(tmp_path / "run", *read_run(tmp_path / "run"))], lines.append)
    assert mlflow_history(store, spec.key, "x1") == records(tmp_path / "run", "x1")
