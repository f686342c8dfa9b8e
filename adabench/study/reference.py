"""The reference report (shared/seed/adagrad-study.vi.md): its printed numbers, as runs of this benchmark.

Its numbers live in one file, config/reference_results.yaml (a copy of shared/reference/reference_results.yaml,
which a test keeps equal). This module says which of this benchmark's runs each printed number belongs to:
the report's problem and optimizer under their registry names, and the hyperparameters the report used.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .config import load_yaml

# the report's model and optimizer names -> (problem, optimizer, hyperparameters besides lr)
LENET_PROBLEMS = {"lenet_sigmoid": "lenet_sigmoid_fmnist", "lenet_relu": "lenet_relu_fmnist"}
# the report's from-scratch AdaGrad adds eps 1e-8 after the root; the rest are torch.optim's at their defaults
LENET_OPTIMIZERS = {"adagrad_scratch": ("adagrad", {"eps": 1e-8}), "adam": ("adam", {}),
                    "adagrad_avg": ("adagrad_avg", {}), "rmsprop": ("rmsprop", {})}
# exercise 2: lr 0.4, eps 1e-6 under the root, 20 steps from (2, 1)
QUADRATIC_SETTING = {"lr": 0.4, "eps": 1e-6, "eps_inside_sqrt": True}
# section 4: the from-scratch AdaGrad, lr 0.1, eps 1e-8 after the root
LINREG_SETTING = {"lr": 0.1, "eps": 1e-8}


@dataclass(frozen=True)
class ReferenceRun:
    """One configuration the report ran once, unseeded, and the final numbers it printed for it."""

    problem: str
    optimizer: str
    hyperparameters: dict
    printed: dict = field(default_factory=dict)


def reference_runs(results: dict) -> list[ReferenceRun]:
    """Every printed final number of the report, grouped by the configuration that produced it."""
    runs = []
    for problem in ("quadratic", "quadratic_rotated"):
        if problem in results:
            x1, x2 = results[problem]["trajectory"][-1]
            runs.append(ReferenceRun(problem, "adagrad", QUADRATIC_SETTING,
                                     {"x1": x1, "x2": x2, "loss": results[problem]["loss"][-1]}))
    if "linreg_training" in results:
        training = results["linreg_training"]
        w1, w2 = training["w_final"]
        runs.append(ReferenceRun("linreg", "adagrad", LINREG_SETTING, {"w1": w1, "w2": w2, "b": training["b_final"]}))
    for entry in results.get("fashion_mnist_lenet", []):
        optimizer, extra = LENET_OPTIMIZERS[entry["optimizer"]]
        runs.append(ReferenceRun(LENET_PROBLEMS[entry["model"]], optimizer, {"lr": entry["lr"], **extra}, {
            "test_acc": entry["test_acc_percent"] / 100, "train_loss": entry["train_loss"][-1],
            "train_acc": entry["train_acc_percent"][-1] / 100}))
    return runs


def load_reference(path: str | Path) -> list[ReferenceRun]:
    """The report's runs from its results file (a relative path is from the working directory; the workflow
    points it at its own config/ when it runs elsewhere)."""
    return reference_runs(load_yaml(Path(path)))
