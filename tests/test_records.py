"""A run's files: verified before they are trusted, written so that nothing partial is ever trusted (a full disk
included), and locked against two trainers at once."""
from __future__ import annotations

import json
import math
import shutil
import subprocess
import threading
import time

import pandas as pd
import pytest
import torch

from adabench.analysis.protocols import protocol_table
from adabench.records import RecordError, RunLock, complete_summary, read_summary
from adabench.spec import RunSpec
from adabench.trainer import train_run

SPEC = RunSpec("linreg", "adam", {"lr": 0.05}, 0, {"epochs": 6, "n_samples": 256})
QUIET = lambda line: None  # noqa: E731


@pytest.fixture(scope="module")
def complete(tmp_path_factory):
    out = tmp_path_factory.mktemp("complete") / "run"
    train_run(SPEC, out, device="cpu", log=QUIET)
    return out


def copy_of(run, tmp_path):
    return shutil.copytree(run, tmp_path / "run")


def test_a_complete_run_verifies(complete):
    summary, why_not = complete_summary(complete, SPEC.identity())
    assert summary is not None and why_not == ""
    assert complete_summary(complete, {**SPEC.identity(), "seed": 1}) == (None, f"{complete}/summary.json: a run of "
                                                                                 "another configuration")


@pytest.mark.parametrize("damage, words", [
    (lambda run: (run / "summary.json").write_text((run / "summary.json").read_text()[:100]), "not valid JSON"),
    (lambda run: (run / "summary.json").write_bytes(b"\xff\xfe{}"), "not valid JSON"),
    (lambda run: (run / "summary.json").write_text(json.dumps({"status": "finished"})), "lacks"),
    (lambda run: (run / "summary.json").write_text((run / "summary.json").read_text().replace('"finished"', '"diverged"')),
     "does not match its own sha256"),
    (lambda run: (run / "metrics.csv").write_text((run / "metrics.csv").read_text()[:-7]), "metrics.csv: does not match"),
    (lambda run: (run / "metrics.csv").unlink(), "metrics.csv: missing"),
    (lambda run: (run / "summary.json").unlink(), "summary.json: missing"),
], ids=["truncated", "not utf-8", "fields missing", "edited", "curve cut short", "curve deleted", "summary deleted"])
def test_damaged_records_are_never_trusted_and_the_run_is_trained_again(complete, tmp_path, damage, words, read_metrics):
    run = copy_of(complete, tmp_path)
    damage(run)
    with pytest.raises(RecordError, match=words):
        read_summary(run)
    lines = []
    summary = train_run(SPEC, run, device="cpu", log=lines.append)
    assert summary["status"] == "finished" and read_summary(run) == summary
    pd.testing.assert_frame_equal(read_metrics(run), read_metrics(complete))
    if words != "summary.json: missing":
        assert list(run.glob("summary.json.bad-*")), lines  # the damaged summary is kept aside for a look


def test_a_checkpoint_that_is_code_or_garbage_is_set_aside_and_never_run(tmp_path, read_metrics, complete):
    class Exploit:
        def __reduce__(self):
            return shutil.rmtree, (str(tmp_path / "precious"),)

    (tmp_path / "precious").mkdir()
    run = tmp_path / "run"
    run.mkdir()
    torch.save({"identity": SPEC.identity(), "params": Exploit()}, run / "checkpoint.pt")
    lines = []
    train_run(SPEC, run, device="cpu", log=lines.append)
    assert (tmp_path / "precious").exists()
    assert any("is unusable" in line for line in lines) and list(run.glob("checkpoint.pt.bad-*"))
    pd.testing.assert_frame_equal(read_metrics(run), read_metrics(complete))


def test_a_second_trainer_waits_for_the_first(tmp_path):
    run = tmp_path / "run"
    lines = []
    with RunLock(run, QUIET):
        waiting = threading.Thread(target=lambda: train_run(SPEC, run, device="cpu", log=lines.append))
        waiting.start()
        time.sleep(1.0)
        assert waiting.is_alive() and not (run / "metrics.csv").exists()
    waiting.join(timeout=60)
    assert any("another process is training this run; waiting" in line for line in lines)
    assert read_summary(run)["status"] == "finished"


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({done.stderr.strip() or done.returncode}): needs root")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_a_full_disk_leaves_nothing_partial_that_is_trusted(small_disk, complete, read_metrics):
    spec = RunSpec("linreg", "adam", {"lr": 0.05}, 0, {"epochs": 6, "n_samples": 256})
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * (256 * 1024 - 12 * 1024))  # about 12 KiB left: a few checkpoints' worth
    run = small_disk / "run"
    with pytest.raises(OSError):
        train_run(spec, run, device="cpu", log=QUIET)
    assert not (run / "summary.json").exists()
    assert not [path.name for path in run.iterdir() if path.name.endswith(".tmp")]  # no temporary file left
    if (run / "checkpoint.pt").exists():  # what a crash leaves is a whole checkpoint of an earlier epoch
        assert torch.load(run / "checkpoint.pt", weights_only=True)["epoch"] >= 1
    filler.unlink()
    train_run(spec, run, device="cpu", log=QUIET)
    assert read_summary(run)["status"] == "finished"
    pd.testing.assert_frame_equal(read_metrics(run), read_metrics(complete))


def test_a_tuned_setting_whose_every_seed_diverged_ranks_last():
    rows = [{"problem": "p", "optimizer": optimizer, "setting": "lr=1", "seed": seed, "in_study": False,
             "in_tuned": True, "final_headline": value, "headline_metric": "test_acc", "headline_mode": "max",
             "status": "diverged" if math.isnan(value) else "finished"}
            for optimizer, values in {"adam": [0.8, 0.82], "sgd": [math.nan, math.nan]}.items()
            for seed, value in enumerate(values)]
    table = protocol_table(pd.DataFrame(rows), ["p"]).set_index("optimizer")
    assert table.loc["sgd", "rank"] == 2 and table.loc["sgd", "diverged"] == 2 and math.isnan(table.loc["sgd", "mean"])
    assert table.loc["adam", "rank"] == 1
