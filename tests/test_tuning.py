"""The tuning protocol's choice: on validation only, worst case for diverged runs, ties to the smaller lr."""
from __future__ import annotations

import math

import pandas as pd
import pytest
from workflow_helpers import REPO_ROOT

from adabench.analysis.tuning import lr_sensitivity, select
from adabench.study.config import load_study_config, merge, validate_config
from adabench.study.state import chosen_rates, tuned_plan
from adabench.study.cost import tuning_estimate
from adabench.study.design import Study, lr_grid


def chosen_lr(selection: pd.DataFrame, problem: str, optimizer: str) -> float:
    return chosen_rates(selection)[(problem, optimizer)]


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


def test_a_failed_seed_scores_and_counts_as_a_diverged_one():
    """A seed whose optimizer raised ("failed") ended early like a diverged one: worst score even with a value from
    its last complete epoch, and counted in lr_sensitivity's ``diverged`` column, which says where the worst
    scores come from."""
    runs = grid([
        ("sgd", 0.1, 0, 0.90, 0.9, "finished"), ("sgd", 0.1, 1, 0.95, 0.95, "failed"),
        ("sgd", 0.1, 2, math.nan, math.nan, "diverged"),
        ("sgd", 0.01, 0, 0.70, 0.7, "finished"), ("sgd", 0.01, 1, 0.70, 0.7, "finished"),
        ("sgd", 0.01, 2, 0.70, 0.7, "finished"),
    ])
    assert chosen_lr(select(runs), "p", "sgd") == 0.01
    table = lr_sensitivity(runs).set_index("lr")
    assert table.loc[0.1, "diverged"] == 2 and table.loc[0.1, "low"] == -math.inf and table.loc[0.1, "high"] == 0.9
    assert table.loc[0.01, "diverged"] == 0


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


def test_nothing_is_chosen_where_no_rate_trains():
    runs = grid([("sgd", lr, seed, 0.1 + 0.001 * seed, 0.1, "finished") for lr in (0.01, 0.1, 1.0) for seed in (0, 1)])
    selection = select(runs, {"p": 0.1}).iloc[0]
    assert not selection.trains and math.isnan(selection.lr) and selection.grid_edge == ""
    assert chosen_rates(select(runs, {"p": 0.1})) == {}
    # without a chance level the same scores choose by noise: a rate is chosen
    assert select(runs).iloc[0].trains


def test_ties_are_counted():
    runs = pd.DataFrame([
        {"problem": "linreg", "optimizer": "sgd", "lr": lr, "seed": seed, "status": "finished", "in_grid": True,
         "selection_metric": "train_mse", "selection_mode": "min", "final_train_mse": mse}
        for lr, mse in [(0.01, 1e-3), (0.1, 0.0), (1.0, 0.0)] for seed in (0, 1)])
    row = select(runs).iloc[0]
    assert row.lr == 0.1 and row.ties == 2


def test_grid_and_tuned_jobs_of_a_study():
    config = load_study_config(defaults=REPO_ROOT / "config.yaml")
    config = validate_config(merge(config, {
        "seeds": [0, 1, 2], "problems": {"linreg": {"population_size": 64, "seeds": [0, 1, 2]},
                                         "lenet_relu_fmnist": {"population_size": 4, "seeds": [0, 1, 2]}},
        "tuning": {"problems": ["linreg", "lenet_relu_fmnist"], "optimizers": ["adam", "sgd"],
                   "lr_grid": {"low": 1e-4, "high": 1.0, "points": 5}, "grid_seeds": [100, 101]}}))
    study = Study(config)
    assert lr_grid(config["tuning"]) == [1e-4, 1e-3, 1e-2, 0.1, 1.0]
    assert len(study.grid_runs()) == 2 * 2 * 5 * 2
    chosen = {(problem, "adam"): 1.0 for problem in ("linreg", "lenet_relu_fmnist")}
    chosen |= {(problem, "sgd"): 0.1 for problem in ("linreg", "lenet_relu_fmnist")}
    tuned = {job.id: job for job in study.tuned_jobs(chosen)}
    # tuned jobs hold up to population_size reruns: linreg all 6 in one, the LeNet 4 + 2
    assert [(spec.optimizer, spec.hyperparameters["lr"], spec.seed) for spec in tuned["linreg-tuned-0"].runs] == [
        ("adam", 1.0, 0), ("adam", 1.0, 1), ("adam", 1.0, 2), ("sgd", 0.1, 0), ("sgd", 0.1, 1), ("sgd", 0.1, 2)]
    assert [len(tuned[f"lenet_relu_fmnist-tuned-{i}"].runs) for i in (0, 1)] == [4, 2]
    plan = tuned_plan(study, chosen).query("problem == 'linreg'")
    assert [(row.optimizer, row.lr, row.seed) for row in plan.itertuples()][::3] == [("adam", 1.0, 0), ("sgd", 0.1, 0)]
    # a search round's jobs: the rates the round before added, every grid seed, in populations
    round_jobs = study.round_jobs("lenet_relu_fmnist", 2, {"adam": [0.0316], "sgd": [3.16, 0.316]})
    assert [job.id for job in round_jobs] == ["lenet_relu_fmnist-search2-0", "lenet_relu_fmnist-search2-1"]
    assert sorted((spec.optimizer, spec.hyperparameters["lr"], spec.seed) for job in round_jobs for spec in job.runs) \
        == sorted((optimizer, lr, seed) for optimizer, lr in [("adam", 0.0316), ("sgd", 3.16), ("sgd", 0.316)]
                  for seed in (100, 101))


