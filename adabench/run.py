"""One run: (problem, optimizer, hyperparameters, seed) -> metrics.csv and summary.json in a directory.

The directory is the source of truth. A per-epoch checkpoint (model, optimizer, RNG states and the
records so far, written atomically) lets an interrupted run resume and end bit-identical to an
uninterrupted one on CPU. A non-finite metric ends the run with status ``diverged``: a result, not a crash.
"""
from __future__ import annotations

import json
import math
import os
import platform
import signal
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd
import torch

from . import __version__
from .optim import make_optimizer, step_size_summary
from .problems import make_problem

FINISHED_STATUSES = ("finished", "diverged")
PREEMPTED_EXIT_CODE = 143  # 128 + SIGTERM, what schedulers expect from a terminated job

# Set by a SIGTERM handler (see cli.py): the run stops after the epoch in progress, checkpoint written.
STOP_REQUESTED = threading.Event()


def stop_on_sigterm() -> None:
    """SIGTERM (preemption, a time limit) ends the run after the epoch in progress, checkpoint written."""
    signal.signal(signal.SIGTERM, lambda signum, frame: STOP_REQUESTED.set())


class Preempted(RuntimeError):
    """The run was asked to stop; its checkpoint holds every completed epoch."""


def format_value(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    return str(value)


@dataclass(frozen=True)
class RunSpec:
    problem: str
    optimizer: str
    hyperparameters: dict
    seed: int
    problem_options: dict = field(default_factory=dict)

    @property
    def setting(self) -> str:
        """The hyperparameters as a path-safe, canonical string: lr first, the rest sorted by name."""
        names = sorted(self.hyperparameters, key=lambda name: (name != "lr", name))
        return ",".join(f"{name}={format_value(self.hyperparameters[name])}" for name in names) or "defaults"

    @property
    def key(self) -> str:
        """Unique to problem / optimizer / hyperparameters / seed: the MLflow run key and the run's directory."""
        return f"{self.problem}/{self.optimizer}/{self.setting}/seed={self.seed}"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "RunSpec":
        return cls(**data)


class Tracker(Protocol):
    # recorded_up_to: the last step of the records the run starts from (its checkpoint's), -1 for none
    def start(self, spec: RunSpec, unit: str, environment: dict, recorded_up_to: int) -> None: ...
    def log(self, rows: list[dict]) -> None: ...
    def finish(self, summary: dict, artifacts: list[Path]) -> None: ...


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} requested but CUDA is not available")
    return torch.device(device)


def configure_determinism(deterministic: bool) -> None:
    """Bitwise-repeatable GPU runs at some speed cost; must run before CUDA is first used.

    CPU runs are deterministic without it. Only switched on when asked: the switch imports torch's
    compiler stack, over a second of start-up per job.
    """
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def environment(device: torch.device, deterministic: bool) -> dict:
    info = {
        "device": str(device),
        "device_name": platform.processor() or platform.machine(),
        "deterministic": deterministic,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "adabench": __version__,
        "hostname": platform.node(),
    }
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        info["device_name"] = torch.cuda.get_device_name(index)
        info["cuda"] = torch.version.cuda
        info["cudnn"] = torch.backends.cudnn.version()
        info["cuda_driver"] = cuda_driver_version()
    return info


def cuda_driver_version() -> str:
    try:
        import ctypes

        version = ctypes.c_int()
        ctypes.CDLL("libcuda.so.1").cuDriverGetVersion(ctypes.byref(version))
        return f"{version.value // 1000}.{version.value % 1000 // 10}"
    except OSError:
        return "unknown"


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_records(path: Path, records: list[dict], unit: str) -> None:
    frame = pd.DataFrame(records)
    frame = frame[[unit] + [column for column in frame.columns if column != unit]]
    tmp = path.with_name(f".{path.name}.tmp")
    frame.to_csv(tmp, index=False)
    os.replace(tmp, path)


def is_diverged(row: dict) -> bool:
    return any(
        isinstance(value, float) and not math.isfinite(value)
        for name, value in row.items()
        if not name.startswith("eff_lr")
    )


def best_of(records: list[dict], metric: str, mode: str, unit: str) -> dict | None:
    values = [(row[metric], row[unit]) for row in records if metric in row and math.isfinite(row[metric])]
    if not values:
        return None
    value, at = (max if mode == "max" else min)(values, key=lambda pair: pair[0])
    return {"metric": metric, "mode": mode, "value": value, unit: at}


def read_summary(out_dir: Path) -> dict | None:
    path = Path(out_dir) / "summary.json"
    return json.loads(path.read_text()) if path.exists() else None


