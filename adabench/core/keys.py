"""A run's key and its setting string, the names its directory and MLflow run go by. Light: no torch, no pandas
(the records and the analysis read keys too)."""
from __future__ import annotations


def format_value(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    return str(value)


def setting_string(hyperparameters: dict) -> str:
    """Canonical hyperparameters as a string: lr first, the rest sorted by name."""
    names = sorted(hyperparameters, key=lambda name: (name != "lr", name))
    return ",".join(f"{name}={format_value(hyperparameters[name])}" for name in names)


def key_name(optimizer: str) -> str:
    """The optimizer's segment of a run key: a packaged optimizer's reference with '.' for ':' (records are
    committed to git, and ':' is not a file name on Windows nor a safe one for scp/rsync); a registry name has
    neither, and a reference's class name has no '.', so two optimizers never share a segment."""
    return optimizer.replace(":", ".")


def run_key(problem: str, options_id: str, optimizer: str, setting: str, seed: int) -> str:
    """A run's key: its directory under the study's runs and its MLflow run (adabench.core.spec.RunSpec.key)."""
    return f"{problem}@{options_id}/{key_name(optimizer)}/{setting}/seed={seed}"


def key_options_id(key: str) -> str:
    """The options id a run key names (what a run's problem options and precision digest to)."""
    return key.split("@", 1)[1].split("/", 1)[0]
