"""Tuning budget (Dodge et al.'s expected best validation score after k rates tried) and tuning variance (how often
each rate is chosen when the grid seeds are resampled), their table, figure and place on the results page."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from adabench.analysis import explorer
from adabench.analysis.aggregate import chance_levels
from adabench.analysis.budget import BUDGET_COLUMNS, STABILITY_COLUMNS, budget_table, choice_stability, expected_best
from adabench.analysis.export import typed
from adabench.analysis.figures import tuning_budget
from adabench.analysis.tuning import grid_scores, select


def brute_force(values: list[float], k: int, mode: str) -> float:
    """The best of k draws with replacement, averaged over all N^k equally likely ordered draws."""
    best = max if mode == "max" else min
    draws = list(itertools.product(values, repeat=k))
    return sum(best(draw) for draw in draws) / len(draws)


@pytest.mark.parametrize("values", [[0.3, 0.9, 0.5, 0.7], [0.5, 0.9, 0.5], [2.0, -1.0, 0.25]])
@pytest.mark.parametrize("mode", ["max", "min"])
def test_the_expected_best_is_the_mean_best_over_every_draw_with_replacement(values, mode):
    curve = expected_best(values, mode)
    assert curve == pytest.approx([brute_force(values, k, mode) for k in range(1, len(values) + 1)], rel=1e-12)
    assert curve[0] == pytest.approx(np.mean(values), rel=1e-12)  # one rate: the mean rate
    assert list(curve) == sorted(curve, reverse=mode == "min")  # more rates never do worse
    # with replacement, N draws miss the best rate sometimes: below the best, unless all rates score the same
    assert (curve[-1] < max(values)) if mode == "max" else (curve[-1] > min(values))


def test_a_diverged_rate_never_makes_nan_it_counts_as_the_worst_value_given_or_stays_infinite():
    # without a finite stand-in: every k may draw only the diverged rate, so the expectation is -inf (+inf for min)
    assert list(expected_best([-math.inf, 0.5, 0.8], "max")) == [-math.inf] * 3
    assert list(expected_best([1e-3, math.inf], "min")) == [math.inf] * 2
    # with the floor: exactly as if the diverged rate had scored it
    assert expected_best([-math.inf, 0.5, 0.8], "max", worst=0.1) == pytest.approx(
        [brute_force([0.1, 0.5, 0.8], k, "max") for k in (1, 2, 3)], rel=1e-12)
    assert expected_best([math.inf, 1e-3, 2.0], "min", worst=40.0) == pytest.approx(
        [brute_force([40.0, 1e-3, 2.0], k, "min") for k in (1, 2, 3)], rel=1e-12)
    assert list(expected_best([-math.inf, -math.inf], "max", worst=0.1)) == pytest.approx([0.1, 0.1])
    for bad in ({"scores": [0.5, math.nan]}, {"scores": [0.5, math.inf]}, {"scores": [0.5], "mode": "best"},
                {"scores": [-math.inf, 0.5], "worst": 0.6}, {"scores": [-math.inf, 0.5], "worst": -math.inf}):
        with pytest.raises(ValueError):
            expected_best(**{"mode": "max", **bad})
    assert expected_best([], "max").size == 0


def grid(rows: list[tuple], problem: str = "p", metric: str = "val_acc", mode: str = "max") -> pd.DataFrame:
    """Grid runs as aggregate.gather writes them: (optimizer, lr, seed, score, status)."""
    return pd.DataFrame([
        {"problem": problem, "optimizer": optimizer, "lr": lr, "seed": seed, "status": status, "in_grid": True,
         "selection_metric": metric, "selection_mode": mode, f"final_{metric}": score, "final_test_acc": 0.5}
        for optimizer, lr, seed, score, status in rows
    ])


def wins(stability: pd.DataFrame, optimizer: str) -> dict:
    part = stability[stability.optimizer == optimizer]
    return dict(zip(part.lr.fillna(-1.0), part.wins))


def test_a_rate_that_wins_on_every_seed_is_chosen_in_every_resample():
    runs = grid([("adam", lr, seed, score + 0.01 * seed, "finished")
                 for lr, score in [(0.001, 0.70), (0.01, 0.85), (0.1, 0.60)] for seed in (100, 101, 102)])
    stability = choice_stability(grid_scores(runs))
    assert wins(stability, "adam") == {0.001: 0.0, 0.01: 1.0, 0.1: 0.0}
    assert stability[stability.chosen].lr.tolist() == [0.01]
    assert list(stability.columns) == STABILITY_COLUMNS and set(stability.seeds) == {3}


def test_a_near_tie_splits_the_resamples_and_the_fractions_sum_to_one():
    # seed 100 prefers 0.01, seed 101 prefers 0.1, both seeds together 0.01 (mean 0.7 against 0.65): the exact
    # bootstrap gives 0.01 the draws {100, 100} and {100, 101}, 3/4 of them
    runs = grid([("sgd", 0.01, 100, 0.9, "finished"), ("sgd", 0.01, 101, 0.5, "finished"),
                 ("sgd", 0.1, 100, 0.6, "finished"), ("sgd", 0.1, 101, 0.7, "finished")])
    stability = choice_stability(grid_scores(runs), n_resamples=4000)
    fractions = wins(stability, "sgd")
    assert sum(fractions.values()) == pytest.approx(1.0, abs=1e-12)
    assert fractions[0.01] == pytest.approx(0.75, abs=0.03) and fractions[0.1] == pytest.approx(0.25, abs=0.03)
    assert stability[stability.chosen].lr.tolist() == [0.01]
    # the same seed gives the same table; another seed other resamples
    pd.testing.assert_frame_equal(stability, choice_stability(grid_scores(runs), n_resamples=4000))
    assert not stability.equals(choice_stability(grid_scores(runs), n_resamples=4000, seed=1))


def test_resamples_are_paired_every_rate_sees_the_same_seeds():
    # 0.01 beats 0.1 by 0.01 on each seed, while the seeds differ by far more: paired, 0.01 always wins
    runs = grid([("adam", lr, seed, base - (0.01 if lr == 0.1 else 0.0), "finished")
                 for lr in (0.01, 0.1) for seed, base in zip(range(5), [0.9, 0.3, 0.6, 0.2, 0.8])])
    assert wins(choice_stability(grid_scores(runs)), "adam") == {0.01: 1.0, 0.1: 0.0}


def test_one_optimizers_resamples_do_not_depend_on_the_others_in_the_table():
    rows = [("sgd", 0.01, 100, 0.9, "finished"), ("sgd", 0.01, 101, 0.5, "finished"),
            ("sgd", 0.1, 100, 0.6, "finished"), ("sgd", 0.1, 101, 0.7, "finished")]
    alone = choice_stability(grid_scores(grid(rows)))
    with_others = choice_stability(grid_scores(grid(rows + [("adam", 0.01, 100, 0.5, "finished")])))
    pd.testing.assert_frame_equal(alone, with_others[with_others.optimizer == "sgd"].reset_index(drop=True))


def test_the_choice_from_all_seeds_is_the_selections_with_diverged_seeds_ties_uneven_seeds_and_chance():
    runs = grid([
        # a diverged seed makes 0.1 the worst; 0.01 and 0.001 tie: the smaller lr is chosen
        ("sgd", 0.1, 100, 0.90, "finished"), ("sgd", 0.1, 101, math.nan, "diverged"),
        ("sgd", 0.01, 100, 0.70, "finished"), ("sgd", 0.01, 101, 0.70, "finished"),
        ("sgd", 0.001, 100, 0.70, "finished"), ("sgd", 0.001, 101, 0.70, "finished"),
        # uneven seeds: 0.01 has a third seed
        ("adam", 0.001, 100, 0.80, "finished"), ("adam", 0.001, 101, 0.82, "finished"),
        ("adam", 0.01, 100, 0.84, "finished"), ("adam", 0.01, 101, 0.78, "finished"),
        ("adam", 0.01, 102, 0.86, "finished"),
        # nothing trains: every rate at chance (0.1)
        ("adadelta", 0.01, 100, 0.10, "finished"), ("adadelta", 0.01, 101, 0.11, "finished"),
        ("adadelta", 1.0, 100, 0.098, "finished"), ("adadelta", 1.0, 101, 0.12, "finished"),
    ])
    stability = choice_stability(grid_scores(runs), chance={"p": 0.1})
    chosen = stability[stability.chosen].set_index("optimizer").lr
    selection = select(runs, {"p": 0.1}).set_index("optimizer").lr
    assert chosen.sort_index().equals(selection.sort_index())  # adadelta: nothing (NaN) in both
    assert chosen["sgd"] == 0.001 and math.isnan(chosen["adadelta"])
    assert wins(stability, "adadelta") == {0.01: 0.0, 1.0: 0.0, -1.0: 1.0}  # -1.0: the empty-lr row
    # 0.1 wins the resamples that draw only its good seed (1/4 of them, exactly), never the diverged one
    assert wins(stability, "sgd")[0.1] == pytest.approx(0.25, abs=0.05) and wins(stability, "sgd")[0.01] == 0.0
    adam = stability[stability.optimizer == "adam"].set_index("lr")
    assert adam.seeds.to_dict() == {0.001: 2, 0.01: 3} and adam["mean"][0.01] == pytest.approx(0.8266666666666667)
    assert stability.groupby("optimizer").wins.sum().to_numpy() == pytest.approx(1.0, abs=1e-12)
    # without chance levels, a rate always counts as trained, as in the selection
    no_chance = choice_stability(grid_scores(runs))
    assert no_chance[no_chance.chosen & (no_chance.optimizer == "adadelta")].lr.tolist() == [1.0]  # 0.109 > 0.105
    assert no_chance.lr.notna().all()


def test_chance_levels_come_from_the_problems_declarations():
    problems = {"lenet": {"selection": ["val_acc", "max"], "chance": {"val_acc": 0.1, "test_acc": 0.1}},
                "linreg": {"selection": ["train_mse", "min"]}}
    assert chance_levels(problems) == {"lenet": 0.1}


def study_runs() -> pd.DataFrame:
    """Two problems: a maximised accuracy (a diverged rate on sgd) and a minimised loss; two grid seeds."""
    accuracy = grid([(optimizer, lr, seed, score + 0.002 * (seed - 100), "finished")
                     for optimizer, scores in {"adam": [0.5, 0.8, 0.85, 0.1], "sgd": [0.2, 0.6, 0.7, math.nan]}.items()
                     for lr, score in zip([1e-3, 1e-2, 1e-1, 1.0], scores) for seed in (100, 101)], problem="lenet")
    accuracy.loc[accuracy["final_val_acc"].isna(), "status"] = "diverged"
    loss = grid([(optimizer, lr, seed, score * (1 + 0.1 * (seed - 100)), "finished")
                 for optimizer, scores in {"adam": [1.0, 1e-3, 1e-5], "sgd": [3.0, 0.5, 1e-2]}.items()
                 for lr, score in zip([1e-3, 1e-2, 1e-1], scores) for seed in (100, 101)],
                problem="linreg", metric="train_mse", mode="min")
    return pd.concat([accuracy, loss], ignore_index=True)


def test_the_budget_table_has_a_row_per_k_and_counts_a_diverged_rate_as_the_problems_floor():
    budget, stability = budget_table(study_runs())
    assert list(budget.columns) == BUDGET_COLUMNS
    assert budget.groupby(["problem", "optimizer"]).k.apply(list).to_dict() == {
        ("lenet", "adam"): [1, 2, 3, 4], ("lenet", "sgd"): [1, 2, 3, 4],
        ("linreg", "adam"): [1, 2, 3], ("linreg", "sgd"): [1, 2, 3]}
    sgd = budget[(budget.problem == "lenet") & (budget.optimizer == "sgd")]
    floor = 0.1  # the worst finite score of any lenet grid run: adam's lr 1.0, seed 100
    assert sgd.floor.tolist() == pytest.approx([floor] * 4) and set(sgd.diverged_rates) == {1}
    assert sgd.p_all_diverged.tolist() == pytest.approx([0.25 ** k for k in (1, 2, 3, 4)])
    means = [0.201, 0.601, 0.701, floor]
    assert sgd.expected_best.tolist() == pytest.approx([brute_force(means, k, "max") for k in (1, 2, 3, 4)])
    assert sgd.grid_best.tolist() == pytest.approx([0.701] * 4)
    linreg = budget[(budget.problem == "linreg") & (budget.optimizer == "adam")]
    assert linreg["mode"].iloc[0] == "min" and linreg.p_all_diverged.eq(0).all()
    assert linreg.expected_best.tolist() == pytest.approx(
        [brute_force([1.05, 1.05e-3, 1.05e-5], k, "min") for k in (1, 2, 3)], rel=1e-9)
    assert budget.expected_best.map(math.isfinite).all()
    assert stability.groupby(["problem", "optimizer"]).wins.sum().to_numpy() == pytest.approx(1.0, abs=1e-12)
    # typed runs (load_study: categories) give the same tables
    typed_budget, typed_stability = budget_table(typed(study_runs()))
    pd.testing.assert_frame_equal(typed_budget, budget)
    pd.testing.assert_frame_equal(typed_stability, stability)


def test_the_figure_is_the_same_bytes_when_drawn_again(tmp_path):
    budget, stability = budget_table(study_runs(), chance={"lenet": 0.1})
    problems = {"lenet": {"log_scale": []}, "linreg": {"log_scale": ["train_mse"]}}
    drawn = []
    for attempt in ("first", "second"):
        outputs = [str(tmp_path / f"{attempt}.png"), str(tmp_path / f"{attempt}.pdf")]
        tuning_budget(budget=budget, stability=stability, problems=problems, outputs=outputs, dpi=60)
        drawn.append([(tmp_path / f"{attempt}.{kind}").read_bytes() for kind in ("png", "pdf")])
    assert drawn[0] == drawn[1]
    assert drawn[0][0][:8] == b"\x89PNG\r\n\x1a\n" and drawn[0][1][:5] == b"%PDF-"
    # a study without tuned problems still draws a figure (a note)
    tuning_budget(budget=budget.iloc[:0], stability=stability.iloc[:0], problems={},
                  outputs=[str(tmp_path / "empty.png")], dpi=60)
    assert (tmp_path / "empty.png").stat().st_size > 0


def test_the_results_page_shows_the_tables_and_a_curve_per_optimizer():
    assert ("tuning/tuning_budget.csv" in dict(explorer.TABLES)) and ("tuning/choice_stability.csv"
                                                                        in dict(explorer.TABLES))
    budget, stability = budget_table(study_runs(), chance={"lenet": 0.1})
    figure = explorer.tuning_budget(budget, stability, "lenet", {"log_scale": []})
    assert [trace.meta["optimizer"] for trace in figure.data] == ["adam", "sgd"]
    assert figure.data[0].name.startswith("adam (lr 0.1: in ") and list(figure.data[0].x) == [1, 2, 3, 4]
    assert explorer.tuning_budget(budget, stability, "linreg", {"log_scale": ["train_mse"]}).layout.yaxis.type == "log"
