"""One run: (problem, problem options, precision, optimizer, hyperparameters, seed) -> metrics.csv and
summary.json in a directory.

The directory is the source of truth. A run is trained by ``adabench.population.train_population``: alone it
is a population of one, so every run, alone or among others, goes through the same training loop.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import signal
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from . import __version__
from .provenance import cpu_model, git_commit
from .optim import optimizer_arguments
from .params import canonical_value, refuse_unknown, same_value
from .problems import problem_arguments

PREEMPTED_EXIT_CODE = 143  # 128 + SIGTERM, what schedulers expect from a terminated job
PRECISIONS = ("fp32", "bf16", "tf32")
# options that say where input data is read from, not what a run computes (the data itself is verified by
# its checksum when it is loaded): left out of a run's identity
PATH_OPTIONS = ("data_file",)

# Set by a SIGTERM handler (see cli.py): training stops after the epoch in progress, checkpoints written.
STOP_REQUESTED = threading.Event()


def stop_on_sigterm() -> None:
    """SIGTERM (preemption, a time limit) ends training after the epoch in progress, checkpoints written."""
    signal.signal(signal.SIGTERM, lambda signum, frame: STOP_REQUESTED.set())


class Preempted(RuntimeError):
    """Training was asked to stop; the checkpoints hold every completed epoch."""


def format_value(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    return str(value)


def canonical_hyperparameters(optimizer: str, hyperparameters: dict) -> dict:
    """What an optimizer computes with: lr always given (its default filled in), every other hyperparameter only
    where it differs from the default, numbers as the types the optimizer declares. Two settings that train
    alike are one run."""
    arguments = optimizer_arguments(optimizer)
    refuse_unknown("optimizer", optimizer, "hyperparameter", hyperparameters, arguments)
    canonical = {}
    for name, argument in arguments.items():
        if name in hyperparameters:
            value = canonical_value(hyperparameters[name], argument.schema)
            if name == "lr" or not same_value(value, argument.default):
                canonical[name] = value
        elif name == "lr":
            canonical[name] = argument.default
    return canonical


def setting_string(hyperparameters: dict) -> str:
    """Canonical hyperparameters as a string: lr first, the rest sorted by name."""
    names = sorted(hyperparameters, key=lambda name: (name != "lr", name))
    return ",".join(f"{name}={format_value(hyperparameters[name])}" for name in names)


def setting_of(optimizer: str, hyperparameters: dict) -> str:
    """The setting string of an optimizer's hyperparameters, as its runs' keys show it."""
    return setting_string(canonical_hyperparameters(optimizer, hyperparameters))


def canonical_options(problem: str, options: dict) -> dict:
    """A problem's options with its defaults filled in and path options left out: what its runs compute."""
    arguments = problem_arguments(problem)
    refuse_unknown("problem", problem, "option", options, arguments)
    full = {name: options.get(name, argument.default) for name, argument in arguments.items()}
    return {name: canonical_value(list(value) if isinstance(value, tuple) else value, arguments[name].schema)
            for name, value in sorted(full.items()) if name not in PATH_OPTIONS}


def options_id(problem: str, options: dict, precision: str) -> str:
    """A short digest of everything besides the optimizer and seed that changes what a run computes."""
    data = json.dumps({"options": canonical_options(problem, options), "precision": precision}, sort_keys=True)
    return hashlib.sha256(data.encode()).hexdigest()[:8]


@dataclass(frozen=True)
class RunSpec:
    problem: str
    optimizer: str
    hyperparameters: dict
    seed: int
    problem_options: dict = field(default_factory=dict)
    precision: str = "fp32"

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        object.__setattr__(self, "hyperparameters", canonical_hyperparameters(self.optimizer, self.hyperparameters))

    @property
    def setting(self) -> str:
        return setting_string(self.hyperparameters)

    @property
    def options_id(self) -> str:
        return options_id(self.problem, self.problem_options, self.precision)

    @property
    def key(self) -> str:
        """Unique to everything the run computes: its MLflow run key and its directory under the study's runs."""
        return f"{self.problem}@{self.options_id}/{self.optimizer}/{self.setting}/seed={self.seed}"

    def identity(self) -> dict:
        """What a run's records and checkpoint must have been made from to count as this run's."""
        return {"problem": self.problem, "options": canonical_options(self.problem, self.problem_options),
                "precision": self.precision, "optimizer": self.optimizer,
                "hyperparameters": dict(self.hyperparameters), "seed": self.seed}

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
    compiler stack, over a second of start-up per job. An operation without a deterministic kernel warns rather
    than fails (a LeNet's pooling backward, say); the warnings are counted and the run's records say which
    operations were not deterministic (Population.train), so "deterministic" is recorded as it really was.
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
    """Where and with what a run was trained: recorded whole in its summary, and as tags in MLflow."""
    info = {
        "device": str(device),
        "device_name": cpu_model(),
        "cpu": cpu_model(),
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
        import ctypes

        version = ctypes.c_int()
        if ctypes.CDLL("libcuda.so.1").cuDriverGetVersion(ctypes.byref(version)) != 0:
            return "unknown"
        return f"{version.value // 1000}.{version.value % 1000 // 10}"
    except OSError:
        return "unknown"


def train_run(spec: RunSpec, out_dir: Path, device: str = "auto", deterministic: bool = False,
              tracker: Tracker | None = None, log=print) -> dict:
    """Run ``spec`` into ``out_dir``, resuming from its checkpoint; a complete run is returned as it is."""
    from .population import train_population

    (summary,) = train_population([(spec, Path(out_dir))], device=device, deterministic=deterministic,
                                  trackers=(lambda _spec: tracker) if tracker else None, log=log)
    return summary
