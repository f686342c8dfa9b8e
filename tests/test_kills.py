"""Killed processes: Snakemake killed alone, at random moments, or with a training job; a second Snakemake beside
a running one; a tracking server killed mid-study. After one plain rerun the tables equal those of the uninterrupted
fault study (tests/fault_study.py), and MLflow holds exactly one run per run key.
"""
from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fault_study import COMMAND, ROOT, STUDY, assert_recovered, assert_same_tables, run_study
from mlflow.tracking import MlflowClient
from workflow_helpers import REPO_ROOT, free_port, snakemake_command

from adabench.study.plan import read_plan
from adabench.workflow.tracking import RUN_KEY_TAG


def training_processes(workdir: Path, script: str = "train.py") -> list[int]:
    """The processes of the study's jobs of one rule (by its script): training jobs unless said otherwise."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if str(workdir) in command and script in command:
                found.append(int(entry.name))
    return found


def start_study(workdir: Path) -> subprocess.Popen:
    return subprocess.Popen(snakemake_command(workdir, *COMMAND), cwd=workdir, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"no {what} after {timeout} s"
        time.sleep(0.1)


# the problems whose runs the kill tests train again: a LeNet and two fast ones, four jobs on two cores
RETRAINED = ("lenet_sigmoid_fmnist", "linreg", "quadratic")


def retrain_jobs_of(study: Path, problems: tuple[str, ...] = RETRAINED, replan: bool = False) -> set[str]:
    """The copy with the planned runs of ``problems`` to train again (their records gone), its MLflow store, tables
    and Snakemake's state gone: a study mid-way, at a fraction of a fresh study's cost (the tuning search's problem
    keeps its records, so no round runs again). ``replan``: the plan goes too, so its job runs first (the jobs read
    it as ancient: the same plan made again trains no complete run). Returns the jobs that train."""
    plan = read_plan(study / ROOT / "plan.csv")
    chosen = plan[plan.problem.isin(problems)]
    for run_dir in chosen.run_dir:
        shutil.rmtree(study / run_dir)
    for made in (study / ROOT / "mlflow", study / ROOT / "tables", study / ".snakemake"):
        shutil.rmtree(made)
    if replan:
        (study / ROOT / "plan.csv").unlink()
    return set(chosen.job)


def test_killing_snakemake_alone_ends_its_training_jobs_and_a_plain_rerun_finishes(study, uninterrupted):
    """Snakemake killed alone (as a killed terminal would), twice: while its plan job runs, whose own process then
    finishes the plan (an output that exists, marked incomplete by Snakemake), and while a training job runs."""
    retrain_jobs_of(study, replan=True)
    for script in ("plan.py", "train.py"):
        snakemake_process = start_study(study)
        try:
            # a run after the first kill must plan the training too, not only the plan job it left incomplete
            wait_for(lambda: training_processes(study, script), 120, f"{script} job")
            os.kill(snakemake_process.pid, signal.SIGKILL)
            snakemake_process.wait()
            # orphaned training jobs notice (within a second of their watcher starting, once their imports are
            # done): no rerun will train a directory beside them; the bound only keeps a hung test from waiting
            wait_for(lambda: not training_processes(study, script), 600, f"end of the orphaned {script} job")
        finally:
            if snakemake_process.poll() is None:
                os.killpg(snakemake_process.pid, signal.SIGKILL)
        assert (study / ROOT / "plan.csv").is_file()
    # Snakemake took no lock of its own (nolock in the profile), so none stayed behind to refuse the rerun
    assert not list((study / ".snakemake/locks").glob("*.lock"))
    run_study(study)
    assert_recovered(study, uninterrupted)


def test_a_second_snakemake_beside_a_running_one_is_refused_with_the_way_out(study):
    retrain_jobs_of(study)
    first = start_study(study)
    try:
        wait_for(lambda: training_processes(study), 120, "training job")
        second = run_study(study, check=False)
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    assert second.returncode != 0
    assert f"study '{STUDY}' is being run by another Snakemake: pid {first.pid}" in second.stderr
    assert "adabench stop" in second.stderr


def test_kills_at_random_moments_each_followed_by_a_rerun(study, uninterrupted):
    """Snakemake or one of its training jobs killed at 5 random moments (seeded: ADABENCH_KILL_SEED replays a
    failure), each followed by a rerun that may itself be killed; then one plain rerun to the end."""
    seed = int(os.environ.get("ADABENCH_KILL_SEED", "20261129"))
    chooser = random.Random(seed)
    retrain_jobs_of(study, replan=True)
    for attempt in range(5):
        process = start_study(study)
        time.sleep(chooser.uniform(2.0, 25.0))
        victims = training_processes(study) if chooser.random() < 0.5 else []
        target = chooser.choice(victims) if victims else process.pid
        try:
            os.kill(target, signal.SIGKILL)
        except ProcessLookupError:
            pass  # it had just ended
        if target != process.pid:
            time.sleep(chooser.uniform(0.5, 3.0))
            try:
                os.kill(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        process.wait()
        wait_for(lambda: not training_processes(study), 600, f"end of the training jobs (seed {seed}, kill {attempt})")
    run_study(study)
    assert_recovered(study, uninterrupted)


@pytest.fixture
def tracking_server(tmp_path):
    """The project's MLflow server script on a free port of 127.0.0.1; `start()` and `stop()` (the same store)."""
    env = {**os.environ, "ADABENCH_MLFLOW_WORKERS": "1", "ADABENCH_MLFLOW_PORT": str(free_port()),
           "ADABENCH_MLFLOW_BACKEND": f"sqlite:///{tmp_path}/server.db",
           "ADABENCH_MLFLOW_ARTIFACTS": str(tmp_path / "artifacts"),
           "ADABENCH_MLFLOW_BIN": os.path.join(os.path.dirname(sys.executable), "mlflow"),
           # the script waits for the server's health answer; this bound only ends a server that never answers
           "ADABENCH_MLFLOW_WAIT": "600"}
    script = ["bash", str(REPO_ROOT / "scripts/mlflow_server.sh")]

    class Server:
        uri = f"http://127.0.0.1:{env['ADABENCH_MLFLOW_PORT']}"

        def start(self):
            done = subprocess.run([*script, "start"], env=env, capture_output=True, text=True, timeout=700)
            assert done.returncode == 0, done.stderr

        def stop(self):
            subprocess.run([*script, "stop"], env=env, capture_output=True, timeout=60)

    server = Server()
    yield server
    server.stop()


