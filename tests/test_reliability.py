"""Reliability, round two: MLflow runs left half made are completed, the CLI refuses what the config refuses, runs
never mix data, locks hold without flock, links inside a study are refused, CUDA settings are right by reading."""
from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient
from workflow_helpers import REPO_ROOT, copy_workflow, quick_config, snakemake, snakemake_command, write_config

from adabench.core import locks
from adabench.analysis.aggregate import gather
from adabench.study.config import ConfigError, load_study_config
from adabench.core.data import FASHION_MNIST_CONTENT_SHA256, load_prepared, prepared_data_fault, save_prepared
from adabench.core.locks import Locked, ProcessLock
from adabench.core.population import load_group_state
from adabench.core.problems.base import PROBLEMS, Problem
from adabench.core.records import MixedData, read_run, read_summary, write_run
from adabench.core.runtime import configure_precision, cuda_driver_version
from adabench.core.spec import RunSpec
from adabench.workflow.tracking import RUN_KEY_TAG, grid_runs_from_mlflow, sync_runs
from adabench.study.layout import sqlite_uri
from adabench.workflow.store import ensure_experiment
from adabench.core.trainer import train_population, train_run

QUIET = lambda line: None  # noqa: E731


def linreg(seed: int = 0, lr: float = 0.1, **options) -> RunSpec:
    return RunSpec("linreg", "adagrad", {"lr": lr}, seed, {"epochs": 3, **options})


# --- MLflow heals partial runs ------------------------------------------------------------------------------------
def test_an_mlflow_run_created_with_its_key_and_nothing_else_is_completed_from_the_records(tmp_path):
    """What a tracking server dying between creating a run and logging its params leaves: the sync completes it,
    and the selection check can read it (it crashed with KeyError 'problem' before)."""
    uri = sqlite_uri(tmp_path / "mlflow.db")
    ensure_experiment(uri, "partial", tmp_path / "artifacts")
    spec = linreg()
    summary = train_run(spec, tmp_path / "run", device="cpu", log=QUIET)
    client = MlflowClient(uri)
    experiment_id = client.get_experiment_by_name("partial").experiment_id
    client.create_run(experiment_id, run_name=spec.key, tags={RUN_KEY_TAG: spec.key})

    counts = sync_runs(uri, "partial", [(tmp_path / "run", *read_run(tmp_path / "run"))], QUIET)
    assert counts["updated"] == 1
    (run,) = client.search_runs([experiment_id])
    assert run.data.params["problem"] == "linreg" and run.data.params["hp.lr"] == "0.1"
    assert run.data.metrics["train_mse"] == pytest.approx(summary["final"]["train_mse"])
    declarations = {"linreg": PROBLEMS.get("linreg").declarations()}
    assert grid_runs_from_mlflow(uri, "partial", [spec.key], declarations).problem.tolist() == ["linreg"]
    # whole now: a second sync leaves it as it is
    assert sync_runs(uri, "partial", [(tmp_path / "run", *read_run(tmp_path / "run"))], QUIET)["in_sync"] == 1


# --- the CLI validates like the config ----------------------------------------------------------------------------
def adabench_train(*arguments: str, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "adabench", "train", "--problem", "linreg", "--optimizer", "adagrad",
                           "--threads", "1", *arguments], cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("arguments, message", [
    (["--seed", "0", "--set", "lr_decay=-1"], "adabench train: --set lr_decay: -1 is less than the minimum of 0"),
    (["--seed", "-1"], "adabench train: --seed: -1 is less than the minimum of 0"),
    (["--seed", "0", "--lr", "-1"], "adabench train: --set lr: -1.0 is less than or equal to the minimum of 0"),
    (["--seed", "0", "--option", "epochs=0"], "adabench train: --option epochs: 0 is less than the minimum of 1"),
    (["--seed", "0", "--set", "momentum=0.5"], "adabench train: --set momentum: optimizer 'adagrad' has no"),
    (["--seed", "0", "--out", "/"], "adabench train: --out /: / is the filesystem's root or a folder at its top"),
])
def test_the_cli_refuses_in_one_line_what_the_config_refuses(tmp_path, arguments, message):
    if "--out" not in arguments:
        arguments = [*arguments, "--out", str(tmp_path / "run")]
    done = adabench_train(*arguments)
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [done.stderr.strip().splitlines()[0]]  # one line, no traceback
    assert done.stderr.startswith(message)
    assert not (tmp_path / "run").exists() and not Path("/metrics.csv").exists()


