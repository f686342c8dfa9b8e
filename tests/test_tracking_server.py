"""Parallel training jobs logging to a real MLflow tracking server on 127.0.0.1, started by the project's script."""
from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from workflow_helpers import REPO_ROOT, free_port

from adabench.core.spec import RunSpec
from adabench.workflow.tracking import RUN_KEY_TAG

PARALLEL_JOBS = 6
EXPERIMENT = "server-test"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    state = tmp_path_factory.mktemp("server")
    port = free_port()
    # one server process: its jobs' requests are few, and each process imports MLflow (seconds of a shared core)
    env = {**os.environ, "ADABENCH_MLFLOW_WORKERS": "1", "ADABENCH_MLFLOW_PORT": str(port),
           "ADABENCH_MLFLOW_BACKEND": f"sqlite:///{state}/server.db",
           "ADABENCH_MLFLOW_ARTIFACTS": str(state / "artifacts"),
           "ADABENCH_MLFLOW_BIN": str(os.path.join(os.path.dirname(sys.executable), "mlflow"))}
    script = ["bash", str(REPO_ROOT / "scripts/mlflow_server.sh")]
    started = subprocess.run([*script, "start"], env=env, capture_output=True, text=True, timeout=180)
    assert started.returncode == 0, started.stderr
    uri = f"http://127.0.0.1:{port}"
    # by default the server listens on this machine only, and says so
    assert f"export MLFLOW_TRACKING_URI={uri}" in started.stdout and f"listening on 127.0.0.1:{port}" in started.stdout
    yield uri
    subprocess.run([*script, "stop"], env=env, capture_output=True, timeout=60)
    assert subprocess.run([*script, "status"], env=env, capture_output=True).returncode == 3


def start_job(uri: str, seed: int, out) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "adabench", "train", "--problem", "linreg", "--optimizer", "adagrad", "--lr", "0.1",
         "--option", "epochs=15", "--seed", str(seed), "--out", str(out), "--threads", "1",
         "--tracking-uri", uri, "--experiment", EXPERIMENT],
        cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def test_parallel_jobs_give_one_complete_run_each_and_reruns_add_none(server, tmp_path):
    jobs = [start_job(server, seed, tmp_path / f"seed{seed}") for seed in range(PARALLEL_JOBS)]
    for job in jobs:
        assert job.wait(timeout=300) == 0, job.stderr.read()
    rerun = start_job(server, 0, tmp_path / "seed0-again")  # a retried job: same run key, new directory
    assert rerun.wait(timeout=300) == 0, rerun.stderr.read()

    client = MlflowClient(server)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    assert len(runs) == PARALLEL_JOBS
    assert sorted(run.data.tags[RUN_KEY_TAG] for run in runs) == sorted(
        RunSpec("linreg", "adagrad", {"lr": 0.1}, seed, {"epochs": 15}).key for seed in range(PARALLEL_JOBS))
    for run in runs:
        seed = int(run.data.params["seed"])
        records = pd.read_csv(tmp_path / f"seed{seed}" / "metrics.csv")
        history = sorted(client.get_metric_history(run.info.run_id, "train_mse"), key=lambda m: m.step)
        assert [m.step for m in history] == records.epoch.tolist() == list(range(1, 16))
        assert [m.value for m in history] == pytest.approx(records.train_mse.tolist(), rel=1e-12)
        assert run.info.status == "FINISHED" and run.data.tags["status"] == "finished"
        assert "metrics.csv" in [item.path for item in client.list_artifacts(run.info.run_id)]


def test_the_server_script_never_prints_a_database_password(tmp_path):
    """A PostgreSQL URI with a password: the script fails to reach it here, and says so without the password."""
    env = {**os.environ, "ADABENCH_MLFLOW_WORKERS": "1", "ADABENCH_MLFLOW_PORT": str(free_port()),
           "ADABENCH_MLFLOW_WAIT": "20",
           "ADABENCH_MLFLOW_BACKEND": "postgresql://bench:s3cret-pw@127.0.0.1:9/mlflow",
           "ADABENCH_MLFLOW_BIN": os.path.join(os.path.dirname(sys.executable), "mlflow")}
    script = ["bash", str(REPO_ROOT / "scripts/mlflow_server.sh")]
    started = subprocess.run([*script, "start"], env=env, capture_output=True, text=True, timeout=180)
    subprocess.run([*script, "stop"], env=env, capture_output=True, timeout=60)
    assert "s3cret-pw" not in started.stdout + started.stderr
