"""MLflowTracker on a SQLite store: one MLflow run per run key, and it always holds the run's own records."""
from __future__ import annotations

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from adabench.run import RunSpec, train_run
from adabench.tracking import RUN_KEY_TAG, MLflowTracker, ensure_experiment, sqlite_uri

EXPERIMENT = "tracking-test"


@pytest.fixture
def store(tmp_path) -> str:
    uri = sqlite_uri(tmp_path / "mlflow.db")
    ensure_experiment(uri, EXPERIMENT, tmp_path / "artifacts")
    return uri


def quadratic(steps: int, start: list[float]) -> RunSpec:
    return RunSpec("quadratic", "adagrad", {"lr": 0.4}, seed=0, problem_options={"steps": steps, "start": start})


def train(spec: RunSpec, out_dir, store: str) -> dict:
    return train_run(spec, out_dir, device="cpu", tracker=MLflowTracker(store, EXPERIMENT, flush_seconds=0))


def mlflow_history(store: str, key: str, metric: str) -> dict[int, float]:
    client = MlflowClient(store)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    (run,) = client.search_runs([experiment.experiment_id], filter_string=f"tags.`{RUN_KEY_TAG}` = '{key}'")
    return {m.step: m.value for m in client.get_metric_history(run.info.run_id, metric)}


def records(out_dir, metric: str) -> dict[int, float]:
    frame = pd.read_csv(out_dir / "metrics.csv")
    return dict(zip(frame["step"], frame[metric]))


def test_a_run_retrained_from_scratch_replaces_what_mlflow_held(store, tmp_path):
    # the run key leaves out the problem options: the same key trained again from another start, fewer steps
    first, second = quadratic(6, [2.0, 1.0]), quadratic(3, [1.0, 1.0])
    assert first.key == second.key
    train(first, tmp_path / "first", store)
    assert mlflow_history(store, first.key, "x1") == records(tmp_path / "first", "x1")

    train(second, tmp_path / "second", store)

    # one active run for the key, holding the second training's steps 0..3 and nothing of the first
    assert mlflow_history(store, second.key, "x1") == records(tmp_path / "second", "x1")
    assert sorted(mlflow_history(store, second.key, "x1")) == [0, 1, 2, 3]


def test_a_rerun_of_a_complete_run_logs_nothing_twice(store, tmp_path):
    spec = quadratic(4, [2.0, 1.0])
    train(spec, tmp_path / "a", store)
    # the same training again elsewhere: MLflow holds no step the records lack, so the run is kept
    train(spec, tmp_path / "b", store)

    client = MlflowClient(store)
    (run,) = client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id])
    history = client.get_metric_history(run.info.run_id, "x1")
    assert sorted(m.step for m in history) == [0, 1, 2, 3, 4]  # each step once
