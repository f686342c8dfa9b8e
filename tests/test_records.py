"""A run's files: verified before they are trusted, written so that nothing partial is ever trusted (a full disk
included), and locked against two trainers at once."""
from __future__ import annotations

import dataclasses
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
from adabench.core.records import RecordError, RunLock, complete_summary, read_summary
from adabench.core.spec import RunSpec
from adabench.core.trainer import train_run

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
    summary, why_not = complete_summary(complete, SPEC)
    assert summary is not None and why_not == ""
    assert complete_summary(complete, dataclasses.replace(SPEC, seed=1)) == (None, f"{complete}/summary.json: a run of "
                                                                                 "another configuration")


def test_a_record_naming_another_runs_key_is_not_this_runs_and_is_trained_again(complete, tmp_path):
    """A summary of this run's identity filed under a sibling's key (digests recomputed, so it verifies) would be
    counted as the sibling's by every table, sidecar and MLflow: the trainer takes it for damaged and trains the
    run again, as the study's state does."""
    from adabench.core.records import seal

    run = copy_of(complete, tmp_path)
    sibling = RunSpec("linreg", "adam", {"lr": 0.05}, 1, {"epochs": 6, "n_samples": 256}).key
    summary = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(json.dumps(seal({**summary, "run_key": sibling}), indent=2))
    assert read_summary(run)["run_key"] == sibling  # a valid record: only its key is wrong
    assert complete_summary(run, SPEC) == (
        None, f"{run}/summary.json: names run {sibling!r}, not its own {SPEC.key!r}")
    logged = []
    train_run(SPEC, run, device="cpu", log=logged.append)
    assert read_summary(run)["run_key"] == SPEC.key
    assert any("trained again" in line for line in logged) and list(run.glob("summary.json.bad-*"))


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


# --- metrics.csv hashed while it is parsed, never held whole -------------------------------------------------------

def resealed_with_metrics(complete, tmp_path, data: bytes, digest_of: bytes | None = None):
    """A copy of the complete run whose metrics.csv is ``data`` and whose summary records the whole-file sha256 of
    ``digest_of`` (default: ``data``), computed as ``write_run`` computes it."""
    from adabench.core.atomic import sha256_bytes
    from adabench.core.records import seal

    run = copy_of(complete, tmp_path)
    (run / "metrics.csv").write_bytes(data)
    summary = json.loads((run / "summary.json").read_text())
    summary["records_sha256"] = sha256_bytes(data if digest_of is None else digest_of)
    (run / "summary.json").write_text(json.dumps(seal(summary), indent=2))
    return run


def test_streamed_metrics_match_the_whole_file_digest_and_damage_is_still_caught(complete, tmp_path):
    from adabench.core.records import read_run

    original = (complete / "metrics.csv").read_bytes()
    summary, metrics = read_run(complete)  # its digest was written by write_run over the whole bytes
    pd.testing.assert_frame_equal(metrics, pd.read_csv(complete / "metrics.csv"))
    # one byte changed in the middle, still a valid CSV; garbage that no CSV parser takes; a file cut short
    middle = len(original) // 2
    digit = next(index for index in range(middle, len(original)) if chr(original[index]).isdigit())
    flipped = original[:digit] + (b"1" if original[digit:digit + 1] != b"1" else b"2") + original[digit + 1:]
    for name, damaged in {"flipped": flipped, "garbage": original[:middle] + b'"\xff\x00' * 1000,
                          "cut": original[:middle], "empty": b""}.items():
        run = resealed_with_metrics(complete, tmp_path / name, damaged, digest_of=original)
        with pytest.raises(RecordError, match="metrics.csv: does not match the sha256"):
            read_run(run)


def test_a_large_metrics_file_is_never_held_whole(complete, tmp_path):
    """A long run's metrics.csv (gigabytes): reading it must cost about the table it parses to, not the file's
    bytes as well (traced allocations; the parsed floats take under half of their text here)."""
    import tracemalloc

    import numpy as np

    from adabench.core.records import read_run

    columns = pd.read_csv(complete / "metrics.csv").columns
    rows = 160_000
    table = pd.DataFrame(np.random.default_rng(0).random((rows, len(columns))), columns=columns)
    table[columns[0]] = np.arange(1, rows + 1)
    data = table.to_csv(index=False, float_format="%.17g").encode()
    run = resealed_with_metrics(complete, tmp_path, data)
    size = len(data)
    del data
    assert size > 30_000_000
    tracemalloc.start()
    try:
        _, metrics = read_run(run)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(metrics) == rows
    parsed = metrics.memory_usage(deep=True).sum()
    assert peak < parsed + size // 4, (peak, parsed, size)


# --- the study's view of one run's records: damaged, or another valid record ---------------------------------------

@pytest.fixture
def study_with_the_run(complete, tmp_path, monkeypatch):
    """A study (its working directory ``tmp_path``) that plans SPEC, whose records are a copy of the complete run's;
    the other runs it plans have none."""
    from workflow_helpers import REPO_ROOT, write_config

    from adabench.study.config import load_study_config
    from adabench.study.design import Study

    monkeypatch.chdir(tmp_path)
    config = write_config(tmp_path, {
        "study": "records", "device": "cpu", "seeds": [0], "optimizers": ["adam"], "tuning": None,
        "defaults_protocol": None,
        "reference": {"problems": [], "results": str(REPO_ROOT / "config/reference_results.yaml")},
        "problems": {"linreg": {"options": SPEC.problem_options, "settings": {"adam": SPEC.hyperparameters}}}})
    study = Study(load_study_config(config, defaults=REPO_ROOT / "config.yaml"))
    (spec,) = [spec for spec in study.runs() if spec.key == SPEC.key]
    shutil.copytree(complete, study.run_dir(spec))
    return study, spec


