"""A run's identity: (problem, problem options, precision, optimizer, hyperparameters, seed), made canonical so
that two ways of writing the same run are one run, with its key (its directory and MLflow run) and options id.

It reads the registries' declared arguments (defaults, types, bounds) and the key format (core.identity); nothing else.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import MISSING, asdict, dataclass, field, fields

from .optim import canonical_hyperparameters, is_reference, packaged_optimizer
from .arguments import canonical_value, refuse_unknown
from .identity import run_key, setting_string
from .problems import problem_arguments

PRECISIONS = ("fp32", "bf16", "tf32")
# options that say where input data is read from, not what a run computes (the data itself is verified by
# its checksum when it is loaded): left out of a run's identity
PATH_OPTIONS = ("data_file",)


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
    # a packaged optimizer's package and version (adabench.core.packaged), read from this machine's install when the
    # spec is made and kept as given when it is read back (a job trains what the plan named); None for the registry
    package: dict | None = None

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        object.__setattr__(self, "hyperparameters", canonical_hyperparameters(self.optimizer, self.hyperparameters))
        if self.package is None and is_reference(self.optimizer):
            object.__setattr__(self, "package", packaged_optimizer(self.optimizer).identity())

    @property
    def setting(self) -> str:
        return setting_string(self.hyperparameters)

    @property
    def options_id(self) -> str:
        return options_id(self.problem, self.problem_options, self.precision)

    @property
    def key(self) -> str:
        """Unique to everything the run computes: its MLflow run key and its directory under the study's runs."""
        return run_key(self.problem, self.options_id, self.optimizer, self.setting, self.seed)

    def identity(self) -> dict:
        """What a run's records and checkpoint must have been made from to count as this run's (a registry run's
        as before packaged optimizers existed: no package)."""
        identity = {"problem": self.problem, "options": canonical_options(self.problem, self.problem_options),
                    "precision": self.precision, "optimizer": self.optimizer,
                    "hyperparameters": dict(self.hyperparameters), "seed": self.seed}
        if self.package is not None:
            identity["package"] = dict(self.package)
        return identity

    def to_dict(self) -> dict:
        data = asdict(self)
        if data["package"] is None:  # a registry run's spec reads as before: its job's params are unchanged
            del data["package"]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "RunSpec":
        """The spec that to_dict wrote (a job's params, a record's "spec"), taken as it is: it was made canonical
        where it entered (the config, the CLI) and is not checked again on its way to the optimizer. A record is
        a run's only when its identity equals the plan's spec's (adabench.study.state.verified)."""
        missing = [f.name for f in fields(cls) if f.name not in data and f.default is MISSING
                   and f.default_factory is MISSING]
        if missing or set(data) - {f.name for f in fields(cls)}:
            raise ValueError(f"not a run's spec: {sorted(data)} (missing {missing})")
        spec = object.__new__(cls)  # as written: no __post_init__, which makes a spec canonical
        for f in fields(cls):
            value = data[f.name] if f.name in data else f.default if f.default is not MISSING else f.default_factory()
            object.__setattr__(spec, f.name, value)
        return spec
