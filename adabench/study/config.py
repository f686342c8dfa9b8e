"""Study configuration: checked before any job starts, every error naming its field, defaults filled in.

The schema (adabench/schemas/config.schema.yaml, inside the package) says what a study may hold and gives the
defaults. The registries add the rest at load time: which problems and optimizers exist, and the type and range of each
problem option and optimizer hyperparameter, from their constructors.
"""
from __future__ import annotations

import copy
import importlib
import math
import re
from pathlib import Path

import jsonschema
import yaml

from ..core.data import data_path_fault
from ..core.optim import OPTIMIZERS, optimizer_arguments, packaged_optimizer
from ..core.packaged import ReferenceError, check_setting, define, is_reference
from ..core.problems import PROBLEMS, problem_arguments
from ..core.spec import PATH_OPTIONS

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schemas" / "config.schema.yaml"
# YAML aliases can make a small file expand into billions of values ("a billion laughs"); no study is this big
MAX_CONFIG_VALUES = 200_000
MAX_CONFIG_BYTES = 4 * 1024 * 1024
# A string hyperparameter is written into its run's key (the setting: name=value pairs joined by ",", lists in
# brackets, adabench.core.identity.setting_string) and so into a directory name. A separator in a value would let two
# settings share one key (tag "a,zz=b" and tag "a" with zz "b"); "/", ".." or control characters would lead out of
# the run's folder. Values are refused rather than escaped, so that every existing run key stays as it is.
UNSAFE_IN_PATH = re.compile(r"[,=\[\]/]|\.\.|[\x00-\x1f\x7f]")


class ConfigError(ValueError):
    def __init__(self, field: str, message: str):
        self.field, self.message = field, message
        super().__init__(f"config error at {field}: {message}")


def field_name(path) -> str:
    name = ""
    for part in path:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name or "(top level)"


