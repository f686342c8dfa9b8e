"""Verdicts that belong to the optimizers, not to the protocol: what the problems declare of their metrics (bounds,
chance), what became of each run (trained, collapsed, never trained, diverged), how the tables count and rank those,
copies of an optimizer shown once as implementation checks, the defaults protocol, and the share of a gap that
tuning removes. Small hand-made runs tables whose answers are known."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from adabench.analysis.aggregate import (CHANCE_MARGIN, chance_margin, declared_bounds, declared_chance, run_outcome,
                                         run_row, with_outcomes)
from adabench.analysis.protocols import (DOES_NOT_TRAIN, PROTOCOLS, display_protocols, gap_share_table, paired_table,
                                         profile, profile_left_out, protocol_runs, protocol_table,
                                         time_to_target_table)
from adabench.analysis.stats import performance_profile
from adabench.analysis.tables import (comparison_table, display_comparison, display_implementation_checks,
                                      implementation_check_table, reproduction_table)

pytestmark = pytest.mark.filterwarnings("error")

FAST_RESAMPLES = 999
# what problems.json says of a classifier with ten balanced classes, and of a problem that declares nothing
LENET = {"headline": ["test_acc", "max"], "metric_bounds": {"test_acc": [0.0, 1.0], "val_acc": [0.0, 1.0]},
         "chance": {"test_acc": 0.1, "val_acc": 0.1}}
PLAIN = {"headline": ["train_mse", "min"]}
DECLARATIONS = {"p": LENET, "q": PLAIN}


def run(optimizer: str, seed: int, final: float, best: float | None = None, problem: str = "p", setting: str = "lr=0.1",
        status: str = "finished", **roles) -> dict:
    metric, mode = ("test_acc", "max") if problem == "p" else ("train_mse", "min")
    return {"run_key": f"{problem}/{optimizer}/{setting}/{seed}/{sorted(roles)}", "problem": problem,
            "optimizer": optimizer, "setting": setting, "seed": seed,
            "in_study": roles.get("study", False), "in_defaults": roles.get("defaults", False),
            "in_tuned": roles.get("tuned", False), "in_reference": False, "status": status,
            "headline_metric": metric, "headline_mode": mode, "final_headline": final,
            "best_value": final if best is None else best, "best_epoch": 1, "train_time_s": 1.0, "wall_time_s": 1.0}


# --- declarations ---------------------------------------------------------------------------------

def test_classifiers_declare_accuracy_bounds_and_only_a_known_chance_level():
    from adabench.core.problems import PROBLEMS, Problem

    lenet = PROBLEMS.get("lenet_relu_fmnist").declarations()
    assert lenet["metric_bounds"] == {name: [0.0, 1.0] for name in ("test_acc", "train_acc", "val_acc")}
    assert lenet["chance"] == {"test_acc": 0.1, "train_acc": 0.1, "val_acc": 0.1}
    sparse = PROBLEMS.get("sparse_logreg").declarations()
    assert sparse["metric_bounds"]["test_acc"] == [0.0, 1.0]
    assert "chance" not in sparse  # the majority class's share depends on the data seed
    linreg = json.loads(json.dumps(PROBLEMS.get("linreg").declarations()))  # as problems.json holds it
    assert linreg["metric_bounds"]["train_mse"] == [0.0, None] and "chance" not in linreg
    assert declared_bounds(linreg, "train_mse") == (0.0, math.inf)

    class Plain(Problem):  # declares nothing: the declarations it had before bounds and chance existed
        pass

    assert set(Plain.declarations()) == {"unit", "headline", "selection", "curve", "log_scale", "figures"}


def test_declared_values_and_the_margin():
    assert declared_bounds(LENET, "test_acc") == (0.0, 1.0) and declared_bounds(LENET, "train_loss") is None
    assert declared_bounds(None, "test_acc") is None and declared_chance(PLAIN, "train_mse") is None
    assert declared_chance(LENET, "test_acc") == 0.1
    assert chance_margin(LENET, "test_acc") == CHANCE_MARGIN == 0.05
    assert chance_margin({"metric_bounds": {"pct": [0, 100]}}, "pct") == pytest.approx(5.0)  # a share of the range


# --- outcomes -------------------------------------------------------------------------------------

@pytest.mark.parametrize("status, best, final, mode, chance, expected", [
    ("diverged", 0.9, float("nan"), "max", 0.1, "diverged"),
    ("finished", 0.14, 0.12, "max", 0.1, "never trained"),  # 0.04 above chance: within the margin
    ("finished", 0.16, 0.16, "max", 0.1, "trained"),  # 0.06 above: past it
    ("finished", 0.85, 0.10, "max", 0.1, "collapsed"),
    ("finished", 0.85, 0.03, "max", 0.1, "collapsed"),  # fell below chance: collapsed too
    ("finished", 0.85, 0.84, "max", 0.1, "trained"),
    ("finished", None, None, "max", 0.1, "never trained"),  # no finite value at all
    ("finished", 0.10, 0.10, "max", None, "trained"),  # no chance level declared: no verdict beyond the status
    ("diverged", 0.10, 0.10, "max", None, "diverged"),
    ("finished", 2.27, 2.28, "min", 2.30, "never trained"),  # a loss: past chance is below it
    ("finished", 0.50, 2.29, "min", 2.30, "collapsed"),
    ("finished", 0.50, 0.60, "min", 2.30, "trained"),
])
def test_run_outcome(status, best, final, mode, chance, expected):
    assert run_outcome(status, best, final, mode, chance, 0.05) == expected


def summary(status: str, best: float | None, final: float) -> dict:
    return {"run_key": "lenet_relu_fmnist@0123abcd/adam/lr=0.1/0",
            "identity": {"problem": "lenet_relu_fmnist", "options": {}, "precision": "fp32", "optimizer": "adam",
                         "hyperparameters": {"lr": 0.1}, "seed": 0},
            "status": status, "unit": "epoch", "epochs_completed": 2, "epochs_planned": 2,
            "final": {"epoch": 2, "test_acc": final}, "headline": {"metric": "test_acc", "mode": "max"},
            "selection": {"metric": "val_acc", "mode": "max"},
            "best": None if best is None else {"value": best, "epoch": 1}, "best_selection": None,
            "train_time_s": 1.0, "step_time_s": 0.1, "steps": 10, "wall_time_s": 2.0, "population_size": 1,
            "data_digest": "d", "environment": {}}


def test_run_row_puts_the_outcome_beside_the_status():
    row = run_row(summary("finished", 0.8, 0.1), {"study"}, LENET)
    assert row["outcome"] == "collapsed"
    assert list(row).index("outcome") == list(row).index("status") + 1
    assert run_row(summary("finished", 0.8, 0.1), {"study"})["outcome"] == "trained"  # no declarations
    assert run_row(summary("finished", 0.11, 0.1), {"study"}, LENET)["outcome"] == "never trained"
    assert run_row(summary("diverged", None, float("nan")), {"study"}, LENET)["outcome"] == "diverged"


def test_with_outcomes_uses_each_problems_own_declarations():
    runs = pd.DataFrame([run("a", 0, 0.1, best=0.8, study=True), run("a", 1, 0.1, study=True),
                         run("b", 0, 1e-3, problem="q", study=True),
                         run("c", 0, float("nan"), status="diverged", study=True)])
    assert list(with_outcomes(runs, DECLARATIONS).outcome) == ["collapsed", "never trained", "trained", "diverged"]
    assert list(with_outcomes(runs, None).outcome) == ["trained", "trained", "trained", "diverged"]
    without_best = runs.drop(columns="best_value")  # an older table: its final value stands for its best
    assert list(with_outcomes(without_best, DECLARATIONS).outcome)[:2] == ["never trained", "never trained"]


# --- the tables count failures ---------------------------------------------------------------------

def test_comparison_counts_diverged_collapsed_and_never_trained_seeds():
    runs = pd.DataFrame([run("adam", 0, 0.85, study=True), run("adam", 1, 0.10, best=0.8, study=True),
                         run("adam", 2, float("nan"), status="diverged", study=True),
                         run("sgd", 0, 0.10, study=True), run("sgd", 1, 0.11, study=True)])
    table = comparison_table(runs, DECLARATIONS).set_index("optimizer")
    assert table.loc["adam", ["diverged", "collapsed", "never_trained", "seeds"]].tolist() == [1, 1, 0, 3]
    assert table.loc["sgd", ["diverged", "collapsed", "never_trained", "seeds"]].tolist() == [0, 0, 2, 2]
    shown = display_comparison(table.reset_index()).set_index("optimizer")["failed seeds"]
    assert shown["adam"] == "1 diverged, 1 collapsed of 3" and shown["sgd"] == "2 never trained of 2"
    # without declarations only divergence is known
    assert comparison_table(runs).set_index("optimizer").loc["adam", ["diverged", "collapsed"]].tolist() == [1, 0]


def test_tables_clip_the_intervals_to_the_declared_bounds():
    values = [0.1, 0.1, 0.1, 0.1, 0.894]
    runs = pd.DataFrame([run("adam", seed, value, best=0.9, study=True) for seed, value in enumerate(values)])
    assert comparison_table(runs).t_low.iloc[0] < 0  # the test can fail: unclipped, the interval leaves [0, 1]
    table = comparison_table(runs, DECLARATIONS)
    assert table.t_low.iloc[0] == 0.0 and table.t_high.iloc[0] <= 1 and table.boot_low.iloc[0] >= 0
    reproduced = reproduction_table(runs.assign(in_reference=True, final_test_acc=values),
                                    [{"problem": "p", "optimizer": "adam", "setting": "lr=0.1",
                                      "printed": {"test_acc": 0.5}}], DECLARATIONS)
    assert reproduced.t_low.iloc[0] == 0.0
    tuned = runs.assign(in_study=False, in_tuned=True)
    assert protocol_table(tuned, ["p"], DECLARATIONS).t_low.iloc[0] == 0.0


# --- ranks: an optimizer that does not train takes none ---------------------------------------------

def chance_level_runs() -> pd.DataFrame:
    rows = []
    for seed in range(3):
        rows += [run("adam", seed, 0.85 + 0.01 * seed, tuned=True),
                 run("adagrad", seed, 0.80 + 0.01 * seed, tuned=True),
                 # both at chance on every seed: sgd's mean is above sgd_decay's by noise alone
                 run("sgd", seed, 0.102 + 0.001 * seed, tuned=True), run("sgd_decay", seed, 0.098, tuned=True),
                 run("rmsprop", seed, float("nan"), status="diverged", tuned=True)]
    rows += [run("adadelta", 0, 0.10, tuned=True), run("adadelta", 1, float("nan"), status="diverged", tuned=True)]
    return pd.DataFrame(rows)


def test_an_optimizer_whose_seeds_never_trained_takes_no_rank():
    table = protocol_table(chance_level_runs(), ["p"], DECLARATIONS).set_index("optimizer")
    assert table.loc["adam", "rank"] == 1 and table.loc["adagrad", "rank"] == 2
    for untrained in ("sgd", "sgd_decay", "adadelta"):  # adadelta: one never trained, one diverged
        assert table.loc[untrained, "verdict"] == DOES_NOT_TRAIN and pd.isna(table.loc[untrained, "rank"])
    assert table.loc["sgd", "never_trained"] == 3
    # every seed diverged: no mean, ranked last (after the ranked ones, not after the untrained)
    assert table.loc["rmsprop", "rank"] == 3 and table.loc["rmsprop", "verdict"] == ""
    # without a chance level the noise among chance-level means decides the ranks
    ranked = protocol_table(chance_level_runs(), ["p"]).set_index("optimizer")
    assert ranked.loc["sgd", "rank"] == 3 and ranked.loc["sgd_decay", "rank"] == 5


def test_the_display_says_does_not_train_and_counts_failures():
    shown = display_protocols(protocol_table(chance_level_runs(), ["p"], DECLARATIONS)).set_index("optimizer")
    assert shown.loc["sgd", "rank (tuned)"] == DOES_NOT_TRAIN
    assert shown.loc["sgd", "mean ± std (tuned)"].endswith("(3 never trained of 3)")
    assert shown.loc["adadelta", "mean ± std (tuned)"].endswith("(1 diverged, 1 never trained of 2)")
    assert shown.loc["adam", "rank (tuned)"] == "1"
    assert list(shown.index[:3]) == ["adam", "adagrad", "rmsprop"]  # ranked first, best first; untrained last


# --- three protocols ------------------------------------------------------------------------------

def three_protocol_runs() -> pd.DataFrame:
    rows = []
    for seed in range(2):
        rows += [run("adagrad", seed, 0.70 + 0.02 * seed, setting="lr=0.01", study=True),
                 run("adam", seed, 0.80 + 0.02 * seed, setting="lr=0.01", study=True),
                 run("adagrad", seed, 0.60 + 0.02 * seed, setting="lr=0.01,eps=1e-10", defaults=True),
                 run("adam", seed, 0.83 + 0.02 * seed, setting="lr=0.001", defaults=True),
                 run("adagrad", seed, 0.86 + 0.02 * seed, setting="lr=0.1", tuned=True),
                 run("adam", seed, 0.84 + 0.02 * seed, setting="lr=0.001", tuned=True)]
    return pd.DataFrame(rows)


def test_the_defaults_protocol_stands_between_reference_and_tuned():
    assert list(PROTOCOLS) == ["reference protocol", "defaults protocol", "tuned protocol"]
    assert PROTOCOLS["defaults protocol"] == "in_defaults"
    shown = display_protocols(protocol_table(three_protocol_runs(), ["p"], DECLARATIONS))
    assert list(shown.columns) == ["problem", "metric", "optimizer",
                                   "reference protocol", "mean ± std (reference)", "rank (reference)",
                                   "defaults protocol", "mean ± std (defaults)", "rank (defaults)",
                                   "tuned protocol", "mean ± std (tuned)", "95% CI (t)", "rank (tuned)"]
    adagrad = shown.set_index("optimizer").loc["adagrad"]
    assert (adagrad["reference protocol"], adagrad["defaults protocol"], adagrad["tuned protocol"]) == (
        "lr=0.01", "lr=0.01,eps=1e-10", "lr=0.1")
    assert (adagrad["rank (reference)"], adagrad["rank (defaults)"], adagrad["rank (tuned)"]) == ("2", "2", "1")
    assert adagrad["mean ± std (defaults)"] == "0.6100 ± 0.0141"


def test_a_runs_table_without_the_defaults_role_has_no_defaults_protocol():
    older = three_protocol_runs().drop(columns="in_defaults")
    assert set(protocol_runs(older, ["p"]).protocol) == {"reference protocol", "tuned protocol"}
    shown = display_protocols(protocol_table(older, ["p"]))
    assert not [column for column in shown.columns if "defaults" in column]
    assert list(shown.optimizer) == ["adagrad", "adam"]


# --- copies are implementation checks, not competitors ---------------------------------------------

CHECKS = {"torch_adagrad": "adagrad"}


def copy_runs() -> pd.DataFrame:
    rows = []
    for seed in range(4):
        for optimizer, value in (("adagrad", 0.80 + 0.01 * seed), ("torch_adagrad", 0.80 + 0.01 * seed),
                                 ("adam", 0.85 + 0.005 * seed), ("sgd", 0.70 + 0.02 * seed)):
            rows.append(run(optimizer, seed, value, study=True, tuned=True))
    return pd.DataFrame(rows)


def test_a_copy_takes_no_rank_no_holm_family_and_no_profile_curve():
    runs = copy_runs()
    assert "torch_adagrad" not in set(protocol_table(runs, ["p"], DECLARATIONS, CHECKS).optimizer)
    assert "torch_adagrad" not in set(comparison_table(runs, DECLARATIONS, CHECKS).optimizer)
    assert "torch_adagrad" in set(comparison_table(runs, DECLARATIONS).optimizer)  # the test can fail
    paired = paired_table(runs, ["p"], declarations=DECLARATIONS, checks=CHECKS)
    with_copy = paired_table(runs, ["p"], declarations=DECLARATIONS)
    assert set(paired.optimizer_a) == {"adam", "sgd"} and len(with_copy) == 2 * 3
    # the Holm family per problem and protocol has two members, not three: its smallest p-value is doubled, not tripled
    tuned = paired[paired.protocol == "tuned protocol"]
    assert tuned.t_p_holm.min() == pytest.approx(2 * tuned.t_p_value.min()) and tuned.t_p_holm.min() < 0.5
    assert (paired.mde > 0).all()
    curves = pd.DataFrame([{"run_key": key, "epoch": epoch, "test_acc": value * epoch / 2, "time_s": float(epoch)}
                           for key, value in zip(runs.run_key, runs.final_headline) for epoch in (1, 2)])
    times = time_to_target_table(runs, curves, {"p": 0.75}, ["p"], CHECKS)
    assert "torch_adagrad" not in set(times.optimizer)
    assert "torch_adagrad" not in set(profile(time_to_target_table(runs, curves, {"p": 0.75}, ["p"]),
                                              checks=CHECKS).optimizer)


def test_the_profile_leaves_out_an_optimizer_not_run_on_every_problem_and_names_it():
    """An optimizer the study ran on one problem of two (a packaged one on the LeNets alone) would count the other
    as unsolved and rank below an optimizer that ran there and failed; it is left out and named instead. One that
    ran everywhere stays: a problem where it never reached the target, or where no rate of its search trained (no
    tuned row, as sgd_sqrt_decay on the sigmoid LeNet), counts as unsolved."""
    def times(optimizer, problem, epochs, protocol="tuned protocol"):
        return {"problem": problem, "protocol": protocol, "optimizer": optimizer, "label": optimizer,
                "median_epochs": epochs, "median_seconds": 2.0 * epochs}

    table = pd.DataFrame([times("adagrad", "p", 4.0), times("adagrad", "q", 2.0),
                          times("adam", "p", 2.0), times("adam", "q", np.inf),
                          times("sgd", "p", 8.0), times("sgd", "q", np.inf, "reference protocol"),
                          times("prodigy", "p", 1.0), times("prodigy", "p", 1.0, "reference protocol"),
                          times("rprop", "q", 1.0, "reference protocol")])
    # rprop: not in the tuned protocol, so not in its profile; sgd ran on q (no rate trained): it stays
    assert profile_left_out(table) == {"prodigy": ["p"]}
    curves = profile(table, taus=[1.0, 2.0, 4.0]).set_index(["cost", "optimizer", "tau"]).fraction
    assert set(curves.index.get_level_values("optimizer")) == {"adagrad", "adam", "sgd"}
    # p: adam best (2), adagrad at 2x, sgd at 4x; q: adagrad best, adam never reaches the target, sgd has no tuned row
    assert [curves[("epochs", "adagrad", tau)] for tau in (1.0, 2.0, 4.0)] == [0.5, 1.0, 1.0]
    assert [curves[("epochs", "adam", tau)] for tau in (1.0, 2.0, 4.0)] == [0.5, 0.5, 0.5]
    assert [curves[("epochs", "sgd", tau)] for tau in (1.0, 2.0, 4.0)] == [0.0, 0.0, 0.5]
    # without the rule prodigy would win p outright and turn adam's best there into 2x: the test can fail
    tuned = table[table.protocol == "tuned protocol"]
    assert performance_profile(tuned.pivot_table(index="problem", columns="optimizer", values="median_epochs",
                                                 aggfunc="first"), [1.0]).set_index("optimizer").fraction["adam"] == 0
    assert profile_left_out(table, checks={"prodigy": "adagrad"}) == {}  # a copy is no competitor at all
    # the optimizers searched, where given, are the candidates: one that ran everywhere and whose search trained no
    # rate anywhere (no tuned row at all) draws a curve at 0; rprop, run on q alone, is named
    searched = ["adagrad", "adam", "sgd", "prodigy", "rprop", "nadam"]
    nadam = pd.DataFrame([times("nadam", problem, 3.0, "reference protocol") for problem in ("p", "q")])
    with_nadam = pd.concat([table, nadam], ignore_index=True)
    assert profile_left_out(with_nadam, searched=searched) == {"prodigy": ["p"], "rprop": ["q"]}
    curves = profile(with_nadam, taus=[1.0, 100.0], searched=searched).set_index(["cost", "optimizer", "tau"]).fraction
    assert curves[("epochs", "nadam", 100.0)] == 0.0 and curves[("epochs", "adagrad", 100.0)] == 1.0
    assert "nadam" not in set(profile(with_nadam, taus=[1.0]).optimizer)  # without the list: no tuned row, no curve


def test_a_problem_where_only_a_left_out_optimizer_trained_stays_in_the_profiles_count():
    """q: adam and sgd ran there (reference protocol) and no rate of their search trained; prodigy, which the study
    ran on q alone, reached the target. Leaving prodigy out must not drop q: it counts as unsolved for adam and sgd
    (their fraction at any tau is 1/2, not 1)."""
    rows = [{"problem": problem, "protocol": protocol, "optimizer": optimizer, "label": optimizer,
             "median_epochs": 2.0, "median_seconds": 4.0}
            for problem, protocol, optimizer in (("p", "tuned protocol", "adam"), ("p", "tuned protocol", "sgd"),
                                                 ("q", "reference protocol", "adam"),
                                                 ("q", "reference protocol", "sgd"), ("q", "tuned protocol", "prodigy"))]
    table = pd.DataFrame(rows)
    assert profile_left_out(table) == {"prodigy": ["q"]}
    fractions = profile(table, taus=[1.0, 100.0]).fraction
    assert len(fractions) == 2 * 2 * 2 and (fractions == 0.5).all()


def check_run(optimizer: str, seed: int, hyperparameters: dict, test_acc: float, time_s: float, options="o1") -> dict:
    return {"run_key": f"{optimizer}/{hyperparameters}/{seed}/{options}", "problem": "p", "options_id": options,
            "precision": "fp32", "optimizer": optimizer, "seed": seed,
            "hyperparameters": json.dumps(hyperparameters, sort_keys=True), "final_test_acc": test_acc,
            "final_test_loss": 0.5, "final_x1": np.nan, "final_time_s": time_s, "final_step_time_s": time_s / 10,
            "final_headline": test_acc}


def test_implementation_checks_pair_a_copy_with_its_original_on_identical_runs():
    runs = pd.DataFrame([
        check_run("adagrad", 0, {"lr": 0.01}, 0.80, 10.0), check_run("torch_adagrad", 0, {"lr": 0.01}, 0.80, 12.0),
        check_run("adagrad", 1, {"lr": 0.01}, 0.81, 10.0), check_run("torch_adagrad", 1, {"lr": 0.01}, 0.812, 9.0),
        check_run("adagrad", 0, {"lr": 0.1}, 0.85, 10.0), check_run("torch_adagrad", 0, {"lr": 0.1}, 0.85, 10.0),
        # no partner: other hyperparameters, other problem options, another optimizer
        check_run("adagrad", 0, {"eps": 1e-8, "lr": 0.01}, 0.70, 1.0),
        check_run("torch_adagrad", 0, {"lr": 0.01}, 0.60, 1.0, options="o2"),
        check_run("adam", 0, {"lr": 0.01}, 0.30, 1.0),
    ])
    table = implementation_check_table(runs, CHECKS)
    assert len(table) == 1
    row = table.iloc[0]
    assert (row.problem, row["copy"], row.original, row.settings, row.pairs) == ("p", "torch_adagrad", "adagrad", 2, 3)
    assert row.identical == 2  # the measured seconds differ and do not count
    assert row.max_abs_diff == pytest.approx(0.002) and row.largest_in == "final_test_acc"
    assert row.max_rel_diff == pytest.approx(0.002 / 0.812)
    shown = display_implementation_checks(table).iloc[0]
    assert shown["identical final values"] == "2/3 pairs" and shown["largest difference"] == "0.0020"
    assert implementation_check_table(runs, {}).empty
    identical = implementation_check_table(runs[runs.seed == 0], CHECKS).iloc[0]
    assert (identical.pairs, identical.identical, identical.max_abs_diff, identical.largest_in,
            identical.max_rel_diff) == (2, 2, 0.0, "", 0.0)
    missing = runs.copy()
    missing.loc[(missing.optimizer == "torch_adagrad") & (missing.seed == 0), "final_test_loss"] = np.nan
    one_sided = implementation_check_table(missing, CHECKS).iloc[0]  # a value the other lacks: never identical
    assert (one_sided.identical, one_sided.max_abs_diff, one_sided.largest_in) == (0, math.inf, "final_test_loss")


# --- the share of a gap that tuning removes ---------------------------------------------------------

def test_gap_share_table_uses_only_seeds_both_protocols_ran():
    rows = []
    reference = {"adagrad": [0.70, 0.72, 0.71, 0.69], "adam": [0.80, 0.83, 0.80, 0.80]}
    tuned = {"adagrad": [0.86, 0.88, 0.87], "adam": [0.84, 0.86, 0.86]}  # seed 3 not rerun tuned
    for optimizer in reference:
        rows += [run(optimizer, seed, value, study=True) for seed, value in enumerate(reference[optimizer])]
        rows += [run(optimizer, seed, value, tuned=True) for seed, value in enumerate(tuned[optimizer])]
    table = gap_share_table(pd.DataFrame(rows), ["p"], n_resamples=FAST_RESAMPLES)
    row = table.iloc[0]
    reference_gap = np.mean([0.10, 0.11, 0.09])  # seeds 0-2; seed 3's 0.11 would make it 0.1025
    tuned_gap = np.mean([-0.02, -0.02, -0.01])
    assert (row.optimizer, row.reference_optimizer, row.seeds) == ("adam", "adagrad", 3)
    assert row.reference_gap == pytest.approx(reference_gap) and row.tuned_gap == pytest.approx(tuned_gap)
    assert row.share == pytest.approx(1 - tuned_gap / reference_gap)
    assert row.ci_low <= row.share <= row.ci_high
    assert (row.reference_setting, row.tuned_setting) == ("lr=0.1", "lr=0.1")
    # a seed only one optimizer has under the tuned protocol still does not count
    assert gap_share_table(pd.DataFrame(rows + [run("adam", 3, 0.1, tuned=True)]), ["p"],
                           n_resamples=FAST_RESAMPLES).seeds.iloc[0] == 3
    assert gap_share_table(pd.DataFrame(rows), ["elsewhere"]).empty


def test_gap_share_table_leaves_out_copies_and_problems_without_adagrad():
    runs = pd.concat([copy_runs(), pd.DataFrame([run("adam", 0, 0.9, problem="q", study=True, tuned=True)])])
    table = gap_share_table(runs, ["p", "q"], checks=CHECKS, n_resamples=FAST_RESAMPLES)
    assert set(table.optimizer) == {"adam", "sgd"} and set(table.problem) == {"p"}
    # identical settings under both protocols: the gap does not change, tuning removes none of it
    assert table.share.tolist() == [pytest.approx(0.0), pytest.approx(0.0)]
