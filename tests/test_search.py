"""The learning-rate search's rounds: widen until the best rate is inside the rates tried, refine to 1/3 decade,
stop at declared limits, and say "does not train" only over the whole range."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from adabench.study.search import (AT_LIMIT, DONE, REFINE, UNTRAINED, WIDEN, Lattice, decide, decide_all, finished,
                                   next_rates)

LATTICE = Lattice(1e-4, 1.0, 7)  # the default study's grid: 1e-4 .. 1 in steps of 2/3 decade
LIMITS = LATTICE.limits(1e-6, 100.0)


def run_search(score, lattice=LATTICE, limits=LIMITS, mode="max", chance=None, rounds=20):
    """The search run to its end on a score function of the learning rate: every round's decision."""
    scores = {index: score(lattice.rate(index)) for index in lattice.grid()}
    decisions = []
    for _ in range(rounds):
        decision = decide(scores, mode, limits, chance)
        decisions.append(decision)
        if not decision.add:
            return scores, decisions
        for index in decision.add:
            assert index not in scores, "a rate is never tried twice"
            scores[index] = score(lattice.rate(index))
    raise AssertionError("the search did not end")


def test_the_lattice_holds_the_grid_its_refinement_and_its_limits():
    assert [LATTICE.rate(index) for index in LATTICE.grid()] == [1e-4, 4.64e-4, 2.15e-3, 0.01, 0.0464, 0.215, 1.0]
    assert [LATTICE.rate(index) for index in (-6, -1, 1, 3, 17, 18)] == [1e-6, 4.64e-5, 2.15e-4, 1e-3, 46.4, 100.0]
    assert LIMITS == (-6, 18)
    assert all(LATTICE.index(LATTICE.rate(index)) == index for index in range(-6, 19))
    with pytest.raises(ValueError, match="not a rate"):
        LATTICE.index(0.02)


def peak(at: float, width: float = 1.0):
    """A validation accuracy that peaks at lr ``at`` and falls off in log lr."""
    return lambda lr: 0.9 - 0.1 * ((math.log10(lr) - math.log10(at)) / width) ** 2


@pytest.mark.parametrize("optimum", [4.64, 21.5, 1e-5, 2.15e-6])
def test_an_optimum_outside_the_grid_is_found_by_widening_at_either_end(optimum):
    scores, decisions = run_search(peak(optimum))
    best = max(scores, key=scores.get)
    assert LATTICE.rate(best) == optimum
    assert decisions[0].action == WIDEN
    assert decisions[-1].action == DONE
    # the choice is flanked by its 1/3-decade neighbours, both tried
    assert best - 1 in scores and best + 1 in scores


def test_an_optimum_inside_the_grid_is_refined_to_a_third_of_a_decade():
    scores, decisions = run_search(peak(0.0215, width=0.5))
    # the grid's best (0.01) is flanked: its neighbours 0.00464 and 0.0215 are added; 0.0215 wins, and its
    # neighbours are grid rates already tried
    assert [decision.action for decision in decisions] == [REFINE, DONE]
    assert LATTICE.rate(max(scores, key=scores.get)) == 0.0215
    assert len(scores) == 7 + 2


def test_diverging_rates_flank_the_best_from_above():
    """The best is the highest rate that trains; the rate beyond it diverged (-inf): widening stops there."""
    scores, decisions = run_search(lambda lr: -math.inf if lr > 3 else 0.8 + 0.05 * math.log10(lr))
    assert LATTICE.rate(max(scores, key=scores.get)) == 2.15
    assert decisions[-1].action == DONE and scores[LATTICE.index(4.64)] == -math.inf


def test_a_choice_at_a_declared_limit_is_reported_as_such():
    limits = LATTICE.limits(1e-4, 4.64)
    scores, decisions = run_search(lambda lr: math.log10(lr), limits=limits)  # better and better upwards
    assert LATTICE.rate(max(scores, key=scores.get)) == 4.64
    assert decisions[-1].action == AT_LIMIT and "highest" in decisions[-1].note
    assert max(scores) == limits[1]


def test_a_problem_on_which_nothing_trains_is_searched_over_the_whole_range_then_declared():
    scores, decisions = run_search(lambda lr: 0.1, chance=0.1)
    assert decisions[-1].action == UNTRAINED and decisions[-1].best is None
    assert min(scores) == LIMITS[0] and max(scores) == LIMITS[1]
    # the same scores without a chance level are a (flat) choice, not "does not train"
    assert run_search(lambda lr: 0.1)[1][-1].action != UNTRAINED


def test_nothing_trains_below_and_the_top_diverges_then_widening_stops_there():
    scores, decisions = run_search(lambda lr: -math.inf if lr > 1 else 0.1, chance=0.1)
    assert decisions[-1].action == UNTRAINED
    assert max(scores) == LATTICE.index(1.0) + 2 and min(scores) == LIMITS[0]


def test_a_minimised_metric_widens_towards_smaller_values():
    scores, decisions = run_search(lambda lr: abs(math.log10(lr) - 1), mode="min")  # best at lr 10
    assert LATTICE.rate(min(scores, key=scores.get)) == 10.0 and decisions[-1].action == DONE


def test_a_round_of_decisions_as_a_table_names_the_next_rates():
    sensitivity = pd.DataFrame([
        {"problem": "p", "optimizer": optimizer, "lr": lr, "mode": "max", "mean": score}
        for optimizer, scores in {"adam": [0.5, 0.7, 0.9], "sgd": [0.5, 0.9, 0.6]}.items()
        for lr, score in zip([0.01, 0.0464, 0.215], scores)])
    table = decide_all(sensitivity, LATTICE, {"adam": LIMITS, "sgd": LIMITS}, {"p": 0.1}, 0)
    assert next_rates(table) == {"adam": [1.0], "sgd": [0.0215, 0.1]}
    assert not finished(table)
    assert list(table.action) == [WIDEN, REFINE]
    done = table.assign(next_lrs=math.nan)
    assert finished(done)
