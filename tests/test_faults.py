"""Fault injection: each fault found when the study was deliberately broken, injected again, then one plain rerun
of the same command. After it the tables equal those of an uninterrupted run, with no manual step, and MLflow
holds exactly one run per run key with every step once.

A small study (quadratics, linreg, sparse logistic regression, a tiny LeNet, a tuning grid) is run once without
faults; each probe works on a copy of that finished study, injects its fault and reruns.
"""
from __future__ import annotations

import gzip
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient
from workflow_helpers import REPO_ROOT, copy_workflow, free_port, snakemake, snakemake_command, write_config

from adabench.plan import read_plan
from adabench.records import TIME_COLUMNS, read_summary
from adabench.tracking import RUN_KEY_TAG, sqlite_uri

STUDY = "faults"
ROOT = Path("results") / STUDY
LENET = {"epochs": 2, "validation_size": 300, "train_subset": 600, "test_subset": 300}
CONFIG = {
    "study": STUDY, "device": "cpu", "threads": 1, "seeds": [0, 1], "optimizers": ["adagrad", "adam"],
    "reference": {"problems": ["quadratic", "linreg"]},
    "problems": {
        "quadratic_rotated": {"optimizers": []},
        "linreg": {"options": {"epochs": 6, "n_samples": 256}},
        "sparse_logreg": {"options": {"epochs": 2, "n_features": 500, "n_train": 4000, "n_validation": 500,
                                      "n_test": 500}},
        "lenet_sigmoid_fmnist": {"options": LENET, "optimizers": ["adam"]},
        "lenet_relu_fmnist": {"optimizers": []},
    },
    "tuning": {"problems": ["sparse_logreg"], "optimizers": ["adagrad", "adam"],
               "lr_grid": {"low": 1.0e-2, "high": 1.0e-1, "points": 2}, "targets": {"sparse_logreg": 0.6}},
}
TARGETS = [str(ROOT / "tables" / f"{name}.csv") for name in ("comparison", "reproduction", "protocols",
                                                              "paired_tests", "time_to_target")]
TARGETS += [str(ROOT / "tuning/selection_check.json"), str(ROOT / "mlflow/synced.json")]
COMMAND = [*TARGETS, "--cores", "2", "--configfile", "faults.yaml"]
# how long training took, and how runs were grouped to train: not what they computed
CLOCK_COLUMNS = {"train_time_s", "wall_time_s", "final_time_s", "median_seconds", "population_size", "step_time_s",
                 "final_step_time_s"}


def run_study(workdir: Path, check: bool = True, **popen) -> subprocess.CompletedProcess:
    return snakemake(workdir, *COMMAND, check=check, **popen)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    workdir = copy_workflow(tmp_path_factory.mktemp("uninterrupted"))
    write_config(workdir, CONFIG, "faults.yaml")
    run_study(workdir)
    return workdir


@pytest.fixture
def study(uninterrupted, tmp_path) -> Path:
    """A copy of the finished study (modification times kept), to break."""
    copy = tmp_path / "study"
    shutil.copytree(uninterrupted, copy, symlinks=True)
    return copy


def tables(workdir: Path) -> dict[str, pd.DataFrame]:
    found = {Path(target).stem: pd.read_csv(workdir / target) for target in TARGETS if target.endswith(".csv")}
    found["runs"] = pd.read_csv(workdir / ROOT / "tables/runs.csv")
    return {name: table.drop(columns=[c for c in table if c in CLOCK_COLUMNS]) for name, table in found.items()}


def assert_same_tables(workdir: Path, uninterrupted: Path) -> dict[str, pd.DataFrame]:
    """The tables equal the uninterrupted run's (clock columns aside); returns them."""
    mine, reference = tables(workdir), tables(uninterrupted)
    for name in reference:
        pd.testing.assert_frame_equal(mine[name], reference[name], check_exact=False, rtol=1e-6, atol=1e-12,
                                      obj=name)
    return mine


