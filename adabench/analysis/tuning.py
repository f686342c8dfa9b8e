"""The tuning protocol: choose each optimizer's learning rate on the validation split, never on test.

Each rate the search tried (adabench.study.search) is scored by the final value of the problem's selection metric
(validation accuracy for the classifiers, the training objective for the problems that have no held-out data),
averaged over the grid seeds; a seed that diverged or failed scores as the worst possible value. Where no rate
trains (every mean at chance level) nothing is chosen: the optimizer "does not train" there, and is not ranked by
noise.
"""
from __future__ import annotations

import math

import pandas as pd

from ..core.records import ENDED_EARLY
from ..study.search import trains

SENSITIVITY_KEYS = ["problem", "optimizer", "lr"]


def grid_scores(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per grid run with its ``score``: the final selection metric, worst-case if it diverged or failed
    (its optimizer raised: a rate that cannot be trained)."""
    grid = runs[runs.in_grid].copy()
    grid["score"] = [
        row[f"final_{row.selection_metric}"] if f"final_{row.selection_metric}" in row else math.nan
        for _, row in grid.iterrows()
    ]
    worst = grid.selection_mode.map({"max": -math.inf, "min": math.inf})
    unusable = grid.score.isna() | grid.status.isin(ENDED_EARLY)
    grid.loc[unusable, "score"] = worst[unusable]
    # in seed order: a mean of floats depends on the order it adds them in, and the search's rounds, the choice and
    # the tables read the same runs in different orders
    return grid[["problem", "optimizer", "lr", "seed", "status", "selection_metric", "selection_mode", "score"]
                ].sort_values(["problem", "optimizer", "lr", "seed"], kind="stable", ignore_index=True)


def lr_sensitivity(runs: pd.DataFrame) -> pd.DataFrame:
    """Per problem, optimizer and grid learning rate: the score's mean and spread over the grid seeds, and how many
    seeds ended early (``diverged``: diverged or failed, both scored as the worst value by grid_scores)."""
    scores = grid_scores(runs)
    table = scores.groupby(SENSITIVITY_KEYS, sort=True).agg(
        metric=("selection_metric", "first"), mode=("selection_mode", "first"), mean=("score", "mean"),
        low=("score", "min"), high=("score", "max"), seeds=("seed", "nunique"),
        # a failed seed (its optimizer raised) is scored as a diverged one: counted with them, or the worst values
        # in ``low``/``mean`` would have no count that says where they came from
        diverged=("status", lambda s: int(s.isin(ENDED_EARLY).sum())),
    ).reset_index()
    return table


SELECTION_COLUMNS = ["problem", "optimizer", "lr", "metric", "mode", "validation_score", "grid_points", "grid_seeds",
                     "grid_edge", "ties", "trains"]


def select(runs: pd.DataFrame, chance: dict[str, float] | None = None) -> pd.DataFrame:
    """Per problem and optimizer, the learning rate with the best mean validation score (ties go to the smaller
    learning rate: ``ties`` counts the rates that share the best score, 1 when it is unique). ``grid_edge`` is
    "lowest" or "highest" when that is an end of the rates tried, where a better learning rate may lie outside them
    (the search ends there only at a declared limit), and empty otherwise. ``chance``: per problem, the chance
    level of its selection metric; where no rate's mean is above it, ``trains`` is False and ``lr`` is empty."""
    table = lr_sensitivity(runs)
    chosen = []
    for (problem, optimizer), part in table.groupby(["problem", "optimizer"], sort=True):
        ranked = part.sort_values("lr")
        mode = ranked["mode"].iloc[0]
        best = ranked["mean"].idxmax() if mode == "max" else ranked["mean"].idxmin()
        row = ranked.loc[best]
        level = (chance or {}).get(problem)
        trained = any(trains(mean, mode, level) for mean in ranked["mean"])
        chosen.append({"problem": problem, "optimizer": optimizer, "lr": row.lr if trained else math.nan,
                       "metric": row.metric, "mode": mode, "validation_score": row["mean"],
                       "grid_points": len(ranked), "grid_seeds": int(ranked.seeds.min()),
                       "grid_edge": grid_edge(row.lr, ranked.lr) if trained else "",
                       "ties": int((ranked["mean"] == row["mean"]).sum()), "trains": trained})
    return pd.DataFrame(chosen, columns=SELECTION_COLUMNS)


def grid_edge(lr: float, grid: pd.Series) -> str:
    if len(grid) < 2:
        return ""
    return "lowest" if lr == grid.min() else "highest" if lr == grid.max() else ""


