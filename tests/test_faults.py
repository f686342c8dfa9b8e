"""Fault injection: each fault found when the study was deliberately broken, injected again, then one plain rerun
of the same command. After it the tables equal those of an uninterrupted run, with no manual step, and MLflow
holds exactly one run per run key with every step once.

Each probe works on a copy of the finished fault study (tests/fault_study.py), injects its fault and reruns.
Killed processes are in test_kills.py.
"""
from __future__ import annotations

import gzip
import json
import os
import shutil
import sqlite3
from pathlib import Path

import pandas as pd
import pytest
import torch
from fault_study import COMMAND, CONFIG, ROOT, assert_recovered, known_runs, lenet_run, run_study
from workflow_helpers import snakemake, write_config

from adabench.records import TIME_COLUMNS, read_summary


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
