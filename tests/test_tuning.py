"""The tuning protocol's choice: on validation only, worst case for diverged runs, ties to the smaller lr."""
from __future__ import annotations

import math

import pandas as pd
import pytest
from workflow_helpers import REPO_ROOT

from adabench.analysis.tuning import chosen_lr, lr_sensitivity, select
from adabench.config import load_study_config, merge, validate_config
from adabench.state import tuned_plan
from adabench.study import Study, lr_grid


def grid(rows: list[tuple]) -> pd.DataFrame:
    """Grid runs as aggregate.gather writes them: (optimizer, lr, seed, val_acc, test_acc, status)."""
    return pd.DataFrame([
        {"problem": "p", "optimizer": optimizer, "lr": lr, "seed": seed, "status": status, "in_grid": True,
         "selection_metric": "val_acc", "selection_mode": "max", "final_val_acc": val, "final_test_acc": test}
        for optimizer, lr, seed, val, test, status in rows
    ])


def test_selection_follows_validation_and_ignores_test():
    runs = grid([
        ("adam", 0.01, 0, 0.80, 0.99, "finished"), ("adam", 0.01, 1, 0.82, 0.99, "finished"),
        ("adam", 0.1, 0, 0.85, 0.10, "finished"), ("adam", 0.1, 1, 0.86, 0.10, "finished"),
    ])
    assert chosen_lr(select(runs), "p", "adam") == 0.1
    # planting any test accuracy changes nothing: the choice never reads it
    runs["final_test_acc"] = [0.0, 0.0, 1.0, 1.0][::-1]
    assert chosen_lr(select(runs), "p", "adam") == 0.1


def test_a_diverged_seed_makes_its_grid_point_the_worst_and_ties_go_to_the_smaller_lr():
    runs = grid([
        ("sgd", 0.1, 0, 0.90, 0.9, "finished"), ("sgd", 0.1, 1, math.nan, math.nan, "diverged"),
        ("sgd", 0.01, 0, 0.70, 0.7, "finished"), ("sgd", 0.01, 1, 0.70, 0.7, "finished"),
        ("sgd", 0.001, 0, 0.70, 0.7, "finished"), ("sgd", 0.001, 1, 0.70, 0.7, "finished"),
    ])
    assert chosen_lr(select(runs), "p", "sgd") == 0.001
    table = lr_sensitivity(runs).set_index("lr")
    assert table.loc[0.1, "diverged"] == 1 and table.loc[0.1, "mean"] == -math.inf


def test_a_choice_at_an_end_of_the_grid_is_flagged():
    runs = grid([(optimizer, lr, seed, val, 0.5, "finished")
                 for optimizer, scores in {"adam": [0.9, 0.8, 0.7], "sgd": [0.7, 0.9, 0.8], "rmsprop": [0.7, 0.8, 0.9]}.items()
                 for lr, val in zip([0.001, 0.01, 0.1], scores) for seed in (0, 1)])

    edges = select(runs).set_index("optimizer").grid_edge

    assert edges.to_dict() == {"adam": "lowest", "rmsprop": "highest", "sgd": ""}


def test_minimised_selection_metrics_pick_the_smallest_mean():
    runs = pd.DataFrame([
        {"problem": "linreg", "optimizer": "adam", "lr": lr, "seed": seed, "status": "finished", "in_grid": True,
         "selection_metric": "train_mse", "selection_mode": "min", "final_train_mse": mse}
        for lr, seed, mse in [(0.1, 0, 1e-3), (0.1, 1, 2e-3), (1.0, 0, 1e-5), (1.0, 1, 3e-5)]
    ])
    assert chosen_lr(select(runs), "linreg", "adam") == 1.0


def test_grid_and_tuned_jobs_of_a_study():
    config = load_study_config(defaults=REPO_ROOT / "config.yaml")
    config = validate_config(merge(config, {
        "seeds": [0, 1, 2], "problems": {"linreg": {"population_size": 64}, "lenet_relu_fmnist": {"population_size": 4}},
        "tuning": {"problems": ["linreg", "lenet_relu_fmnist"], "optimizers": ["adam", "sgd"],
                   "lr_grid": {"low": 1e-4, "high": 1.0, "points": 5}, "grid_seeds": [100, 101]}}))
    study = Study(config)
    assert lr_grid(config["tuning"]) == [1e-4, 1e-3, 1e-2, 0.1, 1.0]
    assert len(study.grid_runs()) == 2 * 2 * 5 * 2
    tuned = {job.id: job.tuned_slots for job in study.jobs.values() if job.tuned}
    # a tuned job reruns up to population_size (optimizer, seed) slots: linreg all 6 in one, the LeNet 4 + 2
    assert tuned["linreg-tuned-0"] == (("adam", 0), ("adam", 1), ("adam", 2), ("sgd", 0), ("sgd", 1), ("sgd", 2))
    assert [len(tuned[f"lenet_relu_fmnist-tuned-{i}"]) for i in (0, 1)] == [4, 2]
    selection = pd.DataFrame([{"problem": "linreg", "optimizer": "adam", "lr": 0.1},
                              {"problem": "linreg", "optimizer": "sgd", "lr": 0.01}])
    selection = pd.concat([selection, selection.assign(problem="lenet_relu_fmnist")])
    plan = tuned_plan(study, selection).query("job == 'linreg-tuned-0'")
    assert [(row.optimizer, row.lr, row.seed) for row in plan.itertuples()][::3] == [("adam", 0.1, 0), ("sgd", 0.01, 0)]


def test_the_targets_and_the_reproduced_settings_the_tables_receive():
    """What the table rules get as params (no Study in their scripts): a configured target wins, else the reference
    report's best headline value; the report's runs in its order, with their settings as run keys write them."""
    study = Study(load_study_config(defaults=REPO_ROOT / "config.yaml"))
    # the report's best LeNet test accuracies: sigmoid with Adam (88.99 %), relu with RMSProp (88.07 %)
    assert study.targets() == pytest.approx({"lenet_sigmoid_fmnist": 0.8899, "lenet_relu_fmnist": 0.8807,
                                             "sparse_logreg": 0.80, "linreg": 1.0e-6}, rel=1e-12)
    reference = study.reference_settings()
    assert [(run["problem"], run["optimizer"]) for run in reference][-4:] == [
        ("lenet_sigmoid_fmnist", "adagrad"), ("lenet_sigmoid_fmnist", "adam"), ("lenet_sigmoid_fmnist", "adagrad_avg"),
        ("lenet_relu_fmnist", "rmsprop")]
    assert reference[-4]["setting"] == "lr=0.01,eps=1e-08"
    assert reference[-4]["printed"]["test_acc"] == pytest.approx(0.778)
    assert {run["setting"] for run in reference[-3:]} == {"lr=0.01"}
    untuned = Study(validate_config(merge(load_study_config(defaults=REPO_ROOT / "config.yaml"), {"tuning": None})))
    assert untuned.targets() == {}
