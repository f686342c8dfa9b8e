"""What the workflow's training and bookkeeping jobs do; scripts/ only unpack Snakemake's arguments."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from .data import fetch_file, prepare_fashion_mnist, FASHION_MNIST_FILES
from .run import PREEMPTED_EXIT_CODE, Preempted, RunSpec, atomic_write_text, stop_on_sigterm, train_run
from .study import run_dir
from .tracking import MLflowTracker, config_hash, ensure_experiment, git_commit


class LogFile:
    """A callable that appends lines to a job's log file (and echoes them to stdout).

    The job's stderr goes to the same file, so a traceback lands where Snakemake says to look.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = self.path.open("a", buffering=1)
        sys.stderr = self.handle

    def __call__(self, line: str) -> None:
        self.handle.write(line + "\n")
        print(line, flush=True)


def train_shard(runs: list[dict], marker: Path, tracking_uri: str, experiment: str, device: str,
                deterministic: bool, threads: int, config: dict, log: LogFile) -> None:
    """Train each run of a job in turn. A run already complete is skipped, so a failed job loses nothing
    that finished before it; SIGTERM stops after the current epoch with the checkpoint written."""
    stop_on_sigterm()
    torch.set_num_threads(threads)
    tags = {"git_commit": git_commit(Path(__file__).parent), "config_hash": config_hash(config)}
    done = []
    for run in runs:
        spec = RunSpec.from_dict(run)
        tracker = MLflowTracker(tracking_uri, experiment, tags=tags)
        try:
            summary = train_run(spec, run_dir(spec), device=device, deterministic=deterministic, tracker=tracker,
                                log=log)
        except Preempted as stop:
            log(str(stop))
            sys.exit(PREEMPTED_EXIT_CODE)  # the scheduler requeues or Snakemake retries; the rerun resumes
        done.append({"run_key": spec.key, "status": summary["status"], "dir": str(run_dir(spec))})
    marker = Path(marker)
    marker.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(marker, json.dumps(done, indent=2))


def create_store(tracking_uri: str, experiment: str, artifact_root: str, output: Path, log: LogFile) -> None:
    local_store = tracking_uri.startswith("sqlite:///")
    if local_store:
        Path(tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    # a tracking server keeps artifacts where it was told to; a local store keeps them beside the database
    experiment_id = ensure_experiment(tracking_uri, experiment, Path(artifact_root) if local_store else None)
    log(f"MLflow experiment {experiment!r} is {experiment_id} at {tracking_uri}")
    atomic_write_text(Path(output), json.dumps({"tracking_uri": tracking_uri, "experiment": experiment,
                                                "experiment_id": experiment_id}, indent=2))


def fetch_one(filename: str, sources: list[str], output: Path, timeout: float, log: LogFile) -> None:
    sha256 = dict(FASHION_MNIST_FILES.values())[filename]
    fetch_file(filename, sha256, sources, Path(output), timeout=timeout, log=log)


def prepare(raw_files: list[str], output: Path, log: LogFile) -> None:
    shapes = prepare_fashion_mnist(Path(raw_files[0]).parent, Path(output))
    log(f"prepared {output}: {shapes}")