def test_a_tracking_server_killed_mid_study_stops_no_training_and_a_rerun_heals_mlflow(study, uninterrupted,
                                                                                       tracking_server):
    # four jobs on two cores: the server is killed when the first ends, so later jobs start without it
    retrained = retrain_jobs_of(study)
    assert len(retrained) >= 3
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_server.uri}
    tracking_server.start()
    process = subprocess.Popen(snakemake_command(study, *COMMAND), cwd=study, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)

    def finished_jobs() -> list[Path]:
        return list((study / ROOT / "jobs").glob("*.json"))

    wait_for(lambda: finished_jobs() or process.poll() is not None, 240, "finished training job")
    assert finished_jobs(), f"Snakemake ended before any training job finished:\n{process.communicate()[0][-3000:]}"
    tracking_server.stop()
    output, _ = process.communicate(timeout=600)
    assert process.returncode != 0 and "Error in rule mlflow_sync" in output  # MLflow stayed down to the end
    logs = "".join(path.read_text() for path in (study / ROOT / "logs/train").glob("*.log"))
    assert "WARNING: MLflow" in logs
    # every training job finished nonetheless
    assert {path.stem for path in (study / ROOT / "jobs").glob("*.json")} >= retrained
    tracking_server.start()
    rerun = run_study(study, check=False, env=env, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    mine = assert_same_tables(study, uninterrupted)
    client = MlflowClient(tracking_server.uri)
    experiment = client.get_experiment_by_name(f"adabench-{STUDY}")
    keys = [run.data.tags[RUN_KEY_TAG] for run in client.search_runs([experiment.experiment_id], max_results=5000)]
    assert sorted(keys) == sorted(mine["runs"].run_key)