def test_an_optimizer_that_runs_on_some_tuned_problems_is_searched_there_alone():
    """tuning.optimizers meets each problem's own list: an optimizer added to the LeNets only (as a packaged one is
    in the default study) gets grid runs, a search estimate and tuned reruns there, and none on linreg, whose
    other protocols do not run it."""
    config = load_study_config(defaults=REPO_ROOT / "config.yaml")
    config = validate_config(merge(config, {
        "seeds": [0, 1], "optimizers": ["adam", "sgd"],
        "problems": {"lenet_relu_fmnist": {"optimizers": ["adam", "sgd", "adadelta"], "seeds": [0, 1]}},
        "defaults_protocol": None,
        "tuning": {"problems": ["linreg", "lenet_relu_fmnist"], "optimizers": ["adam", "sgd", "adadelta"],
                   "lr_grid": {"low": 1e-4, "high": 1.0, "points": 5}, "grid_seeds": [100, 101, 102]}}))
    study = Study(config)
    assert study.tuned_optimizers("linreg") == ["adam", "sgd"]
    assert study.tuned_optimizers("lenet_relu_fmnist") == ["adam", "sgd", "adadelta"]
    searched = {(spec.problem, spec.optimizer) for spec in study.grid_runs()}
    assert searched == {("linreg", "adam"), ("linreg", "sgd"), ("lenet_relu_fmnist", "adam"),
                        ("lenet_relu_fmnist", "sgd"), ("lenet_relu_fmnist", "adadelta")}
    estimate = pd.DataFrame(tuning_estimate(study))
    runs = estimate.groupby(["stage", "problem"]).runs.sum().to_dict()
    assert runs == {("search", "linreg"): 2 * 2 * 3, ("search", "lenet_relu_fmnist"): 2 * 3 * 3,
                    ("tuned", "linreg"): 2 * 2, ("tuned", "lenet_relu_fmnist"): 3 * 2}


def test_a_tuned_setting_differs_from_the_configured_one_in_its_learning_rate_alone():
    """AdaGrad's configured LeNet setting has the reference report's eps=1e-8: its search and tuned runs keep it."""
    study = Study(load_study_config(defaults=REPO_ROOT / "config.yaml"))
    grid_adagrad = {spec.setting for spec in study.grid_runs() if spec.problem == "lenet_relu_fmnist"
                    and spec.optimizer == "adagrad"}
    assert "lr=0.01,eps=1e-08" in grid_adagrad and all(setting.endswith(",eps=1e-08") for setting in grid_adagrad)
    assert study.tuned_spec("lenet_relu_fmnist", "adagrad", 0.0464, 0).setting == "lr=0.0464,eps=1e-08"
    assert study.tuned_spec("lenet_relu_fmnist", "adam", 0.0464, 0).setting == "lr=0.0464"


def test_the_defaults_protocol_reuses_the_runs_of_other_protocols():
    """An optimizer at its own defaults: a run equal to a configured one (rmsprop's and adagrad_avg's defaults are the
    report's settings, Prodigy's default rate its recommended 1.0) is one run with both roles, trained once; the
    others are runs of their own. A packaged optimizer's defaults are its constructor's."""
    study = Study(load_study_config(defaults=REPO_ROOT / "config.yaml"))
    defaults = [spec for spec in study.runs("defaults") if spec.problem == "lenet_sigmoid_fmnist"]
    assert len(defaults) == 11 * 10
    settings = {spec.optimizer: spec.setting for spec in defaults}
    assert settings == {"adagrad": "lr=0.01", "adagrad_avg": "lr=0.01", "torch_adagrad": "lr=0.01", "adam": "lr=0.001",
                        "rmsprop": "lr=0.01", "adadelta": "lr=1.0", "sgd": "lr=0.001", "sgd_sqrt_decay": "lr=0.1",
                        "prodigyopt:Prodigy": "lr=1.0", "schedulefree:AdamWScheduleFree": "lr=0.0025",
                        "lion_pytorch:Lion": "lr=0.0001"}
    shared = {spec.optimizer for spec in defaults if "study" in study.roles(spec)}
    assert shared == {"adagrad_avg", "torch_adagrad", "rmsprop", "prodigyopt:Prodigy"}
    # every run is in one job only
    keys = [spec.key for job in study.jobs.values() for spec in job.runs]
    assert len(keys) == len(set(keys))
    # a tuned rerun equal to a defaults run is that run: no tuned job trains it
    tuned = study.tuned_jobs({("lenet_sigmoid_fmnist", "adadelta"): 1.0})
    assert tuned == []


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