def load_yaml(path: Path) -> dict:
    """A config file read with a size limit and its aliases counted, so an alias bomb is refused at once; a file
    that is missing, unreadable, not UTF-8 YAML, empty or not a mapping is refused naming it."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError(str(path), f"larger than {MAX_CONFIG_BYTES} bytes")
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError(str(path), f"cannot be read ({error.strerror or error})") from None
    except UnicodeDecodeError as error:
        raise ConfigError(str(path), f"is not a text file (not UTF-8 at byte {error.start})") from None
    except yaml.YAMLError as error:
        raise ConfigError(str(path), f"is not valid YAML ({str(error).splitlines()[0]})") from None
    if data is None:
        raise ConfigError(str(path), "is empty: a study file holds at least its name (study: NAME)")
    if not isinstance(data, dict):
        raise ConfigError(str(path), f"holds a {type(data).__name__}, not a mapping of settings")
    check_size(data)
    return data


def check_size(value) -> None:
    """Count the values a config holds with its aliases expanded; stop as soon as there are too many."""
    count, stack = 0, [value]
    while stack:
        item = stack.pop()
        count += 1
        if count > MAX_CONFIG_VALUES:
            raise ConfigError("(top level)", f"more than {MAX_CONFIG_VALUES} values once YAML aliases are expanded "
                                             "(an alias bomb?); refused before it is read further")
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


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


def base_schema() -> dict:
    return yaml.safe_load(SCHEMA_PATH.read_text())


def arguments_schema(arguments: dict) -> dict:
    return {"type": "object", "additionalProperties": False,
            "properties": {name: copy.deepcopy(argument.schema) for name, argument in arguments.items()}}


def references_in(config: dict) -> dict[str, str]:
    """The packaged optimizers (``module:Class``) a config names, each with the field of its first use."""
    found: dict[str, str] = {}

    def note(names, field):
        for index, name in (enumerate(names) if isinstance(names, list) else []):
            if isinstance(name, str) and is_reference(name):
                found.setdefault(name, f"{field}[{index}]")

    def note_keys(entries, field):
        for name in (entries if isinstance(entries, dict) else {}):
            if isinstance(name, str) and is_reference(name):
                found.setdefault(name, f"{field}.{name}")

    note(config.get("optimizers"), "optimizers")
    for problem, entry in (config.get("problems") or {}).items() if isinstance(config.get("problems"), dict) else ():
        if isinstance(entry, dict):
            note(entry.get("optimizers"), f"problems.{problem}.optimizers")
            note_keys(entry.get("settings"), f"problems.{problem}.settings")
    if isinstance(config.get("tuning"), dict):
        note(config["tuning"].get("optimizers"), "tuning.optimizers")
    checks = config.get("checks")
    note_keys(checks, "checks")
    note(list(checks.values()) if isinstance(checks, dict) else None, "checks")
    return found


def define_aliases(config: dict) -> None:
    """The study's `packaged` section: its shape checked, its aliases made known to this process, each resolved
    (its optimizer, its fallback and the fallback's settings), a bad one refused naming its field."""
    section = config.get("packaged")
    if section is None:
        return
    shape = {"type": "object", "properties": {"packaged": base_schema()["properties"]["packaged"]}}
    errors = list(jsonschema.Draft202012Validator(shape).iter_errors({"packaged": section}))
    if errors:
        raise schema_error(jsonschema.exceptions.best_match(errors))
    for alias, entry in section.items():
        if alias in OPTIMIZERS:
            raise ConfigError(f"packaged.{alias}", f"{alias!r} is an optimizer of the registry: name the alias "
                                                   "otherwise")
        fallback = entry.get("fallback")
        if fallback and ":" not in fallback["optimizer"]:
            if fallback["optimizer"] not in OPTIMIZERS:
                raise ConfigError(f"packaged.{alias}.fallback.optimizer",
                                  f"unknown {fallback['optimizer']!r}; known: {', '.join(OPTIMIZERS.names())} "
                                  "or a reference (module:Class)")
            settings = arguments_schema(optimizer_arguments(fallback["optimizer"]))
            errors = list(jsonschema.Draft202012Validator(settings).iter_errors(fallback.get("settings", {})))
            if errors:
                error = schema_error(jsonschema.exceptions.best_match(errors))
                raise ConfigError(f"packaged.{alias}.fallback.settings"
                                  + (f".{error.field}" if error.field != "(top level)" else ""), error.message)
    define(section)
    for alias in section:
        try:
            packaged_optimizer(alias)
        except ReferenceError as error:
            raise ConfigError(f"packaged.{alias}.{error.name or 'optimizer'}", str(error)) from None


def resolve_references(config: dict) -> list[str]:
    """Import and probe every packaged optimizer the config names; a bad one is refused naming its field."""
    named = references_in(config)
    for reference, field in named.items():
        try:
            packaged_optimizer(reference)
        except ReferenceError as error:
            raise ConfigError(field, str(error)) from None
    return sorted(named)


def schema_with_registries(references: list[str] = ()) -> dict:
    """The JSON schema with the registries' names, options and hyperparameters, typed and bounded, and those of
    the packaged optimizers a config names (``references``; unbounded: their constructors judge the values)."""
    schema = base_schema()
    problem_names, optimizer_names = PROBLEMS.names(), [*OPTIMIZERS.names(), *references]
    props = schema["properties"]
    props["optimizers"]["items"] = {"enum": optimizer_names}
    settings = {}
    for name in optimizer_names:
        hyperparameters = arguments_schema(optimizer_arguments(name))
        settings[name] = {"oneOf": [hyperparameters, {"type": "array", "minItems": 1, "items": hyperparameters}]}
    entry = props["problems"].pop("additionalProperties")
    entry["properties"]["optimizers"]["items"] = {"enum": optimizer_names}
    entry["properties"]["settings"].update(properties=settings, additionalProperties=False)
    props["problems"]["properties"] = {}
    for name in problem_names:
        problem_entry = copy.deepcopy(entry)
        problem_entry["properties"]["options"].update(arguments_schema(problem_arguments(name)))
        problem_entry["properties"]["grid_options"].update(arguments_schema(problem_arguments(name)))
        props["problems"]["properties"][name] = problem_entry
    props["problems"]["additionalProperties"] = False
    props["reference"]["properties"]["problems"]["items"] = {"enum": problem_names}
    props["tuning"]["properties"]["problems"]["items"] = {"enum": problem_names}
    props["tuning"]["properties"]["optimizers"]["items"] = {"enum": optimizer_names}
    props["defaults_protocol"]["items"] = {"enum": problem_names}
    props["checks"]["propertyNames"] = {"enum": optimizer_names}
    props["checks"]["additionalProperties"] = {"enum": optimizer_names}
    return schema


def fill_defaults(value, schema: dict):
    """A copy of ``value`` with the schema's defaults put in where keys are missing (objects, recursively)."""
    if not isinstance(value, dict) or schema.get("type") not in ("object", ["object", "null"]):
        return value
    filled = dict(value)
    for name, sub in schema.get("properties", {}).items():
        if name not in filled and "default" in sub:
            filled[name] = copy.deepcopy(sub["default"])
        if name in filled:
            filled[name] = fill_defaults(filled[name], sub)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        for name in filled:
            if name not in schema.get("properties", {}):
                filled[name] = fill_defaults(filled[name], extra)
    return filled


def load_plugins(modules: list[str]) -> None:
    """Import the modules that register more problems or optimizers (config ``plugins``)."""
    for index, module in enumerate(modules or []):
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise ConfigError(f"plugins[{index}]", f"cannot import {module!r}: {error}") from None


def yaml_hint(error: jsonschema.ValidationError) -> str:
    value = error.instance
    if error.validator == "type" and isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return ""
        return f" (YAML reads {value} as a string: write it with a decimal point, e.g. {float(value):.1e})"
    return ""


def schema_error(error: jsonschema.ValidationError) -> ConfigError:
    # a oneOf over "one setting or a list of settings" hides the useful error in its context
    while error.validator in ("oneOf", "anyOf") and error.context:
        error = jsonschema.exceptions.best_match(error.context)
    message = error.message
    if error.validator == "additionalProperties":
        unexpected = re.findall(r"'([^']+)'", message)
        if unexpected:
            known = sorted(error.schema.get("properties", {}))
            what = ("hyperparameter" if "lr" in known else "key")
            return ConfigError(field_name([*error.absolute_path, unexpected[0]]),
                               f"unknown {what} {unexpected[0]!r}; accepted: {known}")
    if error.validator == "enum" and isinstance(error.instance, str):
        message = f"unknown {error.instance!r}; known: {', '.join(map(str, error.validator_value))}"
    return ConfigError(field_name(error.absolute_path), message + yaml_hint(error))


def check_path_safe(value, path) -> None:
    if isinstance(value, str) and UNSAFE_IN_PATH.search(value):
        raise ConfigError(field_name(path), f"{value!r} would become part of a path, its run's key: no ',', '=', "
                                            "'[' or ']' (they separate a setting's values), '/', '..' or control "
                                            "characters; write the value without them")
    if isinstance(value, list):
        for index, item in enumerate(value):
            check_path_safe(item, (*path, index))


def validate_config(config: dict) -> dict:
    """Raise ConfigError naming the first bad field; return the config with the schema's defaults filled in."""
    check_size(config)
    if not isinstance(config, dict):
        raise ConfigError("(top level)", "a study config is a mapping")
    reject_non_finite(config)
    load_plugins(config.get("plugins", []) if isinstance(config.get("plugins"), list) else [])
    define_aliases(config)
    references = resolve_references(config)
    schema = schema_with_registries(references)
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(config),
                    key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if errors:
        raise schema_error(jsonschema.exceptions.best_match(errors))
    config = fill_defaults(config, schema)
    for problem, entry in config["problems"].items():
        for optimizer, settings in entry["settings"].items():
            for index, hyperparameters in enumerate(settings_list(settings)):
                place = ("problems", problem, "settings", optimizer, *([index] if isinstance(settings, list) else []))
                for name, value in hyperparameters.items():
                    check_path_safe(value, (*place, name))
                if is_reference(optimizer):
                    check_constructor(optimizer, hyperparameters, place)
    for problem, entry in config["problems"].items():
        for section in ("options", "grid_options"):
            for name in PATH_OPTIONS:  # a dataset is read only from the data folder (core.data.data_path_fault)
                if name in entry.get(section, {}) and (fault := data_path_fault(entry[section][name])):
                    raise ConfigError(f"problems.{problem}.{section}.{name}", fault)
        if "optimizers" not in entry and "optimizers" not in config:
            raise ConfigError(f"problems.{problem}.optimizers", "no optimizers: list them here or at the top level")
    for index, problem in enumerate(config.get("defaults_protocol") or []):
        if problem not in config["problems"]:
            raise ConfigError(f"defaults_protocol[{index}]", f"{problem!r} is not in problems")
    for check, original in config["checks"].items():
        if check == original:
            raise ConfigError(f"checks.{check}", "an optimizer is not a copy of itself")
    for index, problem in enumerate((config["reference"].get("problems") or [])):
        if problem not in config["problems"]:
            raise ConfigError(f"reference.problems[{index}]", f"{problem!r} is not in problems")
    tuning = config.get("tuning")
    if tuning:
        if not tuning["lr_grid"]["low"] < tuning["lr_grid"]["high"]:
            raise ConfigError("tuning.lr_grid", "low must be below high")
        for index, problem in enumerate(tuning["problems"]):
            if problem not in config["problems"]:
                raise ConfigError(f"tuning.problems[{index}]", f"{problem!r} is not in problems")
        limits = tuning["lr_limits"]
        if not limits["low"] <= tuning["lr_grid"]["low"] < tuning["lr_grid"]["high"] <= limits["high"]:
            raise ConfigError("tuning.lr_limits", f"the grid ({tuning['lr_grid']['low']} to "
                                                  f"{tuning['lr_grid']['high']}) must lie within the limits "
                                                  f"({limits['low']} to {limits['high']})")
        for problem in tuning["targets"]:
            if problem not in config["problems"]:
                raise ConfigError(f"tuning.targets.{problem}", f"{problem!r} is not in problems")
    return config


def check_constructor(reference: str, hyperparameters: dict, path: tuple) -> None:
    """A packaged optimizer built once with a setting: a value its constructor refuses is named by its field."""
    try:
        check_setting(packaged_optimizer(reference), hyperparameters)
    except ReferenceError as error:
        raise ConfigError(field_name((*path, *([error.name] if error.name else []))), str(error)) from None


def check_run_arguments(problem: str, optimizer: str, hyperparameters: dict, options: dict, seed: int) -> None:
    """One run's arguments (``adabench train``) checked by the schema and bounds a study's config is checked by;
    a ConfigError names the command-line argument (``--set NAME``, ``--option NAME``, ``--seed``)."""
    checks = [("--seed", base_schema()["$defs"]["seeds"]["items"], seed)]
    try:
        accepted = optimizer_arguments(optimizer)
    except (KeyError, ReferenceError) as error:  # an unknown registry name, a reference that names no optimizer
        raise ConfigError("--optimizer", error.args[0]) from None
    for flag, kind, name, given, arguments in (("--set", "optimizer", optimizer, hyperparameters, accepted),
                                               ("--option", "problem", problem, options, problem_arguments(problem))):
        unknown = sorted(set(given) - set(arguments))
        if unknown:
            raise ConfigError(f"{flag} {unknown[0]}", f"{kind} {name!r} has no {unknown[0]!r}; it accepts "
                                                      f"{', '.join(sorted(arguments))}")
        checks += [(f"{flag} {key}", arguments[key].schema, value) for key, value in given.items()]
    for name in PATH_OPTIONS:
        if name in options and (fault := data_path_fault(options[name])):
            raise ConfigError(f"--option {name}", fault)
    for flag, schema, value in checks:
        reject_non_finite(value, (flag,))
        error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(value))
        if error is not None:
            raise ConfigError(flag, schema_error(error).message)
    for name, value in hyperparameters.items():  # written into the run's key, as a study's settings are
        check_path_safe(value, (f"--set {name}",))
    if is_reference(optimizer):
        try:
            check_setting(packaged_optimizer(optimizer), hyperparameters)
        except ReferenceError as error:
            raise ConfigError(f"--set {error.name}" if error.name else "--set", str(error)) from None


def merge(base: dict, override: dict) -> dict:
    """``override`` merged over ``base`` as Snakemake's update_config merges: mappings key by key, recursively, in
    ``base``'s key order with ``override``'s new keys after; anything else (a list, a number) replaced."""
    merged = dict(base)
    for key, value in override.items():
        below = merged.get(key)
        merged[key] = merge(below if isinstance(below, dict) else {}, value) if isinstance(value, dict) else value
    return merged


def load_study_config(*files: str | Path, defaults: str | Path = Path("config.yaml")) -> dict:
    """config.yaml with the given study files merged over it, checked, defaults filled in: what the workflow sees,
    key order included. Snakemake starts from the --configfile files, updates config.yaml into them (the Snakefile's
    ``configfile:``), then the files over that again (snakemake.workflow.Workflow.configfile): their keys come first,
    so a study's problems, and the rows of its plan, are in the study file's order."""
    override: dict = {}
    for path in files:
        override = merge(override, load_yaml(Path(path)))
    return validate_config(merge(merge(override, load_yaml(Path(defaults))), override))


def settings_list(settings) -> list[dict]:
    return settings if isinstance(settings, list) else [settings]
