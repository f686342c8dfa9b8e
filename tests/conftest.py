"""Shared fixtures: the reference report's numbers, runs of the CLI, the quick and fault studies built once."""
from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from hypothesis import settings

from adabench.core.records import TIME_COLUMNS

REPO_ROOT = Path(__file__).resolve().parents[1]
# the test models are tiny: a second thread only adds synchronisation (and stalls on a busy machine)
torch.set_num_threads(1)
# a shared or busy CI machine can stall one example past hypothesis's 200 ms deadline: not a failure
settings.register_profile("adabench", deadline=None)
settings.load_profile("adabench")

# The order in which pytest-xdist hands out the test files (`make test`: --dist loadfile --no-loadscope-reorder;
# its default order, by number of tests, handed out the one-test SLURM file last, where it ran alone for minutes on
# an idle CPU). First the SLURM test, which mostly waits on the cluster's status checks: its waits overlap the other
# process's work. Then the longest files, so that the short ones fill in at the end. (Test-seconds per file on a
# fresh clone's CI run, 2026-12-07, 2-core AMD EPYC VM: faults 579, reliability 498, kills 482, resume 437, SLURM
# 230, workflow 202, tracking server 143, then under 85 each.) Files not named follow, in collection order.
SCHEDULE_FIRST = ["test_slurm.py", "test_faults.py", "test_reliability.py", "test_kills.py", "test_resume.py",
                  "test_workflow.py", "test_tracking_server.py", "test_structure.py", "test_population.py",
                  "test_mlflow_ui.py", "test_reproducible.py", "test_packaged_population.py", "test_tracking.py"]


def pytest_collection_modifyitems(items):
    rank = {name: position for position, name in enumerate(SCHEDULE_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: each file keeps its own order


REFERENCE_COPY = REPO_ROOT / "config" / "reference_results.yaml"
# CI clones the repository with shared/ beside it, as in the workspace
SHARED_REFERENCE = REPO_ROOT.parent / "shared" / "reference" / "seed_results.yaml"


@pytest.fixture(scope="session")
def reference_results() -> dict:
    return yaml.safe_load(REFERENCE_COPY.read_text())


@pytest.fixture(scope="session")
def reference_files() -> tuple[Path, Path]:
    """(the tests' copy, the shared original) of the reference report's reference numbers."""
    return REFERENCE_COPY, SHARED_REFERENCE


@pytest.fixture(scope="session")
def read_metrics():
    """metrics.csv without its measured seconds, the one thing two identical runs may differ in."""

    def read(run_dir: Path) -> pd.DataFrame:
        return pd.read_csv(Path(run_dir) / "metrics.csv").drop(columns=TIME_COLUMNS)

    return read


@pytest.fixture
def start_train():
    """Starts ``python -m adabench train --threads 1 ARGS`` from the repository root, stderr piped.

    A run still going when the test ends (one that failed part way) is killed.
    """
    started: list[subprocess.Popen] = []

    def start(*arguments: str) -> subprocess.Popen:
        process = subprocess.Popen([sys.executable, "-m", "adabench", "train", "--threads", "1", *arguments],
                                   cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.communicate()


@pytest.fixture(scope="session")
def built_once(tmp_path_factory, worker_id):
    """``built_once(name, build)``: a private copy (modification times kept) of the folder that ``build(folder)``
    fills, built once per test session.

    Whichever pytest-xdist worker asks first builds it; the others wait on a file lock (a build runs Snakemake on
    both cores anyway). Each worker gets a copy of its own, so a test that edits or reruns it never races a test
    of another worker.
    """
    shared = tmp_path_factory.getbasetemp()
    if worker_id != "master":
        shared = shared.parent  # the session's folder, above each worker's own

    def copy_of(name: str, build) -> Path:
        built, done = shared / f"{name}-built", shared / f"{name}.built"
        with open(shared / f"{name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not done.exists():
                shutil.rmtree(built, ignore_errors=True)  # what a build that failed in another worker left
                build(built)
                done.touch()
        copy = tmp_path_factory.mktemp(name)
        shutil.copytree(built, copy, symlinks=True, dirs_exist_ok=True)
        return copy

    return copy_of


def build_quick_study(workdir: Path) -> None:
    from workflow_helpers import copy_workflow, snakemake

    copy_workflow(workdir)
    snakemake(workdir, "--cores", "2", "--configfile", "config/quick.yaml")
    snakemake(workdir, "--configfile", "config/quick.yaml", "--report", "report.html")


@pytest.fixture(scope="session")
def quick(built_once):
    """The quick study run end to end, locally, in a private copy of the workflow; then its report."""
    return built_once("quick", build_quick_study)


@pytest.fixture(scope="session")
def uninterrupted(built_once):
    """The fault study (tests/fault_study.py) run once without faults."""
    from fault_study import build_fault_study

    return built_once("faults", build_fault_study)


@pytest.fixture
def study(uninterrupted, tmp_path) -> Path:
    """A copy of the finished fault study (modification times kept), to break."""
    copy = tmp_path / "study"
    shutil.copytree(uninterrupted, copy, symlinks=True)
    return copy


@pytest.fixture(autouse=True)
def unchanged_environment():
    """What a test's code puts in os.environ (configure_timeouts sets MLflow's HTTP time-outs there) stays in its
    test: a later test's subprocesses in this worker would inherit it (a 2-second MLflow time-out failed a tracking
    server's study)."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def stop_flag():
    """STOP_REQUESTED is process-wide: never leave it set for the next test."""
    from adabench.core.runtime import STOP_REQUESTED

    STOP_REQUESTED.clear()
    yield STOP_REQUESTED
    STOP_REQUESTED.clear()
