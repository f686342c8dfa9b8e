"""Study configuration: validated before any job starts, every error naming its field."""
from __future__ import annotations

import math
from pathlib import Path

import jsonschema
import yaml

from .optim import OPTIMIZERS, optimizer_hyperparameters
from .problems import PROBLEMS, problem_options

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"config error at {field}: {message}")


def field_name(path) -> str:
    name = ""
    for part in path:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name or "(top level)"


def schema_with_registries() -> dict:
    """The JSON schema with the registries' names added, so adding an optimizer needs no schema edit."""
    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    problem_names = {"enum": PROBLEMS.names()}
    optimizer_names = {"enum": OPTIMIZERS.names()}
    props = schema["properties"]
    props["problems"]["propertyNames"] = problem_names
    props["problems"]["additionalProperties"]["properties"]["optimizers"]["propertyNames"] = optimizer_names
    reference = props["seed_reference"]["items"]["properties"]
    reference["problem"].update(problem_names)
    reference["optimizer"].update(optimizer_names)
    props["tuning"]["properties"]["problems"]["items"].update(problem_names)
    props["tuning"]["properties"]["optimizers"]["items"].update(optimizer_names)
    return schema


def reject_non_finite(value, path=()) -> None:
    # jsonschema lets .nan through exclusiveMinimum (nan <= 0 is False), so every number is checked here
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(field_name(path), f"{value} is not a finite number")
    if isinstance(value, dict):
        for key, item in value.items():
            reject_non_finite(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            reject_non_finite(item, (*path, index))


def settings_list(settings) -> list[dict]:
    return settings if isinstance(settings, list) else [settings]


def check_names(given: dict, accepted: dict, path: tuple, what: str) -> None:
    for name in given:
        if name not in accepted:
            raise ConfigError(field_name((*path, name)), f"unknown {what} {name!r}; accepted: {sorted(accepted)}")


def validate_config(config: dict) -> dict:
    """Raise ConfigError naming the first bad field; returns the config unchanged."""
    reject_non_finite(config)
    validator = jsonschema.Draft202012Validator(schema_with_registries())
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if errors:
        error = jsonschema.exceptions.best_match(errors)
        raise ConfigError(field_name(error.absolute_path), error.message)
    for problem, entry in config["problems"].items():
        check_names(entry.get("options", {}), problem_options(problem), ("problems", problem, "options"), "option")
        for optimizer, settings in entry["optimizers"].items():
            for index, hyperparameters in enumerate(settings_list(settings)):
                path = ("problems", problem, "optimizers", optimizer, *([index] if isinstance(settings, list) else []))
                check_names(hyperparameters, optimizer_hyperparameters(optimizer), path, "hyperparameter")
    for index, reference in enumerate(config.get("seed_reference", [])):
        path = ("seed_reference", index)
        check_names(reference["hyperparameters"], optimizer_hyperparameters(reference["optimizer"]),
                    (*path, "hyperparameters"), "hyperparameter")
        if reference["problem"] not in config["problems"]:
            raise ConfigError(field_name((*path, "problem")), f"{reference['problem']!r} is not in problems")
    tuning = config.get("tuning")
    if tuning:
        if not tuning["lr_grid"]["low"] < tuning["lr_grid"]["high"]:
            raise ConfigError("tuning.lr_grid", "low must be below high")
        for index, problem in enumerate(tuning["problems"]):
            if problem not in config["problems"]:
                raise ConfigError(f"tuning.problems[{index}]", f"{problem!r} is not in problems")
    return config