def train_run(spec: RunSpec, out_dir: Path, device: str = "auto", deterministic: bool = False,
              tracker: Tracker | None = None, log=print) -> dict:
    """Run ``spec`` into ``out_dir``, resuming from its checkpoint; a completed run is returned as is."""
    out_dir = Path(out_dir)
    done = read_summary(out_dir)
    if done and done["status"] in FINISHED_STATUSES and done["spec"] == spec.to_dict():
        log(f"{spec.key}: already {done['status']}, skipped")
        return done
    out_dir.mkdir(parents=True, exist_ok=True)
    configure_determinism(deterministic)
    torch_device = resolve_device(device)
    wall_start = time.perf_counter()

    problem = make_problem(spec.problem, spec.problem_options, torch_device)
    torch.manual_seed(spec.seed)
    model = problem.build_model()
    optimizer = make_optimizer(spec.optimizer, model.parameters(), spec.hyperparameters)
    batch_order = torch.Generator().manual_seed(spec.seed)
    unit = problem.unit

    checkpoint_path = out_dir / "checkpoint.pt"
    records: list[dict] = []
    train_time = 0.0
    resumed_from = 0
    checkpoint = torch.load(checkpoint_path, weights_only=False, map_location=torch_device) \
        if checkpoint_path.exists() else None
    if checkpoint is not None and checkpoint.get("spec") != spec.to_dict():
        # the directory is named by the run key, which leaves out problem options (epochs, subsets)
        log(f"{spec.key}: ignoring a checkpoint of another configuration")
        checkpoint = None
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        batch_order.set_state(checkpoint["batch_order"])
        torch.set_rng_state(checkpoint["torch_rng"])
        if torch_device.type == "cuda" and checkpoint.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(checkpoint["cuda_rng"], torch_device)
        records = checkpoint["records"]
        train_time = checkpoint["train_time"]
        resumed_from = checkpoint["epoch"]
        log(f"{spec.key}: resuming after {unit} {resumed_from}")
    elif problem.records_initial_state:
        records.append({unit: 0, **problem.evaluate(model), "time_s": 0.0})

    env = environment(torch_device, deterministic)
    if tracker:
        tracker.start(spec, unit, env, recorded_up_to=records[-1][unit] if records else -1)
        tracker.log(records)

    status = "finished"
    for epoch in range(resumed_from + 1, problem.epochs + 1):
        tick = time.perf_counter()
        trained = {name: float(value) for name, value in problem.train_epoch(model, optimizer, batch_order).items()}
        train_time += time.perf_counter() - tick
        row = {unit: epoch, **trained, **problem.evaluate(model), **step_size_summary(optimizer), "time_s": train_time}
        records.append(row)
        if tracker:
            tracker.log([row])
        if is_diverged(row):
            status = "diverged"
            log(f"{spec.key}: non-finite metrics at {unit} {epoch}, stopped as diverged")
            break
        save_checkpoint(checkpoint_path, spec, model, optimizer, batch_order, torch_device, records, train_time, epoch)
        write_records(out_dir / "metrics.csv", records, unit)
        log(progress_line(spec, unit, epoch, problem.epochs, row))
        if STOP_REQUESTED.is_set():
            raise Preempted(f"{spec.key}: stop requested; checkpoint holds {unit} {epoch}")

    metrics_path = out_dir / "metrics.csv"
    write_records(metrics_path, records, unit)
    metric, mode = problem.headline
    selection_metric, selection_mode = problem.selection
    summary = {
        "run_key": spec.key,
        "spec": spec.to_dict(),
        "status": status,
        "unit": unit,
        "epochs_completed": records[-1][unit] if records else 0,
        "epochs_planned": problem.epochs,
        "final": records[-1] if records else {},
        "headline": {"metric": metric, "mode": mode},
        "selection": {"metric": selection_metric, "mode": selection_mode},
        "best": best_of(records, metric, mode, unit),
        "best_selection": best_of(records, selection_metric, selection_mode, unit),
        "train_time_s": train_time,
        "wall_time_s": time.perf_counter() - wall_start,
        "resumed_from": resumed_from,
        **env,
    }
    if tracker:
        tracker.finish(summary, [metrics_path])
    # written last: its presence marks the run complete, so a failure above reruns (and resumes) it
    atomic_write_text(out_dir / "summary.json", json.dumps(summary, indent=2, default=float))
    checkpoint_path.unlink(missing_ok=True)
    return summary


def save_checkpoint(path: Path, spec: RunSpec, model, optimizer, batch_order, device, records, train_time,
                    epoch) -> None:
    checkpoint = {
        "spec": spec.to_dict(),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "batch_order": batch_order.get_state(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "records": records,
        "train_time": train_time,
        "epoch": epoch,
    }
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(checkpoint, tmp)
    os.replace(tmp, path)


def progress_line(spec: RunSpec, unit: str, epoch: int, total: int, row: dict) -> str:
    shown = ", ".join(
        f"{name} {value:.4g}" for name, value in row.items()
        if name in ("loss", "train_loss", "train_acc", "val_acc", "test_acc", "train_mse", "test_loss")
    )
    return f"{spec.key}: {unit} {epoch}/{total} {shown} ({row['time_s']:.1f}s)"
