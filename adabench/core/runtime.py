"""Where and how a run trains: its device, determinism and precision, the environment its records name, and
preemption (SIGTERM ends training after the epoch in progress, every checkpoint written)."""
from __future__ import annotations

import ctypes
import os
import platform
import signal
import threading
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from .. import __version__
from .provenance import cpu_model, git_commit, package_versions

PREEMPTED_EXIT_CODE = 143  # 128 + SIGTERM, what schedulers expect from a terminated job

# Set by a SIGTERM handler (see cli.py): training stops after the epoch in progress, checkpoints written.
STOP_REQUESTED = threading.Event()


def stop_on_sigterm() -> None:
    """SIGTERM (preemption, a time limit) ends training after the epoch in progress, checkpoints written."""
    signal.signal(signal.SIGTERM, lambda signum, frame: STOP_REQUESTED.set())


class Preempted(RuntimeError):
    """Training was asked to stop; the checkpoints hold every completed epoch."""


class Tracker(Protocol):
    # a run by its key and identity (RunSpec.identity(), a record's "identity"); recorded_up_to: the last step of
    # the records the run starts from (its checkpoint's), -1 for none
    def start(self, key: str, identity: dict, unit: str, environment: dict, recorded_up_to: int) -> None: ...
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
    compiler stack, over a second of start-up per job. An operation without a deterministic kernel warns rather
    than fails (a LeNet's pooling backward, say); the warnings are counted and the run's records say which
    operations were not deterministic (PopulationTrainer.train), so "deterministic" is recorded as it really was.
    """
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def configure_precision(precision: str) -> None:
    """fp32 means fp32 on CUDA too: TF32 (a 10-bit mantissa in convolutions and matmuls) only when asked. torch's
    own default lets cuDNN convolutions use TF32 (``cudnn.conv.fp32_precision`` is "tf32"), so both are set."""
    mode = "tf32" if precision == "tf32" else "ieee"
    torch.backends.cuda.matmul.fp32_precision = mode
    torch.backends.cudnn.conv.fp32_precision = mode


def environment(device: torch.device, deterministic: bool) -> dict:
    """Where and with what a run was trained: recorded whole in its summary, and as tags in MLflow (the versions of
    provenance.PACKAGES as params too). Records written before a package's version was recorded lack its key."""
    info = {
        **package_versions(),  # torch and numpy as their modules say, below: torch's names its build (2.14.1+cu130)
        "device": str(device),
        "device_name": cpu_model(),
        "cpu": cpu_model(),
        # the vector instructions torch's CPU kernels, and the code torch.compile generates, are built for: one
        # "AMD EPYC" may be AVX2 or AVX512, and a compiled LeNet then ends its runs apart in float32's last bits
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "deterministic": deterministic,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "adabench": __version__,
        "git_commit": git_commit(),
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
    """The CUDA driver's version (cuDriverGetVersion), or "unknown" if the call fails (its CUresult is not 0)."""
    try:
        version = ctypes.c_int()
        if ctypes.CDLL("libcuda.so.1").cuDriverGetVersion(ctypes.byref(version)) != 0:
            return "unknown"
        return f"{version.value // 1000}.{version.value % 1000 // 10}"
    except OSError:
        return "unknown"