def assert_recovered(workdir: Path, uninterrupted: Path) -> None:
    """The tables equal the uninterrupted run's; MLflow holds one run per run key, each step once."""
    runs = assert_same_tables(workdir, uninterrupted)["runs"]
    client = MlflowClient(sqlite_uri(workdir / ROOT / "mlflow/mlflow.db"))
    experiment = client.get_experiment_by_name(f"adabench-{STUDY}")
    by_key: dict[str, list] = {}
    for run in client.search_runs([experiment.experiment_id], max_results=5000):
        by_key.setdefault(run.data.tags[RUN_KEY_TAG], []).append(run)
    assert sorted(by_key) == sorted(runs.run_key)
    assert {key: len(found) for key, found in by_key.items() if len(found) > 1} == {}
    for key, (run,) in by_key.items():
        steps = pd.read_csv(workdir / ROOT / "runs" / key / "metrics.csv").iloc[:, 0].tolist()
        logged = [m.step for m in client.get_metric_history(run.info.run_id, "time_s")]
        assert sorted(logged) == steps, key


def known_runs(workdir: Path) -> list[Path]:
    plan = read_plan(workdir / ROOT / "plan.csv")
    return [workdir / directory for directory in plan[plan.key != ""].sort_values("key").run_dir]


def lenet_run(workdir: Path) -> Path:
    plan = read_plan(workdir / ROOT / "plan.csv")
    return workdir / plan[plan.problem == "lenet_sigmoid_fmnist"].run_dir.iloc[0]


def edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


