"""Config checks: every bad value is refused before any work, with a message that names its field."""
from __future__ import annotations

import subprocess
import sys
import time

import pytest
import yaml
from workflow_helpers import REPO_ROOT, write_config

from adabench.study.config import ConfigError, check_run_arguments, load_study_config, load_yaml, merge, validate_config
from adabench.core.optim import OPTIMIZERS, SGD
from adabench.study.design import Study


def defaults() -> dict:
    return yaml.safe_load((REPO_ROOT / "config.yaml").read_text())


def linreg(**entry) -> dict:
    return {"problems": {"linreg": entry}}


BAD_CONFIGS = {
    "unknown problem": ({"problems": {"lenet_sigmod_fmnist": {}}}, "problems.lenet_sigmod_fmnist", "unknown key"),
    "unknown optimizer": ({"optimizers": ["adagard"]}, "optimizers[0]", "unknown 'adagard'"),
    "unknown optimizer setting": (linreg(settings={"adagard": {"lr": 0.1}}), "problems.linreg.settings.adagard",
                                  "unknown key"),
    "typo in a key": (linreg(optimiser=["adam"]), "problems.linreg.optimiser", "unknown key"),
    "typo in a hyperparameter": (linreg(settings={"adagrad": {"learning_rate": 0.1}}),
                                 "problems.linreg.settings.adagrad.learning_rate", "unknown hyperparameter"),
    "zero lr": (linreg(settings={"adagrad": {"lr": 0}}), "problems.linreg.settings.adagrad.lr", "less than or equal"),
    "negative lr": (linreg(settings={"adagrad": {"lr": -0.1}}), "problems.linreg.settings.adagrad.lr",
                    "less than or equal"),
    "nan lr": (linreg(settings={"adagrad": {"lr": float("nan")}}), "problems.linreg.settings.adagrad.lr",
               "not a finite number"),
    "infinite lr": (linreg(settings={"adagrad": {"lr": float("inf")}}), "problems.linreg.settings.adagrad.lr",
                    "not a finite number"),
    "empty seed list": ({"seeds": []}, "seeds", "should be non-empty"),
    "a string where a bool belongs": ({"problems": {"quadratic": {"settings": {"adagrad": {"eps_inside_sqrt": "false"}}}}},
                                      "problems.quadratic.settings.adagrad.eps_inside_sqrt", "not of type 'boolean'"),
    "YAML's string 1e-8": (linreg(settings={"adagrad": {"eps": "1e-8"}}), "problems.linreg.settings.adagrad.eps",
                           "write it with a decimal point"),
    "negative steps": ({"problems": {"quadratic": {"options": {"steps": -5}}}}, "problems.quadratic.options.steps",
                       "less than the minimum of 1"),
    "absurd epochs": (linreg(options={"epochs": 1e12}), "problems.linreg.options.epochs", "maximum of 100000"),
    "fractional epochs": (linreg(options={"epochs": 2.5}), "problems.linreg.options.epochs", "not of type 'integer'"),
    "a seed past 2^63": ({"seeds": [2**63]}, "seeds[0]", "maximum"),
    "a tuple of the wrong length": (linreg(options={"true_w": [1.0, 2.0, 3.0]}), "problems.linreg.options.true_w",
                                    "is too long"),
    "a beta of 1": ({"problems": {"quadratic": {"settings": {"adam": {"betas": [0.9, 1.0]}}}}},
                    "problems.quadratic.settings.adam.betas[1]", "greater than or equal to the maximum"),
    "a study name that climbs": ({"study": ".."}, "study", "does not match"),
    "a study name with a slash": ({"study": "a/b"}, "study", "does not match"),
    "tuning a problem the study lacks": ({"tuning": {"problems": ["nope"]}}, "tuning.problems[0]", "unknown 'nope'"),
    "a population of none": (linreg(population_size=0), "problems.linreg.population_size", "less than the minimum"),
    "an unknown precision": ({"precision": "fp8"}, "precision", "unknown 'fp8'"),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_config_is_refused_naming_the_field(case):
    override, field, words = BAD_CONFIGS[case]
    with pytest.raises(ConfigError) as raised:
        validate_config(merge(defaults(), override))
    assert raised.value.field == field, str(raised.value)
    assert words in str(raised.value)


def test_the_defaults_come_from_the_schema():
    config = validate_config(defaults())
    assert config["precision"] == "fp32" and config["deterministic"] is False
    assert config["mlflow"] == {"experiment": None, "tracking_uri": None, "timeout_s": 10}
    assert config["problems"]["linreg"]["options"] == {} and config["problems"]["quadratic"]["population_size"] == 64
    assert config["figures"] == {"dpi": 150, "style": "whitegrid"}
    assert Study(config).experiment == "adabench-default"


def test_study_files_hold_only_what_differs():
    quick = load_study_config(REPO_ROOT / "config/quick.yaml", defaults=REPO_ROOT / "config.yaml")
    assert quick["study"] == "quick" and quick["seeds"] == [0, 1]
    # inherited from config.yaml: the settings the quick study does not mention
    assert quick["problems"]["quadratic"]["settings"]["adagrad"] == {"lr": 0.4, "eps": 1e-6, "eps_inside_sqrt": True}
    assert quick["problems"]["linreg"]["options"] == {"epochs": 20}
    assert quick["data"] == validate_config(defaults())["data"]
    assert "seed_reference" not in (REPO_ROOT / "config/quick.yaml").read_text()


def test_the_reference_reports_numbers_live_in_one_file():
    results = yaml.safe_load((REPO_ROOT / "config/reference_results.yaml").read_text())
    printed = [repr(results["quadratic"]["trajectory"][-1][0]), repr(results["linreg_training"]["b_final"])]
    files = subprocess.run(["git", "ls-files", "*.yaml", "*.py"], cwd=REPO_ROOT, capture_output=True, text=True).stdout
    for number in printed:
        assert [name for name in files.split() if number in (REPO_ROOT / name).read_text()] == [
            "config/reference_results.yaml"], number


def test_a_yaml_alias_bomb_is_refused_at_once(tmp_path):
    levels = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]" for i in range(8)]
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(levels) + "\n")  # 10^9 leaves once expanded
    start = time.monotonic()
    with pytest.raises(ConfigError, match="alias bomb"):
        load_yaml(bomb)
    with pytest.raises(ConfigError, match="alias bomb"):
        validate_config(yaml.safe_load(bomb.read_text()))
    assert time.monotonic() - start < 5