def test_the_cli_never_overwrites_a_file_that_is_not_its_own(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "metrics.csv").write_text("my own numbers\n")
    done = adabench_train("--seed", "0", "--out", str(mine))
    assert done.returncode != 0 and "not a run's record" in done.stderr
    assert (mine / "metrics.csv").read_text() == "my own numbers\n"
    (mine / "metrics.csv").unlink()
    (mine / "notes.txt").write_text("hello\n")
    done = adabench_train("--seed", "0", "--out", str(mine))
    assert done.returncode != 0 and "holds files that are not a run's (notes.txt)" in done.stderr
    # a run's own folder is fine: a complete run is reported, not trained again
    done = adabench_train("--seed", "0", "--option", "epochs=2", "--out", str(tmp_path / "run"))
    assert done.returncode == 0, done.stderr
    again = adabench_train("--seed", "0", "--option", "epochs=2", "--out", str(tmp_path / "run"))
    assert again.returncode == 0 and "finished after 2 epochs" in again.stdout


# --- runs never mix data ------------------------------------------------------------------------------------------
def test_every_run_records_the_content_digest_of_its_data(tmp_path):
    a = train_run(linreg(), tmp_path / "a", device="cpu", log=QUIET)
    b = train_run(linreg(seed=1), tmp_path / "b", device="cpu", log=QUIET)
    other = train_run(linreg(data_seed=7), tmp_path / "c", device="cpu", log=QUIET)
    assert a["data_digest"] == b["data_digest"] != other["data_digest"] and len(a["data_digest"]) == 64


def test_a_job_refuses_to_add_runs_of_other_data_and_the_aggregate_refuses_mixed_records(tmp_path):
    published = train_run(linreg(), tmp_path / "published", device="cpu", log=QUIET)
    tampered = {**published, "data_digest": "0" * 64}  # as if the published run had trained on other data
    with pytest.raises(MixedData, match=r"runs of linreg@\w+ were trained on different data.*Fix:"):
        train_population([(linreg(seed=1), tmp_path / "new")], device="cpu", log=QUIET, trained_beside=[tampered])
    assert not (tmp_path / "new" / "metrics.csv").exists()  # refused before any training

    # two complete, intact runs of one problem and options whose records name different data: the tables refuse them
    other = train_run(linreg(seed=1), tmp_path / "other", device="cpu", log=QUIET)
    records = pd.read_csv(tmp_path / "other" / "metrics.csv").to_dict("records")
    body = {name: value for name, value in other.items() if name not in ("records_sha256", "summary_sha256")}
    write_run(tmp_path / "other", records, "epoch", {**body, "data_digest": "1" * 64})
    assert read_summary(tmp_path / "other")["data_digest"] == "1" * 64  # sealed anew: a valid record
    with pytest.raises(MixedData, match="were trained on different data"):
        gather({str(tmp_path / "published"): {"study"}, str(tmp_path / "other"): {"study"}})


def test_prepared_data_that_is_not_the_real_fashion_mnist_is_refused_even_with_a_matching_sidecar(quick, tmp_path):
    data = load_prepared(quick / "results/data/fashion_mnist.pt")
    assert prepared_data_fault(quick / "results/data/fashion_mnist.pt", content=FASHION_MNIST_CONTENT_SHA256) == ""
    generator = torch.Generator().manual_seed(0)
    permuted = {**data, "train_labels": data["train_labels"][torch.randperm(60000, generator=generator)]}
    save_prepared(permuted, tmp_path / "fashion_mnist.pt")  # the project's own writer: the sidecar matches
    assert prepared_data_fault(tmp_path / "fashion_mnist.pt") == ""
    problem = prepared_data_fault(tmp_path / "fashion_mnist.pt", content=FASHION_MNIST_CONTENT_SHA256)
    assert "not the real Fashion-MNIST's" in problem


