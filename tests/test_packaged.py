"""Packaged optimizers by reference (module:Class): read from their constructors, refused before any job naming
the field, written into run keys and identities with their package's version; the registry's runs unchanged."""
from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest
import torch
import yaml
from workflow_helpers import REPO_ROOT

from adabench.core import packaged
from adabench.study.config import (ConfigError, check_run_arguments, load_study_config, merge, schema_with_registries,
                                   validate_config)
from adabench.core.optim import packaged_optimizer
from adabench.core.spec import RunSpec
from adabench.study.design import Study
from adabench.workflow.tracking import run_params


def defaults() -> dict:
    return yaml.safe_load((REPO_ROOT / "config.yaml").read_text())


def nadam(setting) -> dict:
    return {"problems": {"linreg": {"settings": {"torch.optim:NAdam": setting}}}}


class NeedsHessian(torch.optim.Optimizer):
    """A second-order optimizer as a package would write one: its step reads a Hessian estimate that only
    backward(create_graph=True) makes possible."""

    def __init__(self, params, lr: float = 0.1):
        super().__init__(params, {"lr": lr})

    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad.grad_fn is None:
                    raise RuntimeError("the gradient has no grad_fn: call backward(create_graph=True)")


class NoRate(torch.optim.Optimizer):
    def __init__(self, params, momentum: float = 0.9):
        super().__init__(params, {"momentum": momentum})


