"""train_run: resume bit for bit (in process and through SIGTERM), divergence as a result, determinism."""
from __future__ import annotations

import math
import signal
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from training_helpers import StopAfter

from adabench.core.records import read_summary
from adabench.core.runtime import STOP_REQUESTED, Preempted
from adabench.core.spec import RunSpec
from adabench.core.trainer import train_run

LINREG = RunSpec("linreg", "adagrad", {"lr": 0.1, "eps": 1e-8}, seed=3, problem_options={"epochs": 12})
STOP_AFTER = 5


def interrupt(spec: RunSpec, out_dir: Path, after: int) -> Path:
    """Run ``spec`` until it is preempted after epoch ``after``; returns its checkpoint."""
    with pytest.raises(Preempted):
        train_run(spec, out_dir, device="cpu", tracker=StopAfter(after))
    STOP_REQUESTED.clear()
    checkpoint = out_dir / "checkpoint.pt"
    assert torch.load(checkpoint, weights_only=True)["epoch"] == after
    assert not (out_dir / "summary.json").exists()
    return checkpoint


@pytest.fixture(scope="module")
def uninterrupted_linreg(tmp_path_factory) -> Path:
    out_dir = tmp_path_factory.mktemp("uninterrupted")
    train_run(LINREG, out_dir, device="cpu")
    return out_dir


def test_resumed_run_equals_uninterrupted(tmp_path, stop_flag, uninterrupted_linreg, read_metrics):
    interrupt(LINREG, tmp_path, STOP_AFTER)
    summary = train_run(LINREG, tmp_path, device="cpu")
    assert summary["resumed_from"] == STOP_AFTER
    assert summary["epochs_completed"] == LINREG.problem_options["epochs"]
    # bit for bit, final parameters included: w1, w2 and b are the model's float32 values, written exactly
    pd.testing.assert_frame_equal(read_metrics(tmp_path), read_metrics(uninterrupted_linreg), check_exact=True)
    assert not (tmp_path / "checkpoint.pt").exists()


def test_resume_depends_on_the_saved_optimizer_state(tmp_path, stop_flag, uninterrupted_linreg, read_metrics):
    # The test above has teeth only if the accumulators matter: restart them from zero in the checkpoint.
    checkpoint_path = interrupt(LINREG, tmp_path, STOP_AFTER)
    checkpoint = torch.load(checkpoint_path, weights_only=True)
    for entries in checkpoint["optimizer"].values():
        for name, value in entries["per_member"].items():
            entries["per_member"][name] = torch.zeros_like(value)
    torch.save(checkpoint, checkpoint_path)

    train_run(LINREG, tmp_path, device="cpu")
    tampered, expected = read_metrics(tmp_path), read_metrics(uninterrupted_linreg)
    before = tampered["epoch"] <= STOP_AFTER
    pd.testing.assert_frame_equal(tampered[before], expected[before], check_exact=True)
    params = ["w1", "w2", "b"]
    assert (tampered.loc[~before, params] != expected.loc[~before, params]).any(axis=1).all()


def test_a_resumed_runs_wall_time_counts_the_jobs_before_the_resume(tmp_path, stop_flag):
    # the cost of a study counts every process that trained a run, not only the one that finished it
    checkpoint_path = interrupt(LINREG, tmp_path, STOP_AFTER)
    checkpoint = torch.load(checkpoint_path, weights_only=True)
    assert checkpoint["wall_time"] > 0
    earlier = 1e6  # stands for a long first job: far more than this test's own seconds
    checkpoint["wall_time"] = earlier
    torch.save(checkpoint, checkpoint_path)
    started = time.perf_counter()
    summary = train_run(LINREG, tmp_path, device="cpu")
    assert earlier < summary["wall_time_s"] <= earlier + time.perf_counter() - started


CLI_LINREG = ["--problem", "linreg", "--optimizer", "adagrad", "--lr", "0.1", "--seed", "0",
              "--option", "epochs=200", "--option", "n_samples=64"]


def wait_for(path: Path, process, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, f"the run ended before writing {path.name}: {process.stderr.read()}"
        assert time.monotonic() < deadline, f"no {path.name} after {timeout} s"
        time.sleep(0.005)


def test_sigterm_checkpoints_then_resumes_to_the_same_records(tmp_path, start_train, read_metrics):
    # 200 cheap epochs (2 batches each; the time goes into per-epoch checkpoints) leave room to interrupt
    whole = start_train(*CLI_LINREG, "--out", str(tmp_path / "whole"))
    interrupted_dir = tmp_path / "interrupted"
    interrupted = start_train(*CLI_LINREG, "--out", str(interrupted_dir))
    wait_for(interrupted_dir / "metrics.csv", interrupted)
    interrupted.send_signal(signal.SIGTERM)
    _, stderr = interrupted.communicate(timeout=60)
    assert interrupted.returncode == 143, stderr
    assert (interrupted_dir / "checkpoint.pt").exists()
    assert not (interrupted_dir / "summary.json").exists()

    resumed = start_train(*CLI_LINREG, "--out", str(interrupted_dir))
    for process in (resumed, whole):
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr
    resumed_from = read_summary(interrupted_dir)["resumed_from"]
    assert 1 <= resumed_from < 200, "the SIGTERM should have stopped the run part way"
    pd.testing.assert_frame_equal(read_metrics(interrupted_dir), read_metrics(tmp_path / "whole"), check_exact=True)


def test_huge_learning_rate_is_a_diverged_result_not_a_crash(tmp_path):
    summary = train_run(RunSpec("linreg", "sgd", {"lr": 1e6}, 0, {"epochs": 5}), tmp_path, device="cpu")
    assert summary["status"] == "diverged"
    metrics = pd.read_csv(tmp_path / "metrics.csv")
    # every epoch run is on record, the last one with its non-finite loss
    assert list(metrics["epoch"]) == list(range(1, summary["epochs_completed"] + 1))
    assert summary["epochs_completed"] < 5
    assert not math.isfinite(metrics["train_loss"].iloc[-1])
    assert read_summary(tmp_path)["status"] == "diverged"


@pytest.mark.parametrize("spec", [
    LINREG,
    RunSpec("sparse_logreg", "adagrad_avg", {"lr": 0.1}, 1,
            {"n_features": 300, "n_train": 2000, "n_validation": 200, "n_test": 200, "epochs": 2}),
], ids=lambda spec: spec.problem)
def test_same_run_twice_gives_identical_records(tmp_path, read_metrics, spec):
    for name in ("first", "second"):
        train_run(spec, tmp_path / name, device="cpu")
    pd.testing.assert_frame_equal(read_metrics(tmp_path / "first"), read_metrics(tmp_path / "second"), check_exact=True)