@OPTIMIZERS.register("test_named_sgd")
class NamedSGD(SGD):
    """An optimizer with a string hyperparameter, as a plug-in might have: strings reach run directories."""

    def __init__(self, params, lr: float = 0.1, label: str = "plain"):
        super().__init__(params, lr=lr)


@pytest.mark.parametrize("label", ["../escaped", "a/b", "bad\nline"])
def test_a_value_that_would_leave_the_results_tree_is_refused(label):
    with pytest.raises(ConfigError, match="would become part of a path") as raised:
        validate_config(merge(defaults(), linreg(settings={"test_named_sgd": {"label": label}})))
    assert raised.value.field == "problems.linreg.settings.test_named_sgd.label"


@pytest.mark.parametrize("label", ["a,zz=b", "x=y", "[a]"])
def test_a_string_holding_a_separator_of_run_keys_is_refused_naming_its_field(label):
    # label "a,zz=b" would be written lr=0.1,label=a,zz=b: the key of another setting (label "a", zz "b")
    settings = {"test_named_sgd": [{"lr": 0.1}, {"lr": 0.1, "label": label}]}
    with pytest.raises(ConfigError, match="would become part of a path, its run's key: no ',', '='") as raised:
        validate_config(merge(defaults(), linreg(settings=settings)))
    assert raised.value.field == "problems.linreg.settings.test_named_sgd[1].label"
    with pytest.raises(ConfigError, match="its run's key") as raised:  # adabench train --set label=...
        check_run_arguments("linreg", "test_named_sgd", {"lr": 0.1, "label": label}, {}, 0)
    assert raised.value.field == "--set label"


@OPTIMIZERS.register("test_maybe_named_sgd")
class MaybeNamedSGD(SGD):
    """A plug-in whose string hyperparameter may also be null: the string "None" and null are written alike."""

    def __init__(self, params, lr: float = 0.1, label: str | None = "plain"):
        super().__init__(params, lr=lr)


def test_two_settings_with_one_run_key_are_refused_naming_both():
    settings = {"test_maybe_named_sgd": [{"lr": 0.1, "label": None}, {"lr": 0.1, "label": "None"}]}
    config = validate_config(merge(defaults(), linreg(optimizers=["test_maybe_named_sgd"], settings=settings)))
    with pytest.raises(ConfigError) as raised:
        Study(config)  # before, the second was dropped without a word: both are lr=0.1,label=None
    assert raised.value.field == "problems.linreg.settings.test_maybe_named_sgd[1]"
    assert "{'lr': 0.1, 'label': 'None'}" in raised.value.message
    assert "problems.linreg.settings.test_maybe_named_sgd[0] {'lr': 0.1, 'label': None}" in raised.value.message
    assert "/test_maybe_named_sgd/lr=0.1,label=None/seed=" in raised.value.message


def test_bad_config_fails_in_the_cost_planner_too(tmp_path):
    path = write_config(tmp_path, {"tuning": {"lr_grid": {"low": -1.0}}})
    done = subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks/study_cost.py"), str(path)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "config error at tuning.lr_grid.low" in done.stderr


def test_typed_defaults_make_equal_settings_one_run():
    study = Study(validate_config(merge(defaults(), linreg(settings={"adam": {"lr": 1, "eps": 1e-8}}))))
    keys = {spec.key for spec in study.runs("study") if spec.problem == "linreg" and spec.optimizer == "adam"}
    assert keys and all("/adam/lr=1.0/" in key for key in keys)  # lr 1 is 1.0, eps at its default is left out