def test_a_metrics_file_that_is_a_folder_is_a_damaged_record_not_a_crash(study_with_the_run):
    """An OSError from metrics.csv (a folder in its place, no permission) is a RecordError naming the file: the
    study's state takes the run for damaged (to train again) instead of stopping Snakemake's planning."""
    from adabench.study.state import read_state

    study, spec = study_with_the_run
    run = study.run_dir(spec)
    assert read_state(study).complete[spec.key]["run_key"] == spec.key
    (run / "metrics.csv").unlink()
    (run / "metrics.csv").mkdir()
    said = f"{run / 'metrics.csv'}: damaged, a folder, not a file"
    with pytest.raises(RecordError, match="damaged, a folder, not a file"):
        read_summary(run)
    assert complete_summary(run, spec) == (None, said)
    state = read_state(study)
    assert spec.key not in state.complete and state.damaged[spec.key] == said
    # its job trains it again: the folder is set aside, the new curve takes its place
    logged = []
    assert train_run(spec, run, device="cpu", log=logged.append)["status"] == "finished"
    assert (run / "metrics.csv").is_file() and any("metrics.csv moved aside" in line for line in logged)
    assert read_state(study).complete[spec.key]["run_key"] == spec.key


def test_an_output_made_from_a_changed_record_says_whether_it_was_resealed_or_damaged(study_with_the_run):
    """What an output's sidecar recorded against the records now (study.staleness.changed_records, the one
    check of the tables, the MLflow sync and the search's rounds): a valid record resealed since is told apart
    from a damaged one, which its job trains again; and the records' digest in the rules' params follows both."""
    from adabench.study.staleness import changed_records
    from adabench.core.records import seal
    from adabench.study.made_from import records_digest
    from adabench.study.state import read_state, records_param

    study, spec = study_with_the_run
    run = study.run_dir(spec)
    state = read_state(study)
    recorded = {spec.key: state.complete[spec.key]["summary_sha256"]}
    assert changed_records(state, recorded) == ({}, "")
    param = records_param(state, [run, run])
    assert param == records_digest({str(run): state.complete[spec.key]})

    summary = read_summary(run)
    (run / "summary.json").write_text(json.dumps(seal({**summary, "train_time_s": summary["train_time_s"] + 1})))
    state = read_state(study)
    resealed = state.complete[spec.key]["summary_sha256"]
    assert changed_records(state, recorded) == ({spec.key: resealed}, f"made from records that changed since (1 runs, "
                                                f"e.g. {spec.key}: another valid record now)")
    assert records_param(state, [run]) not in ("", param)

    (run / "summary.json").write_text("{")
    state = read_state(study)
    assert changed_records(state, recorded) == ({spec.key: None}, f"made from records that changed since (1 runs, "
                                                f"e.g. {spec.key}: damaged or gone; its job trains it again)")
    assert records_param(state, [run]) == records_digest({})


def test_a_runs_identity_gives_the_same_rows_and_params_from_its_spec_and_from_its_record(complete):
    """One conversion (adabench.core.identity): the plan's row of a run and its row in the runs table, its MLflow
    params at training and at a sync from its record, are the same whether made from the spec or the record."""
    from adabench.analysis.aggregate import run_row
    from adabench.core.identity import identity_columns
    from adabench.workflow.tracking import run_params

    summary = read_summary(complete)
    planned = identity_columns(SPEC.identity(), SPEC.key)
    assert planned == identity_columns(summary["identity"], summary["run_key"]) == {
        "problem": "linreg", "options_id": SPEC.options_id, "precision": "fp32", "optimizer": "adam",
        "setting": "lr=0.05", "hyperparameters": '{"lr": 0.05}', "lr": 0.05, "seed": 0}
    row = run_row(summary, {"study"})
    assert {name: row[name] for name in planned} == planned and row["run_key"] == SPEC.key
    environment = summary["environment"]
    # the CPU's vector instructions are recorded: they change a compiled pass's last bits (docs/results.md)
    assert environment["cpu_capability"] == torch.backends.cpu.get_cpu_capability() == row["cpu_capability"]
    # a record written before it was recorded has an empty cell
    old = {**summary, "environment": {name: value for name, value in environment.items() if name != "cpu_capability"}}
    assert run_row(old, {"study"})["cpu_capability"] is None
    assert run_params(SPEC.key, SPEC.identity(), environment) == run_params(summary["run_key"], summary["identity"],
                                                                         environment)
    assert run_params(SPEC.key, SPEC.identity(), environment)["problem.n_samples"] == 256


def test_a_spec_read_back_is_taken_as_written_and_a_foreign_one_is_refused():
    """A spec is made canonical once, where it enters (the config, the CLI): read back from a job's params or a
    record it is not checked again, and equals the spec that wrote it."""
    assert RunSpec.from_dict(SPEC.to_dict()) == SPEC
    assert RunSpec("linreg", "adam", {"lr": 1}, 0).hyperparameters == {"lr": 1.0}  # where it enters: canonical
    assert RunSpec.from_dict({**SPEC.to_dict(), "hyperparameters": {"lr": 1}}).hyperparameters == {"lr": 1}
    with pytest.raises(ValueError, match="not a run's spec"):
        RunSpec.from_dict({**SPEC.to_dict(), "learning_rate": 0.1})
    with pytest.raises(ValueError, match=r"missing \['seed'\]"):
        RunSpec.from_dict({name: value for name, value in SPEC.to_dict().items() if name != "seed"})