# --- locks --------------------------------------------------------------------------------------------------------
def test_locks_fall_back_to_lock_files_where_flock_is_missing(tmp_path, monkeypatch):
    def no_flock(handle, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    first = ProcessLock(tmp_path / "study.lock").acquire()
    held = tmp_path / "study.lock.held"
    assert locks.read_holder(held)["pid"] == os.getpid()
    with pytest.raises(Locked, match=f"pid {os.getpid()}"):
        ProcessLock(tmp_path / "study.lock").acquire()
    first.release()
    assert not held.exists()
    # a lock file whose holder is gone (this host, a pid that is no longer that process) is taken over
    held.write_text(f'{{"host": "{os.uname().nodename}", "pid": {2**22 + 1}, "start": "1"}}')
    ProcessLock(tmp_path / "study.lock").acquire().release()


def test_a_process_that_exited_holds_nothing_even_before_its_parent_reaps_it():
    """A zombie is gone: `adabench stop --wait` returns once the study's processes exit, whoever reaps them."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 300
    while os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:  # exited, not reaped
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert locks.process_start(child.pid) is None and locks.process_start(os.getpid()) is not None
    child.wait()


def test_a_second_snakemake_of_a_study_is_refused_while_another_study_runs_beside_it(tmp_path):
    copy_workflow(tmp_path)
    problems = {name: {"optimizers": []} for name in quick_config()["problems"]}
    base = {"device": "cpu", "threads": 1, "seeds": [0], "tuning": None, "reference": {"problems": []}}
    slow = write_config(tmp_path, {**base, "study": "slow", "problems": {
        **problems, "linreg": {"options": {"epochs": 100_000}, "optimizers": ["adagrad"]}}}, "slow.yaml")
    other = write_config(tmp_path, {**base, "study": "other", "problems": {
        **problems, "quadratic": {"optimizers": ["adagrad"]}}}, "other.yaml")
    first = subprocess.Popen(snakemake_command(tmp_path, "--cores", "1", "--configfile", str(slow)), cwd=tmp_path,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        progress = tmp_path / "results/slow/progress/linreg-0.json"
        deadline = time.monotonic() + 300
        while not progress.exists():
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        # paused, not killed: it still holds the study's lock, and its training burns no core the tests share
        os.killpg(first.pid, signal.SIGSTOP)
        second = snakemake(tmp_path, "--cores", "1", "--configfile", str(slow), check=False)
        assert second.returncode != 0 and "study 'slow' is being run by another Snakemake: pid" in second.stderr
        # another study of the same checkout runs (to its tables) beside it; its end leaves the first study's lock held
        snakemake(tmp_path, "results/other/tables/comparison.csv", "--cores", "1", "--configfile", str(other))
        third = snakemake(tmp_path, "--cores", "1", "--configfile", str(slow), check=False)
        assert third.returncode != 0 and "is being run by another Snakemake" in third.stderr
        assert first.poll() is None
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
        first.wait()


# --- no links inside a study --------------------------------------------------------------------------------------
def test_a_link_inside_a_study_is_refused_but_a_linked_study_folder_is_fine(tmp_path):
    copy_workflow(tmp_path)
    problems = {name: {"optimizers": []} for name in quick_config()["problems"]}
    config = write_config(tmp_path, {"study": "linked", "device": "cpu", "threads": 1, "seeds": [0], "tuning": None,
                                     "reference": {"problems": []},
                                     "problems": {**problems, "quadratic": {"optimizers": ["adagrad"]}}})
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (tmp_path / "results/linked").mkdir(parents=True)
    (tmp_path / "results/linked/runs").symlink_to(outside)
    refused = snakemake(tmp_path, "--cores", "1", "--configfile", str(config), check=False)
    assert refused.returncode != 0 and "results/linked/runs is a symbolic link" in refused.stderr
    assert not any(outside.iterdir())

    (tmp_path / "results/linked/runs").unlink()
    (tmp_path / "results/linked").rmdir()
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    (tmp_path / "results/linked").symlink_to(scratch)  # the study's folder itself on a scratch disk
    snakemake(tmp_path, "results/linked/tables/comparison.csv", "--cores", "2", "--configfile", str(config))
    assert (scratch / "tables/comparison.csv").exists()


# --- smaller ------------------------------------------------------------------------------------------------------
def test_no_optimizers_and_unreadable_or_empty_config_files_are_refused_naming_them(tmp_path):
    empty, garbage, listed = tmp_path / "empty.yaml", tmp_path / "garbage.yaml", tmp_path / "none.yaml"
    empty.write_text("")
    garbage.write_bytes(bytes(range(128, 256)) * 3)
    listed.write_text("optimizers: []\n")
    defaults = REPO_ROOT / "config.yaml"
    with pytest.raises(ConfigError, match=f"{empty}: is empty"):
        load_study_config(empty, defaults=defaults)
    with pytest.raises(ConfigError, match=f"{garbage}: is not a text file"):
        load_study_config(garbage, defaults=defaults)
    with pytest.raises(ConfigError, match=f"{tmp_path / 'missing.yaml'}: cannot be read"):
        load_study_config(tmp_path / "missing.yaml", defaults=defaults)
    with pytest.raises(ConfigError, match=r"config error at optimizers: \[\] should be non-empty"):
        load_study_config(listed, defaults=defaults)


# --- CUDA paths, checked on the CPU -------------------------------------------------------------------------------
def test_fp32_means_ieee_fp32_in_matmuls_and_convolutions_and_tf32_only_when_asked():
    configure_precision("fp32")
    assert torch.backends.cuda.matmul.fp32_precision == "ieee" == torch.backends.cudnn.conv.fp32_precision
    configure_precision("tf32")
    assert torch.backends.cuda.matmul.fp32_precision == "tf32" == torch.backends.cudnn.conv.fp32_precision
    configure_precision("fp32")


def test_the_driver_version_is_unknown_when_its_call_fails(monkeypatch):
    class Driver:
        @staticmethod
        def cuDriverGetVersion(pointer):
            return 100  # CUDA_ERROR_NO_DEVICE

    monkeypatch.setattr(ctypes, "CDLL", lambda name: Driver())
    assert cuda_driver_version() == "unknown"


def test_optimizer_step_counts_stay_on_the_cpu_when_a_group_state_is_loaded():
    params = [torch.zeros(2, 3, requires_grad=True)]
    optimizer = torch.optim.Adam(params)
    state = {0: {"per_member": {"exp_avg": torch.ones(3), "exp_avg_sq": torch.ones(3)},
                 "shared": {"step": torch.tensor(4.0, dtype=torch.float64)}}}
    load_group_state(optimizer, [state, state])
    assert optimizer.state[params[0]]["step"].device.type == "cpu"


def test_sparse_logreg_keeps_its_evaluation_indices_on_the_training_device():
    problem = PROBLEMS.get("sparse_logreg")(torch.device("cpu"), n_features=200, n_train=500, n_validation=50,
                                            n_test=50)
    assert problem.rare.device == problem.frequent.device == problem.true_weight_on_device.device


class WarnsNondeterministic(Problem):
    """linreg's data, with a loss that warns as torch does for an op without a deterministic kernel."""

    def __init__(self, device, epochs: int = 2):
        super().__init__(device, epochs)
        self.x = torch.linspace(-1, 1, 16, device=device)
        self.train_size, self.batch_size = 16, 8

    def build_model(self):
        return torch.nn.Linear(1, 1)

    def loss(self, model, indices):
        warnings.warn("scatter_add_cuda_kernel does not have a deterministic implementation, but you set "
                      "'torch.use_deterministic_algorithms(True, warn_only=True)'", UserWarning)
        return (model(self.x[indices].unsqueeze(1)).squeeze(1) - self.x[indices]).pow(2).mean()


def test_a_run_asked_to_be_deterministic_records_the_operations_that_were_not(tmp_path):
    PROBLEMS.register("warns_nondeterministic")(WarnsNondeterministic)
    spec = RunSpec("warns_nondeterministic", "sgd", {"lr": 0.1}, 0, {})
    summary = train_run(spec, tmp_path / "run", device="cpu", deterministic=True, log=QUIET)
    assert summary["environment"]["deterministic"] is False
    assert summary["environment"]["nondeterministic_ops"] == ["scatter_add_cuda_kernel"]
    plain = train_run(linreg(), tmp_path / "plain", device="cpu", deterministic=True, log=QUIET)
    assert plain["environment"]["deterministic"] is True and "nondeterministic_ops" not in plain["environment"]


@pytest.mark.parametrize("optimizer, name, value", [("adagrad", "lr_decay", -1.0), ("adagrad", "lr", 0.0),
                                                     ("adagrad", "eps", -1e-8), ("adagrad_avg", "weight_decay", -0.5),
                                                     ("sgd_sqrt_decay", "c", 0.0), ("sgd_sqrt_decay", "momentum", 1.0)])
def test_optimizers_refuse_in_their_constructor_what_the_config_refuses(optimizer, name, value):
    """Like torch.optim, every constructor of the registry checks its hyperparameters, against the very ranges the
    config's schema is built from: the two can never disagree."""
    from adabench.study.config import check_run_arguments
    from adabench.core.optim import make_optimizer

    with pytest.raises(ValueError, match=f"Invalid {name} value"):
        make_optimizer(optimizer, [torch.zeros(3, requires_grad=True)], {name: value})
    with pytest.raises(ConfigError, match=f"--set {name}"):
        check_run_arguments("linreg", optimizer, {name: value}, {}, 0)
