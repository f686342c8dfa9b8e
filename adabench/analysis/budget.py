"""Tuning budget and tuning variance, from the grid runs already trained (nothing is retrained).

Budget: Dodge et al. 2019 ("Show your work: improved reporting of experimental results", EMNLP), expected
validation performance: how good is the best learning rate found after trying k rates drawn at random from the
grid, k = 1 .. N (N: the rates tried). Each rate counts with its mean validation score over the grid seeds, the
value the tuning protocol (adabench.analysis.tuning.select) ranks it by. An optimizer whose curve climbs late needs
the whole grid; one whose curve is flat from k = 1 is cheap to tune. Dodge et al. read the N rates as a random
sample of the search range; where the search (adabench.study.search) adds rates around the best one, the rates tried
are denser there than a random sample would be, and the curve is optimistic at small k.

Variance: how stable the choice of rate is when the grid seeds are resampled (a bootstrap over seeds): per rate,
the fraction of resamples in which it would have been chosen. With the two grid seeds of a small study the
bootstrap has only three outcomes (both draws the first seed, both the second, one of each), so the fractions
move in steps of 1/4; three or more seeds make them finer.

Diverged runs: a diverged seed scores the worst possible value (-inf where the metric is maximised, +inf where it
is minimised; adabench.analysis.tuning.grid_scores), so a rate with a diverged seed has an infinite mean. For the
expected best, ``budget_table`` counts such a rate as the problem's *floor*: the worst finite grid score of any
run of that problem (every optimizer, rate and seed), for a classifier about chance accuracy. It says how likely
that floor is to matter: ``p_all_diverged``, the probability that every one of the k rates drawn diverged.

Output tables (``budget_table``), written by scripts/tuning_budget.py:

``tuning/tuning_budget.csv``, one row per problem, optimizer and k:
    problem, optimizer, metric, mode ("max" or "min"), rates (N: grid rates of this optimizer), k (1 .. N),
    expected_best (the expected best mean validation score of k rates drawn uniformly with replacement),
    grid_best (the best rate's mean score: what the selection saw, the best of all N), diverged_rates (rates with
    an infinite mean), p_all_diverged ((diverged_rates / N) ** k), floor (the value a diverged rate counts as).

``tuning/choice_stability.csv``, one row per problem, optimizer and grid rate:
    problem, optimizer, lr, metric, mode, seeds (grid seeds this rate has), mean (its mean score over them),
    wins (fraction of the seed resamples in which it is chosen; over an optimizer's rows they sum to 1),
    chosen (True for the rate the tuning protocol chose from all the seeds), resamples. A row with an empty lr
    stands for "no rate trains" (chance levels given: the selection chooses nothing), see choice_stability.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..study.search import trains
from .tuning import grid_scores

BUDGET_COLUMNS = ["problem", "optimizer", "metric", "mode", "rates", "k", "expected_best", "grid_best",
                  "diverged_rates", "p_all_diverged", "floor"]
STABILITY_COLUMNS = ["problem", "optimizer", "lr", "metric", "mode", "seeds", "mean", "wins", "chosen", "resamples"]
RESAMPLES = 1000


def expected_best(scores, mode: str = "max", worst: float | None = None) -> np.ndarray:
    """E[best of k], k = 1 .. N: the expected best of k values drawn uniformly at random, *with replacement*, from
    the N ``scores`` (one per rate tried); the expected maximum for ``mode`` "max", the expected minimum for "min".

    With the values sorted from worst to best, v_(1) .. v_(N) (ascending for "max", descending for "min"), the best
    of k draws is v_(i) or worse with probability (i/N)^k, so (Dodge et al. 2019, eq. 1)

        E[best of k] = sum_i v_(i) [(i/N)^k - ((i-1)/N)^k].

    Why with replacement: it is Dodge et al.'s estimator, and it reads the N rates as a sample of the distribution
    of "the score of a rate drawn at random from the search range", so k random trials are independent draws from
    it, and k may go past N. Its value at k = N is below the grid's best (N draws with
    replacement miss the best rate with probability (1 - 1/N)^N, about 1/e), whereas sampling *without*
    replacement (P[best = v_(i)] = C(i-1, k-1) / C(N, k)) would reach the grid's best exactly at k = N: the gap
    between ``expected_best(...)[-1]`` and the best score is part of what the curve shows, not an error.

    Ties need no care (equal values' terms add up). Infinite values in the worst direction (-inf for "max", +inf
    for "min") stand for diverged rates: they count as ``worst`` where it is given (a finite value no better than
    any finite score, e.g. the problem's worst finite score: ``budget_table``'s floor); without ``worst`` they
    stay infinite and, since every k has probability (d/N)^k > 0 of drawing only the d diverged rates, the
    expectation is that infinity for every k: never NaN (0 * inf is never formed). NaN scores and infinities in
    the best direction are refused (ValueError).
    """
    if mode not in ("max", "min"):
        raise ValueError(f"mode must be 'max' or 'min', not {mode!r}")
    values = np.asarray(scores, dtype=float).ravel()
    if values.size == 0:
        return np.empty(0)
    if np.isnan(values).any():
        raise ValueError("a score is NaN: diverged rates score -inf (max) or +inf (min), see tuning.grid_scores")
    sign = 1.0 if mode == "max" else -1.0
    gains = sign * values  # larger is better
    if np.isposinf(gains).any():
        raise ValueError(f"a score is infinite in the best direction for mode {mode!r}")
    diverged = np.isneginf(gains)
    n, ks = values.size, np.arange(1, values.size + 1)
    if diverged.any():
        if worst is None:
            return np.full(n, sign * -math.inf)
        floor = sign * float(worst)
        if not math.isfinite(floor) or (not diverged.all() and floor > gains[~diverged].min()):
            raise ValueError(f"worst={worst} must be finite and no better than every finite score")
        gains = np.where(diverged, floor, gains)
    ordered = np.sort(gains)  # worst first
    ranks = np.arange(1, n + 1) / n
    weights = ranks[None, :] ** ks[:, None] - (ranks - 1 / n)[None, :] ** ks[:, None]  # (k, i); rows sum to 1
    return sign * (weights @ ordered)


def choice_stability(scores: pd.DataFrame, n_resamples: int = RESAMPLES, seed: int = 0,
                     chance: dict[str, float] | None = None) -> pd.DataFrame:
    """Per problem, optimizer and grid rate: the fraction of seed resamples in which the rate would be chosen.

    ``scores``: tuning.grid_scores (problem, optimizer, lr, seed, selection_metric, selection_mode, score). Per
    problem and optimizer, each resample draws the optimizer's grid seeds with replacement (as many draws as it has
    seeds) and uses the *same* draws for every rate: a seed is one initialisation and data order shared by all the
    rates (paired). A rate's resampled score is its mean over the drawn seeds, counted with their multiplicity;
    the chosen rate is the one with the best mean, ties to the smaller lr, as tuning.select chooses. A rate that
    lacks some seeds (a search not finished evenly) is scored on the drawn seeds it has, and sits out a resample in
    which it has none. An infinite (diverged) seed makes the rate's mean infinite, as in the selection.

    ``chance`` (per problem, the chance level of its selection metric, as tuning.select takes it): as in the
    selection, a resample in which no rate trains (adabench.study.search.trains: every mean at chance, or infinite)
    chooses nothing. Those resamples are counted on an extra row with an empty ``lr`` ("does not train"),
    present where its fraction is above 0 or where the selection itself chooses nothing; so an optimizer's ``wins``
    always sum to 1.

    The generator is numpy's default_rng(seed), made afresh for each problem and optimizer, so one optimizer's
    fractions do not depend on which other optimizers the table holds (optimizers with the same seeds see the same
    resamples). ``chosen`` marks what tuning.select chooses from all the seeds (the empty-lr row where it chooses
    nothing).
    """
    rows = []
    for (problem, optimizer), part in scores.groupby(["problem", "optimizer"], sort=True, observed=True):
        mode, metric = str(part.selection_mode.iloc[0]), str(part.selection_metric.iloc[0])
        level = (chance or {}).get(problem)
        table = part.pivot_table(index="lr", columns="seed", values="score", aggfunc="mean",
                                 observed=True).sort_index()
        values = table.to_numpy(dtype=float)  # (rates, seeds), NaN where a rate lacks a seed
        drawn = np.random.default_rng(seed).integers(0, values.shape[1], size=(n_resamples, values.shape[1]))
        counts = np.zeros((n_resamples, values.shape[1]))  # how often each resample draws each seed
        np.add.at(counts, (np.arange(n_resamples)[:, None], drawn), 1)
        winners = chosen_rates(values, counts, mode, level)  # -1: no rate trains
        wins = np.bincount(winners + 1, minlength=len(table) + 1) / n_resamples
        # the choice from all the seeds, made as tuning.select makes it (pandas' means, the first best lr)
        means = part.groupby("lr").score.mean().reindex(table.index).to_numpy()
        chosen = int(np.argmax(means) if mode == "max" else np.argmin(means))
        if not any(trains(float(mean), mode, level) for mean in means):
            chosen = -1
        present = ~np.isnan(values)
        for index, lr in enumerate(table.index):
            rows.append({"problem": problem, "optimizer": optimizer, "lr": float(lr), "metric": metric, "mode": mode,
                         "seeds": int(present[index].sum()), "mean": float(means[index]),
                         "wins": float(wins[index + 1]), "chosen": index == chosen, "resamples": n_resamples})
        if wins[0] > 0 or chosen == -1:
            rows.append({"problem": problem, "optimizer": optimizer, "lr": math.nan, "metric": metric, "mode": mode,
                         "seeds": 0, "mean": math.nan, "wins": float(wins[0]), "chosen": chosen == -1,
                         "resamples": n_resamples})
    return pd.DataFrame(rows, columns=STABILITY_COLUMNS)


def chosen_rates(values: np.ndarray, counts: np.ndarray, mode: str, chance: float | None = None) -> np.ndarray:
    """For each row of ``counts`` (how often each seed, a column of ``values``, is drawn), the index of the rate (a
    row of ``values``, in ascending lr; NaN where it lacks the seed) with the best mean over the drawn seeds, ties to
    the smaller lr (the first index); -1 where no rate trains (study.search.trains, at the ``chance`` level)."""
    sign = 1.0 if mode == "max" else -1.0
    present = ~np.isnan(values)
    gains = sign * values
    finite = np.where(present & np.isfinite(gains), gains, 0.0)
    diverged = (counts @ (present & np.isneginf(gains)).T.astype(float)) > 0  # (resamples, rates)
    weight = counts @ present.T.astype(float)  # the drawn seeds each rate has, with their multiplicity
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = sign * np.where(diverged, -math.inf, (counts @ finite.T) / weight)  # in the metric's own units
    mean[weight == 0] = np.nan  # a rate with none of the drawn seeds sits out
    trained = np.vectorize(lambda value: trains(float(value), mode, chance), otypes=[bool])(mean)
    # the best mean (np.argmax: the first of equals, the smaller lr); where any rate trains, the best one does
    best = np.argmax(np.where(np.isnan(mean), -math.inf, sign * mean), axis=1)
    return np.where(trained.any(axis=1), best, -1)


def budget_table(runs: pd.DataFrame, n_resamples: int = RESAMPLES, seed: int = 0,
                 chance: dict[str, float] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The expected-best table and the choice-stability table (columns: this module's docstring) of a runs table
    (aggregate.gather's, or tables/runs.csv): only its grid runs are read, and only their validation scores.
    ``chance``: per problem, the chance level of its selection metric (adabench.analysis.aggregate.chance_levels)."""
    scores = grid_scores(runs)
    for column in ("problem", "optimizer", "selection_metric", "selection_mode"):
        scores[column] = scores[column].astype(str)  # categories (load_study) would group unobserved pairs
    rows = []
    for problem, of_problem in scores.groupby("problem", sort=True):
        finite = of_problem.score[np.isfinite(of_problem.score)]
        mode = str(of_problem.selection_mode.iloc[0])
        floor = (finite.min() if mode == "max" else finite.max()) if len(finite) else math.nan
        for optimizer, part in of_problem.groupby("optimizer", sort=True):
            means = part.groupby("lr", sort=True).score.mean()
            n, diverged = len(means), int(np.isinf(means).sum())
            curve = expected_best(means, mode, worst=None if math.isnan(floor) else floor)
            grid_best = means.max() if mode == "max" else means.min()
            for k, value in enumerate(curve, start=1):
                rows.append({"problem": problem, "optimizer": optimizer, "metric": str(part.selection_metric.iloc[0]),
                             "mode": mode, "rates": n, "k": k, "expected_best": float(value),
                             "grid_best": float(grid_best), "diverged_rates": diverged,
                             "p_all_diverged": (diverged / n) ** k, "floor": float(floor)})
    budget = pd.DataFrame(rows, columns=BUDGET_COLUMNS)
    return budget, choice_stability(scores, n_resamples, seed, chance)
