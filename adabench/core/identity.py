"""A run's identity in each shape it is written in, converted in this one place: its key and setting string (the
names its directory and MLflow run go by), its columns in the plan and the runs table, and its MLflow params. Each
is made from the identity dict that adabench.core.spec.RunSpec.identity() gives and every run record keeps
(``summary["identity"]``): a run's rows and params read the same whether made from the plan or from its record.
Light: no torch, no pandas (the records and the analysis read identities too)."""
from __future__ import annotations

import json


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


def identity_columns(identity: dict, key: str) -> dict:
    """A run's identity as columns of the plan and of the runs table."""
    hyperparameters = identity["hyperparameters"]
    return {"problem": identity["problem"], "options_id": key_options_id(key), "precision": identity["precision"],
            "optimizer": identity["optimizer"], "setting": setting_string(hyperparameters),
            "hyperparameters": json.dumps(hyperparameters, sort_keys=True), "lr": hyperparameters.get("lr"),
            "seed": identity["seed"]}


def identity_params(identity: dict, key: str) -> dict:
    """A run's identity as MLflow params: what it is (problem, optimizer, seed, setting, precision, options id),
    each hyperparameter (hp.*) and problem option (problem.*), and a packaged optimizer's reference, distribution
    and version (package.*; a registry run has none)."""
    columns = identity_columns(identity, key)
    params = {name: columns[name] for name in ("problem", "optimizer", "seed", "setting", "precision", "options_id")}
    params.update({f"hp.{name}": value for name, value in identity["hyperparameters"].items()})
    params.update({f"problem.{name}": value for name, value in identity["options"].items()})
    params.update({f"package.{name}": value for name, value in (identity.get("package") or {}).items()})
    return params
