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
from mlflow.tracking import MlflowClient
from fault_study import COMMAND, CONFIG, ROOT, STUDY, assert_recovered, known_runs, lenet_run, run_study
from workflow_helpers import comparable, snakemake, write_config

from adabench.analysis.export import DamagedTable, load_study
from adabench.core.records import TIME_COLUMNS, read_summary, seal
from adabench.workflow.tracking import RUN_KEY_TAG
from adabench.study.layout import sqlite_uri


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


def deeply_nested_summary(run: Path, workdir: Path) -> None:
    # valid JSON nested past any parser's recursion: planning once failed on it with a RecursionError
    (run / "summary.json").write_text("[" * 100_000 + "]" * 100_000)


RECORD_FAULTS = [garbage_checkpoint, pickled_checkpoint, truncated_summary, summary_missing_fields, non_utf8_summary,
                 edited_summary, deleted_summary, truncated_metrics, deleted_run_directory, deeply_nested_summary]


def summary_of_a_sibling(run: Path, workdir: Path) -> None:
    """A valid record (digests recomputed) of this run's identity that names another run's key: counted under that
    key, two runs would collapse into one (the tables, the sources, MLflow). It is the sibling's of none: trained
    again."""
    sibling = next(other for other in known_runs(workdir)[1::2] if other not in (run, lenet_run(workdir)))
    summary = json.loads((run / "summary.json").read_text())
    sibling_key = sibling.relative_to(workdir / ROOT / "runs").as_posix()
    (run / "summary.json").write_text(json.dumps(seal({**summary, "run_key": sibling_key}), indent=2))


RECORD_FAULTS += [summary_of_a_sibling]


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
    assert read_summary(run)["run_key"] == read_summary(original)["run_key"]  # its own key (summary_of_a_sibling)
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


def truncated_parquet(workdir: Path) -> None:
    """The typed runs table cut short (what `adabench export`, load_study and the results page read)."""
    parquet = workdir / ROOT / "tables/runs.parquet"
    parquet.write_bytes(parquet.read_bytes()[:len(parquet.read_bytes()) // 2])


STALE = "no longer holds"  # what the workflow says of an output it rebuilds because what it claims is gone
# each fault, and what the rerun says of it (None: the missing outputs are simply built again)
FAULTS = {fault.__name__: (fault, said) for fault, said in (
    (garbage_in_the_prepared_data, STALE), (damaged_raw_file_and_prepared_data, "not a valid gzip file"),
    (half_created_store, "is unusable"), (deleted_store, None), (random_bytes_store, "set aside and rebuilt"),
    (truncated_parquet, STALE))}


def assert_same_typed_tables(workdir: Path, uninterrupted: Path) -> None:
    """load_study (the Parquet tables) gives what it gives for the uninterrupted run (how runs were trained aside)."""
    for mine, reference in zip(load_study(workdir / ROOT), load_study(uninterrupted / ROOT)):
        pd.testing.assert_frame_equal(comparable(mine), comparable(reference), check_exact=False, rtol=1e-6,
                                      atol=1e-12)


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_one_plain_rerun_after_the_fault_gives_the_uninterrupted_tables(fault, study, uninterrupted):
    inject, expected = FAULTS[fault]
    inject(study)
    rerun = run_study(study)
    assert_recovered(study, uninterrupted)
    assert_same_typed_tables(study, uninterrupted)
    if expected:  # what was wrong is said, not passed over in silence
        said = rerun.stdout + rerun.stderr + "".join(path.read_text(errors="replace")
                                                     for path in (study / ROOT / "logs").rglob("*.log"))
        assert expected in said, said[-3000:]


def test_a_changed_valid_record_rebuilds_everything_made_from_it(study, uninterrupted):
    """A finished run's record replaced by another valid record of the same run (what a retrain elsewhere or a git
    pull brings; here its summary resealed with another train_time_s): nothing trains, and everything made from
    the records follows the new record. Snakemake sees it in the params of the rules that read records (the dry
    run); without its metadata (a fresh clone) the sidecars say it, and one plain rerun rebuilds all the same."""
    run = known_runs(study)[1]
    summary = read_summary(run)
    train_time_s = summary["train_time_s"] + 1000.0
    (run / "summary.json").write_text(json.dumps(seal({**summary, "train_time_s": train_time_s}), indent=2))
    planned = snakemake(study, "-n", *COMMAND).stdout
    assert "Params have changed" in planned and "aggregate" in planned and "mlflow_sync" in planned, planned[-3000:]
    shutil.rmtree(study / ".snakemake" / "metadata")  # a fresh clone's: only the sidecars can tell
    rerun = run_study(study)
    assert STALE in rerun.stdout + rerun.stderr
    assert_recovered(study, uninterrupted)  # the measured seconds aside
    assert_same_typed_tables(study, uninterrupted)
    for runs in (pd.read_csv(study / ROOT / "tables/runs.csv"), load_study(study / ROOT).runs):
        assert runs.set_index("run_key").train_time_s[summary["run_key"]] == pytest.approx(train_time_s)
    resealed = read_summary(run)
    assert resealed["train_time_s"] == train_time_s and resealed["records_sha256"] == summary["records_sha256"]
    client = MlflowClient(sqlite_uri(study / ROOT / "mlflow/mlflow.db"))
    (logged,) = client.search_runs([client.get_experiment_by_name(f"adabench-{STUDY}").experiment_id],
                                   filter_string=f"tags.`{RUN_KEY_TAG}` = '{summary['run_key']}'")
    assert float(logged.data.tags["train_time_s"]) == pytest.approx(train_time_s, abs=1e-3)  # MLflow follows too
    assert "Nothing to be done" in snakemake(study, "-n", *COMMAND).stdout


def test_a_damaged_table_is_named_with_its_fix(tmp_path):
    """load_study (and `adabench export`) on a Parquet table that does not parse: one line naming the file and
    the fix, no traceback."""
    import subprocess
    import sys

    tables = tmp_path / "study/tables"
    tables.mkdir(parents=True)
    (tables / "runs.parquet").write_text("run_key,seed\na,0\n")  # a CSV under the Parquet name
    with pytest.raises(DamagedTable) as raised:
        load_study(tmp_path / "study")
    assert str(raised.value).startswith(f"{tables / 'runs.parquet'} is damaged (")
    assert str(raised.value).endswith("run snakemake for this study again: it sees the damage and writes the "
                                      "study's tables again from the run records")
    done = subprocess.run([sys.executable, "-m", "adabench", "export", str(tmp_path / "study"), "--out",
                           str(tmp_path / "out")], capture_output=True, text=True)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [f"adabench export: {raised.value}"]


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
    from adabench.core.data import DataError, prepare_fashion_mnist

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