MUON = {"optimizer": "torch.optim:Muon", "fallback": {"optimizer": "adam", "settings": {"lr": 0.001}}}
BAD = {
    "a package that is not installed": ({"optimizers": ["nosuchpkg:Opt"]}, "optimizers[0]", "cannot import"),
    "a class that is not an optimizer": ({"optimizers": ["torch.nn:Linear"]}, "optimizers[0]",
                                         "not a torch.optim.Optimizer subclass"),
    "a module, not a class": ({"optimizers": ["torch.optim:lr_scheduler"]}, "optimizers[0]", "not a torch.optim"),
    "a name the module lacks": ({"tuning": {"optimizers": ["torch.optim:Nadam"]}}, "tuning.optimizers[0]",
                                "has no 'Nadam'"),
    "a nested class": ({"optimizers": ["torch.optim:NAdam.Inner"]}, "optimizers[0]", "module.path:ClassName"),
    "an unknown hyperparameter": (nadam({"learning_rate": 0.1}),
                                  "problems.linreg.settings.torch.optim:NAdam.learning_rate",
                                  "unknown hyperparameter 'learning_rate'"),
    "a mistyped hyperparameter": (nadam({"momentum_decay": "x"}),
                                  "problems.linreg.settings.torch.optim:NAdam.momentum_decay", "not of type 'number'"),
    "a value the constructor refuses": (nadam({"betas": [0.9, 1.5]}), "problems.linreg.settings.torch.optim:NAdam.betas",
                                        "torch.optim:NAdam refuses [0.9, 1.5] (ValueError: Invalid beta parameter"),
    "one refused value of a list of settings": (nadam([{"lr": 0.01}, {"lr": -1.0}]),
                                                "problems.linreg.settings.torch.optim:NAdam[1].lr", "refuses -1.0"),
    "a mapping for an untyped argument": ({"problems": {"linreg": {"settings": {"prodigyopt:Prodigy": {
        "beta3": {"a": 1}}}}}}, "problems.linreg.settings.prodigyopt:Prodigy.beta3", "is not of type"),
    "a required argument": ({"optimizers": ["pytorch_optimizer:SAM"]}, "optimizers[0]",
                            "requires ['base_optimizer'] with no default"),
    "a second-order optimizer": ({"optimizers": ["test_packaged:NeedsHessian"]}, "optimizers[0]",
                                 "needs second-order information"),
    "a packaged second-order optimizer": ({"checks": {"pytorch_optimizer:AdaHessian": "adam"}},
                                          "checks.pytorch_optimizer:AdaHessian", "needs second-order information"),
    "an optimizer without a learning rate": ({"optimizers": ["test_packaged:NoRate"]}, "optimizers[0]",
                                             "takes no 'lr'"),
    "a 2-D-only optimizer on other tensors": ({"problems": {"linreg": {"optimizers": ["torch.optim:Muon"]}}},
                                              "problems.linreg.optimizers[0]", "Muon only supports 2D parameters"),
    "an alias that shadows a registry optimizer": ({"packaged": {"adam": {"optimizer": "torch.optim:Muon"}}},
                                                   "packaged.adam", "an optimizer of the registry"),
    "a Muon alias without a fallback": ({"packaged": {"muon": {"optimizer": "torch.optim:Muon"}}},
                                        "packaged.muon.optimizer", "needs a fallback for the others"),
    "an unknown fallback": ({"packaged": {"muon": MUON | {"fallback": {"optimizer": "adamm"}}}},
                            "packaged.muon.fallback.optimizer", "unknown 'adamm'"),
    "a fallback that is not installed": ({"packaged": {"muon": MUON | {"fallback": {"optimizer": "nosuchpkg:Opt"}}}},
                                         "packaged.muon.fallback.optimizer", "cannot import 'nosuchpkg'"),
    "a fallback setting out of range": ({"packaged": {"muon": MUON | {"fallback": {"optimizer": "adam",
                                                                                   "settings": {"lr": -1}}}}},
                                        "packaged.muon.fallback.settings.lr", "less than or equal to the minimum"),
    "a study naming an alias it does not define": ({"optimizers": ["muon_undefined"]}, "optimizers[0]",
                                                   "unknown 'muon_undefined'"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_reference_is_refused_before_any_job_naming_the_field(case):
    if "pytorch_optimizer" in str(BAD[case][0]):
        pytest.importorskip("pytorch_optimizer")
    override, field, words = BAD[case]
    with pytest.raises(ConfigError) as raised:
        validate_config(merge(defaults(), override))
    assert raised.value.field == field, str(raised.value)
    assert words in str(raised.value)


def test_a_study_file_names_references_in_block_and_flow_style_quoted_or_not(tmp_path):
    mine = tmp_path / "mine.yaml"
    mine.write_text("optimizers:\n  - adagrad\n  - torch.optim:NAdam\n  - 'torch.optim:RAdam'\n"
                    "problems:\n  linreg:\n    settings:\n      torch.optim:NAdam: {lr: 0.01, betas: [0.9, 0.99]}\n"
                    "      \"torch.optim:RAdam\": {lr: 0.02}\n"
                    "tuning: {optimizers: [adagrad, torch.optim:NAdam]}\n")
    config = load_study_config(mine)
    assert config["optimizers"] == ["adagrad", "torch.optim:NAdam", "torch.optim:RAdam"]
    keys = {spec.key for spec in Study(config).runs() if spec.problem == "linreg"}
    options = next(iter(keys)).split("@")[1].split("/")[0]
    assert f"linreg@{options}/torch.optim.NAdam/lr=0.01,betas=[0.9,0.99]/seed=0" in keys
    assert f"linreg@{options}/torch.optim.RAdam/lr=0.02/seed=0" in keys


def test_hyperparameters_come_from_the_constructor_typed_by_annotation_or_default():
    prodigy = packaged.resolve("prodigyopt:Prodigy")  # no annotations at all
    assert prodigy.arguments["lr"].default == 1.0 and prodigy.arguments["lr"].source == "default"
    assert prodigy.arguments["betas"].schema["prefixItems"] == [{"type": "number"}] * 2
    assert prodigy.arguments["beta3"].source == "untyped"
    # weight_decay=0: an int default of a package that means a number takes 0.01 and keeps 0 as given
    assert prodigy.arguments["weight_decay"].schema == {"anyOf": [{"type": "integer"}, {"type": "number"}]}
    nadam = packaged.resolve("torch.optim:NAdam")
    assert nadam.arguments["momentum_decay"].source == "annotation" and not nadam.needs_closure
    assert packaged.resolve("torch.optim:LBFGS").needs_closure
    assert packaged.resolve("schedulefree:AdamWScheduleFree").has_modes
    assert not packaged.resolve("torch.optim:NAdam").draws_random
    # a list where the constructor's default is a tuple reaches it as a tuple
    built = nadam.build([torch.zeros(2, requires_grad=True)], {"betas": [0.8, 0.9]})
    assert built.param_groups[0]["betas"] == (0.8, 0.9)


def test_a_run_names_its_package_and_version_and_a_registry_run_reads_as_before():
    spec = RunSpec("linreg", "prodigyopt:Prodigy", {"weight_decay": 0.01}, 0)
    from importlib import metadata

    version = metadata.version("prodigyopt")
    assert spec.package == {"reference": "prodigyopt:Prodigy", "distribution": "prodigyopt", "version": version}
    assert spec.identity()["package"] == spec.package
    assert "/prodigyopt.Prodigy/lr=1.0,weight_decay=0.01/seed=0" in spec.key and ":" not in spec.key
    assert RunSpec.from_dict(spec.to_dict()) == spec
    # a job trains what the plan named: a package given with the spec is kept, not read again from the install
    older = {**spec.package, "version": "0.0.1"}
    assert RunSpec.from_dict({**spec.to_dict(), "package": older}).identity()["package"] == older
    params = run_params(spec.key, spec.identity(), {"device": "cpu"})
    assert params["package.version"] == version and params["package.distribution"] == "prodigyopt"
    # torch's local label (+cu130, +cpu) is not part of the version: the two wheels compute alike
    assert "+" not in RunSpec("linreg", "torch.optim:NAdam", {}, 0).package["version"]
    registry = RunSpec("linreg", "adam", {}, 0)
    assert registry.package is None and "package" not in registry.to_dict()
    registry_params = run_params(registry.key, registry.identity(), {"device": "cpu"})
    assert "package" not in registry.identity() and not any(k.startswith("package.") for k in registry_params)


def test_the_registry_runs_keep_their_keys_and_the_schema_its_names():
    """Nothing of the published study moves: its plan's keys are what the config gives today."""
    plan = pd.read_csv(REPO_ROOT / "results/default/plan.csv", keep_default_na=False)
    config = load_study_config(defaults=REPO_ROOT / "config.yaml")
    assert {spec.key for spec in Study(config).runs()} == set(plan.key)
    schema = schema_with_registries()
    assert not any(":" in name for name in schema["properties"]["optimizers"]["items"]["enum"])


def test_adabench_train_checks_a_reference_and_its_setting_naming_the_flag():
    with pytest.raises(ConfigError) as raised:
        check_run_arguments("linreg", "nosuchpkg:Opt", {}, {}, 0)
    assert raised.value.field == "--optimizer" and "cannot import" in raised.value.message
    with pytest.raises(ConfigError) as raised:
        check_run_arguments("linreg", "torch.optim:NAdam", {"betas": [0.9, 1.5]}, {}, 0)
    assert raised.value.field == "--set betas" and "refuses" in raised.value.message
    with pytest.raises(ConfigError) as raised:
        check_run_arguments("linreg", "adagard", {}, {}, 0)
    assert raised.value.field == "--optimizer" and "unknown optimizer 'adagard'" in raised.value.message


def test_adabench_list_shows_how_a_reference_was_read():
    shown = subprocess.run([sys.executable, "-m", "adabench", "list", "prodigyopt:Prodigy"], capture_output=True,
                           text=True, timeout=120, check=True).stdout
    assert shown.splitlines()[0].startswith("optimizer prodigyopt:Prodigy  (prodigyopt ")
    assert any(line.split()[:3] == ["betas", "[number,", "number]"] and "type from its default" in line
               for line in shown.splitlines()), shown
    assert "untyped: its constructor checks it" in shown and "effective step sizes: not reported" in shown
    assert "Using decoupled weight decay" not in shown  # Prodigy's constructor prints; not into the listing
    refused = subprocess.run([sys.executable, "-m", "adabench", "list", "nosuchpkg:Opt"], capture_output=True,
                             text=True, timeout=120)
    assert refused.returncode != 0 and "nosuchpkg:Opt: cannot import 'nosuchpkg'" in refused.stderr


def test_a_job_refuses_a_packaged_optimizer_installed_at_another_version_than_its_plan_names():
    from adabench.workflow.steps import refuse_other_packages

    spec = RunSpec("linreg", "prodigyopt:Prodigy", {}, 0)
    refuse_other_packages([spec, RunSpec("linreg", "adam", {}, 0)])  # as planned: trains
    planned = RunSpec.from_dict({**spec.to_dict(), "package": {**spec.package, "version": "0.0.1"}})
    with pytest.raises(SystemExit) as refused:
        refuse_other_packages([planned])
    assert f"the plan names prodigyopt:Prodigy from prodigyopt 0.0.1, this machine has prodigyopt " \
           f"{spec.package['version']}" in str(refused.value)


def test_an_alias_pairs_a_matrix_optimizer_with_its_fallback_in_the_runs_identity():
    """Muon takes matrices only: a `packaged` alias names the optimizer of the other tensors. The alias is the
    run's optimizer name and key; its identity names both optimizers, the fallback's setting and dimensions."""
    config = validate_config(merge(defaults(), {"packaged": {"muon": MUON},
                                                "problems": {"linreg": {"optimizers": ["adam", "muon"],
                                                                        "settings": {"muon": {"lr": 0.02}}}}}))
    specs = {spec.key: spec for spec in Study(config).runs() if spec.optimizer == "muon"}
    (spec,) = [spec for key, spec in specs.items() if key.endswith("/muon/lr=0.02/seed=0")]
    assert spec.package["reference"] == "torch.optim:Muon" and spec.package["fallback"] == {
        "optimizer": "adam", "hyperparameters": {"lr": 0.001}, "main_ndim": [2]}
    split = packaged_optimizer("muon").build(packaged.dummy_parameters(), {"lr": 0.02})
    assert isinstance(split, packaged.SplitOptimizer) and set(split.state_dict()) == {"main", "fallback"}
    assert [len(group["params"]) for group in split.param_groups] == [1, 2]  # the matrix; the bias and the kernel