class Pickled:
    """A checkpoint from someone else that runs a command when unpickled."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


# Faults of one run's records, each injected into a run of its own: (run directory, the study's directory)
def garbage_checkpoint(run: Path, workdir: Path) -> None:
    (run / "summary.json").unlink()
    (run / "checkpoint.pt").write_bytes(os.urandom(4096))


def pickled_checkpoint(run: Path, workdir: Path) -> None:
    (run / "summary.json").unlink()
    torch.save({"identity": Pickled(workdir / "PWNED")}, run / "checkpoint.pt")


def truncated_summary(run: Path, workdir: Path) -> None:
    path = run / "summary.json"
    path.write_bytes(path.read_bytes()[:200])


def summary_missing_fields(run: Path, workdir: Path) -> None:
    edit_json(run / "summary.json", lambda summary: summary.pop("spec"))


def non_utf8_summary(run: Path, workdir: Path) -> None:
    path = run / "summary.json"
    path.write_bytes(path.read_bytes()[:50] + b"\xff\xfe\x80" + path.read_bytes()[53:])


def edited_summary(run: Path, workdir: Path) -> None:
    edit_json(run / "summary.json", lambda summary: summary["final"].update(time_s=-1.0, epochs_completed=99))


def deleted_summary(run: Path, workdir: Path) -> None:
    (run / "summary.json").unlink()


def truncated_metrics(run: Path, workdir: Path) -> None:
    path = run / "metrics.csv"
    text = path.read_text()
    path.write_text(text[:len(text) // 2 + 3])  # cut in the middle of a row, most likely of a number


def deleted_run_directory(run: Path, workdir: Path) -> None:
    shutil.rmtree(run)


RECORD_FAULTS = [garbage_checkpoint, pickled_checkpoint, truncated_summary, summary_missing_fields, non_utf8_summary,
                 edited_summary, deleted_summary, truncated_metrics, deleted_run_directory]


@pytest.fixture(scope="module")
def damaged_records(uninterrupted, tmp_path_factory):
    """A copy of the finished study with every record fault injected, each into a different run (the LeNet's
    first, then every second run of the plan), then one plain rerun: (the study, the rerun's output, the runs)."""
    study = tmp_path_factory.mktemp("damaged") / "study"
    shutil.copytree(uninterrupted, study, symlinks=True)
    candidates = [lenet_run(study)] + [run for run in known_runs(study)[::2] if run != lenet_run(study)]
    runs = dict(zip((fault.__name__ for fault in RECORD_FAULTS), candidates))
    for fault in RECORD_FAULTS:
        fault(runs[fault.__name__], study)
    rerun = run_study(study)
    said = rerun.stdout + rerun.stderr + "".join(path.read_text(errors="replace")
                                                 for path in (study / ROOT / "logs").rglob("*.log"))
    return study, said, runs


@pytest.mark.parametrize("fault", [fault.__name__ for fault in RECORD_FAULTS])
def test_a_damaged_run_record_is_trained_again_by_one_plain_rerun(fault, damaged_records, uninterrupted):
    study, said, runs = damaged_records
    assert_recovered(study, uninterrupted)
    run = runs[fault]
    original = uninterrupted / run.relative_to(study)
    assert read_summary(run)["status"] == "finished" and read_summary(run)["identity"] == read_summary(original)[
        "identity"]
    pd.testing.assert_frame_equal(pd.read_csv(run / "metrics.csv").drop(columns=TIME_COLUMNS),
                                  pd.read_csv(original / "metrics.csv").drop(columns=TIME_COLUMNS), rtol=1e-6)
    assert not (study / "PWNED").exists()  # a checkpoint is data, never code
    if fault.endswith("checkpoint"):  # what was wrong is said, not passed over in silence
        assert f"{(run / 'checkpoint.pt').relative_to(study)} is unusable" in said
        assert list(run.glob("checkpoint.pt.bad-*"))
    else:
        assert STALE in said


def test_after_the_repair_nothing_is_left_to_do(damaged_records):
    study, _, _ = damaged_records
    assert "Nothing to be done" in snakemake(study, "-n", *COMMAND).stdout


# Faults of the data and the MLflow store, each on a copy of its own
def garbage_in_the_prepared_data(workdir: Path) -> None:
    data = workdir / "results/data/fashion_mnist.pt"
    with open(data, "r+b") as handle:
        handle.seek(4_000_000)
        handle.write(os.urandom(1_000_000))


def damaged_raw_file_and_prepared_data(workdir: Path) -> None:
    raw = workdir / "results/data/fashion-mnist/train-labels-idx1-ubyte.gz"
    data = bytearray(raw.read_bytes())
    data[len(data) // 2:len(data) // 2 + 64] = os.urandom(64)
    raw.write_bytes(bytes(data))
    (workdir / "results/data/fashion_mnist.pt").unlink()


def half_created_store(workdir: Path) -> None:
    """What a kill during mlflow_store left: a database with some of MLflow's tables, no store marker."""
    store = workdir / ROOT / "mlflow"
    shutil.rmtree(store)
    store.mkdir()
    with sqlite3.connect(store / "mlflow.db") as database:
        database.execute("CREATE TABLE trace_info (request_id VARCHAR(50) PRIMARY KEY)")


def deleted_store(workdir: Path) -> None:
    shutil.rmtree(workdir / ROOT / "mlflow")


def random_bytes_store(workdir: Path) -> None:
    """The store overwritten: neither the next run nor the sync may take it for a store."""
    (workdir / ROOT / "mlflow/mlflow.db").write_bytes(os.urandom(64 * 1024))


STALE = "no longer holds"  # what the workflow says of an output it rebuilds because what it claims is gone
# each fault, and what the rerun says of it (None: the missing outputs are simply built again)
FAULTS = {fault.__name__: (fault, said) for fault, said in (
    (garbage_in_the_prepared_data, STALE), (damaged_raw_file_and_prepared_data, "not a valid gzip file"),
    (half_created_store, "is unusable"), (deleted_store, None), (random_bytes_store, "set aside and rebuilt"))}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_one_plain_rerun_after_the_fault_gives_the_uninterrupted_tables(fault, study, uninterrupted):
    inject, expected = FAULTS[fault]
    inject(study)
    rerun = run_study(study)
    assert_recovered(study, uninterrupted)
    if expected:  # what was wrong is said, not passed over in silence
        said = rerun.stdout + rerun.stderr + "".join(path.read_text(errors="replace")
                                                     for path in (study / ROOT / "logs").rglob("*.log"))
        assert expected in said, said[-3000:]


def test_a_config_change_after_damage_rebuilds_the_tables_for_the_new_config(study):
    """An emptied summary and a changed config: the tables follow the config, and a second rerun has nothing to do."""
    (lenet_run(study) / "summary.json").write_text("")
    changed = json.loads(json.dumps(CONFIG))
    changed["problems"]["linreg"]["settings"] = {"adam": {"lr": 0.05}}
    write_config(study, changed, "faults.yaml")
    run_study(study)
    comparison = pd.read_csv(study / ROOT / "tables/comparison.csv")
    assert set(comparison[(comparison.problem == "linreg") & (comparison.optimizer == "adam")].setting) == {"lr=0.05"}
    assert "Nothing to be done" in snakemake(study, "-n", *COMMAND).stdout


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


def fresh(study: Path) -> None:
    """The copy with nothing trained yet: every run, store and table gone, the data kept."""
    shutil.rmtree(study / ROOT)
    shutil.rmtree(study / ".snakemake")


def test_killing_snakemake_alone_ends_its_training_jobs_and_a_plain_rerun_finishes(study, uninterrupted):
    """Snakemake killed alone (as a killed terminal would), twice: while its plan job runs, whose own process then
    finishes the plan (an output that exists, marked incomplete by Snakemake), and while a training job runs."""
    fresh(study)
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
    assert list((study / ".snakemake/locks").glob("*.lock"))  # the killed Snakemake's lock is still there
    rerun = run_study(study)
    assert "the Snakemake that took it is gone" in rerun.stdout + rerun.stderr
    assert_recovered(study, uninterrupted)


def test_a_second_snakemake_beside_a_running_one_is_refused_with_the_way_out(study):
    fresh(study)
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
    fresh(study)
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
    env = {**os.environ, "ADABENCH_MLFLOW_PORT": str(free_port()),
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
    fresh(study)
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_server.uri}
    tracking_server.start()
    process = subprocess.Popen(snakemake_command(study, *COMMAND), cwd=study, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    wait_for(lambda: list((study / ROOT / "jobs").glob("*.json")) if (study / ROOT / "jobs").exists() else [],
             240, "finished training job")
    tracking_server.stop()
    output, _ = process.communicate(timeout=600)
    assert process.returncode != 0 and "Error in rule mlflow_sync" in output  # MLflow stayed down to the end
    logs = "".join(path.read_text() for path in (study / ROOT / "logs/train").glob("*.log"))
    assert "WARNING: MLflow" in logs
    # every training job finished nonetheless
    assert len(list((study / ROOT / "jobs").glob("*.json"))) == read_plan(study / ROOT / "plan.csv").job.nunique()
    tracking_server.start()
    rerun = run_study(study, check=False, env=env, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    mine = assert_same_tables(study, uninterrupted)
    client = MlflowClient(tracking_server.uri)
    experiment = client.get_experiment_by_name(f"adabench-{STUDY}")
    keys = [run.data.tags[RUN_KEY_TAG] for run in client.search_runs([experiment.experiment_id], max_results=5000)]
    assert sorted(keys) == sorted(mine["runs"].run_key)


def test_a_damaged_raw_file_alone_is_named_with_its_fix(tmp_path):
    from adabench.data import DataError, prepare_fashion_mnist

    raw = tmp_path / "raw"
    raw.mkdir()
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                 "t10k-labels-idx1-ubyte.gz"):
        (raw / name).write_bytes(gzip.compress(b"\x00" * 64))
    with pytest.raises(DataError) as raised:
        prepare_fashion_mnist(raw, tmp_path / "out.pt")
    message = str(raised.value)
    assert str(raw / "train-images-idx3-ubyte.gz") in message and "sha256" in message
    assert f"delete {raw / 'train-images-idx3-ubyte.gz'} and rerun" in message
