"""Every JSON file the project reads back goes through one reader (core.atomic.read_json): whatever a file holds
that no run of ours writes (nesting that exhausts the parser, bytes that are not UTF-8, a cut-off text, another
top-level type) is "damaged", named by its path, and each reader acts on that as on any damaged file: a run record
is set aside and trained again, a progress file is skipped with a word, an output's sources are as if missing."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from workflow_helpers import REPO_ROOT, write_config

from adabench.core.atomic import MAX_JSON_DEPTH, DamagedJSON, read_json, read_json_object
from adabench.study.config import load_study_config
from adabench.study.cost import measured_epoch_seconds
from adabench.core.records import complete_summary
from adabench.study.made_from import recorded_sources
from adabench.study.state import read_state
from adabench.study.progress import report, running_jobs, stop, write_progress
from adabench.study.design import Study

NESTED = "[" * 100_000 + "]" * 100_000  # valid JSON; json.loads raises RecursionError, which is no ValueError

DAMAGED = {
    "nested arrays": (NESTED.encode(), "JSON nested too deeply to parse"),
    "nested objects": (('{"a":' * 100_000 + "1" + "}" * 100_000).encode(), "JSON nested too deeply to parse"),
    "nested past the limit": (("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1)).encode(),
                              f"JSON nested deeper than {MAX_JSON_DEPTH} levels"),
    "not utf-8": (b'{"run_key": "\xff\xfe"}', "not valid JSON (not UTF-8"),
    "truncated": (b'{"run_key": "a", "final": {"loss": 0.', "not valid JSON (Expecting"),
    "empty": (b"", "not valid JSON (Expecting value"),
    "an array": (b"[1, 2]", "JSON an array, not an object"),
    "a string": (b'"summary"', "JSON a string, not an object"),
    "null": (b"null", "JSON null, not an object"),
    "an integer past int()": (b'{"steps": ' + b"9" * 5000 + b"}", "not valid JSON (Exceeds the limit"),
}


@pytest.mark.parametrize("content, words", DAMAGED.values(), ids=DAMAGED.keys())
def test_any_content_no_run_writes_is_damaged_naming_the_file(tmp_path, content, words):
    path = tmp_path / "summary.json"
    path.write_bytes(content)
    with pytest.raises(DamagedJSON) as raised:
        read_json(path)
    assert str(raised.value).startswith(f"{path}: damaged, {words}")
    assert read_json_object(path) == {}  # a lock's holder, an output's sources: as if missing


def test_what_the_project_writes_reads_back_and_a_missing_file_or_folder_are_told_apart(tmp_path):
    path = tmp_path / "record.json"
    path.write_text(json.dumps({"spec": {"hyperparameters": {"betas": [0.9, 0.999]}}, "loss": float("nan")}))
    assert read_json(path)["spec"]["hyperparameters"]["betas"] == [0.9, 0.999]
    path.write_text(json.dumps([{"key": "a"}]))
    assert read_json(path, list) == [{"key": "a"}]
    with pytest.raises(FileNotFoundError):
        read_json(tmp_path / "missing.json")
    assert read_json_object(tmp_path / "missing.json") == {}
    (tmp_path / "folder.json").mkdir()
    with pytest.raises(DamagedJSON, match="folder.json: damaged, a folder, not a JSON file"):
        read_json(tmp_path / "folder.json")


def test_a_deeply_nested_summary_is_a_damaged_record(tmp_path):
    (tmp_path / "summary.json").write_text(NESTED)
    assert complete_summary(tmp_path, None) == (None, f"{tmp_path / 'summary.json'}: damaged, JSON nested too deeply "
                                                    "to parse")
    # the cost planner and `adabench status` measure finished runs' pace from summaries: this one is no run's
    assert measured_epoch_seconds([tmp_path]).empty


def test_a_deeply_nested_or_misshapen_sources_sidecar_is_as_if_missing(tmp_path):
    path = tmp_path / "runs.sources.json"
    path.write_text(NESTED)
    assert recorded_sources(path) == {}
    path.write_text(json.dumps({"records": [["a", "b"]]}))  # valid JSON, but no run key -> digest
    assert recorded_sources(path) == {}
    path.write_text(json.dumps({"records": {"a": "sha"}}))
    assert recorded_sources(path) == {"records": {"a": "sha"}}


@pytest.fixture
def study(tmp_path, monkeypatch) -> Study:
    """A small study (no runs trained) in ``tmp_path``, the working directory."""
    monkeypatch.chdir(tmp_path)
    config = write_config(tmp_path, {"study": "nested", "device": "cpu", "seeds": [0], "tuning": None,
                                     "defaults_protocol": None,
                                     "reference": {"problems": [],
                                                   "results": str(REPO_ROOT / "config/reference_results.yaml")},
                                     "problems": {"linreg": {"optimizers": ["adagrad"]}}})
    return Study(load_study_config(config, defaults=REPO_ROOT / "config.yaml"))


def test_status_and_stop_name_a_damaged_progress_file_and_skip_it(study):
    progress = Path(study.progress_file("linreg-0"))
    progress.parent.mkdir(parents=True)
    progress.write_text(NESTED)
    # beside it a job that runs (this process): still listed
    write_progress(study.progress_file("linreg-1"), "linreg-1", "linreg",
                   {"unit": "epoch", "epoch": 1, "epochs": 2, "active": 1, "size": 1, "seconds_per_epoch": 1.0,
                    "eta_s": 1.0})
    damaged = []
    assert [job.job for job in running_jobs(study, time.time(), damaged)] == ["linreg-1"]
    said = f"{progress}: damaged, JSON nested too deeply to parse; skipped"
    assert [line.split(" (")[0] for line in damaged] == [said]
    assert f"WARNING: {said}" in report(read_state(study))
    Path(study.progress_file("linreg-1")).unlink()  # stop signals what runs: not this test's own process
    lines = []
    stop(study, log=lines.append)
    assert any(line.startswith(f"WARNING: {said}") for line in lines), lines
