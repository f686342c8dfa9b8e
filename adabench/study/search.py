"""The tuned protocol's learning-rate search: rounds that widen the rates tried until the best is inside them, then
refine around it, every rate scored by its mean over the grid seeds on the validation split.

The rates live on a log lattice: the configured grid (``tuning.lr_grid``: ``points`` rates from ``low`` to
``high``, the 2/3-decade grid of the default study) is every second point of it, so the refinement's 1/3-decade
rates reuse the grid's runs. Rates are rounded to 3 significant digits, as run keys show them.

After each round, per (problem, optimizer), from every rate tried so far (:func:`decide`):
- **widen**: the best mean score is at an end of the rates tried (and a worse or diverged rate does not flank it
  there): add the next rate beyond that end, one grid step (two lattice points) out, clipped to the limits;
- **refine**: the best is flanked: add its lattice neighbours (1/3 decade on either side) not tried yet;
- **done**: the best has both neighbours tried (or a limit on a side: "at limit");
- **does not train**: no rate trains (every mean at chance level) and there is nowhere left to widen to, i.e.
  both ends at a limit, or a diverged end above. While nothing trains, both ends widen (above, only while the
  highest rate does not diverge): a verdict of "does not train" is only given over the whole declared range.
The limits: the study's ``tuning.lr_limits`` and the optimizer's own valid range of ``lr``. Light: no torch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

# How far past its declared chance level a metric must get to count as learned, as a share of the metric's declared
# range (an accuracy in [0, 1]: 0.05, five points above chance), or in the metric's units where it declares no finite
# range: what a search's rate (its mean score) and a run's outcome (adabench.analysis.aggregate) are judged by. Above
# noise: a LeNet at chance on Fashion-MNIST's balanced test set scores 0.1 give or take the binomial SD, 0.003 on
# 10,000 images (0.0095 on the quick study's 1,000). Below learning: a trained LeNet scores 0.75-0.9. (The chance
# levels the search reads are of accuracies in [0, 1].)
CHANCE_MARGIN = 0.05

# actions of a round's decision; only the first two add rates
WIDEN, REFINE, DONE, AT_LIMIT, UNTRAINED = "widen", "refine", "done", "at limit", "does not train"


@dataclass(frozen=True)
class Lattice:
    """The log lattice of learning rates: the configured grid is its even points (index 0 is ``low``)."""

    low: float
    high: float
    points: int
    divisions: int = 2  # lattice points per grid step: 2 halves the grid's log step (2/3 decade -> 1/3)

    @classmethod
    def of(cls, tuning: dict) -> "Lattice":
        grid = tuning["lr_grid"]
        return cls(float(grid["low"]), float(grid["high"]), int(grid["points"]))

    @property
    def step(self) -> float:
        """The lattice's step in decades."""
        return (math.log10(self.high) - math.log10(self.low)) / (self.points - 1) / self.divisions

    def rate(self, index: int) -> float:
        return float(f"{10 ** (math.log10(self.low) + index * self.step):.3g}")

    def index(self, lr: float) -> int:
        """The lattice index of a rate of the lattice (rounded as :meth:`rate` rounds)."""
        index = round((math.log10(lr) - math.log10(self.low)) / self.step)
        if not math.isclose(self.rate(index), lr, rel_tol=1e-9):
            raise ValueError(f"lr {lr} is not a rate of the search's lattice (low {self.low}, step "
                             f"{self.step:.4g} decades)")
        return index

    def grid(self) -> list[int]:
        """The configured grid's indices: the first round's rates."""
        return list(range(0, (self.points - 1) * self.divisions + 1, self.divisions))

    def limits(self, low: float, high: float) -> tuple[int, int]:
        """The lattice indices of the lowest and highest rates inside [low, high], as rates are written (rounded:
        a limit of 4.64 admits the rate 4.64)."""
        lowest = round((math.log10(low) - math.log10(self.low)) / self.step)
        lowest += 1 if self.rate(lowest) < low else -1 if self.rate(lowest - 1) >= low else 0
        highest = round((math.log10(high) - math.log10(self.low)) / self.step)
        highest += -1 if self.rate(highest) > high else 1 if self.rate(highest + 1) <= high else 0
        return lowest, highest


@dataclass(frozen=True)
class Decision:
    action: str
    add: tuple[int, ...] = ()  # lattice indices to try next
    best: int | None = None  # the best rate's index so far (None: nothing trains)
    note: str = ""


def trains(mean: float, mode: str, chance: float | None) -> bool:
    """Whether a rate's mean score is above chance (always, where the metric has no chance level)."""
    if chance is None:
        return math.isfinite(mean)
    return math.isfinite(mean) and (mean > chance + CHANCE_MARGIN if mode == "max" else mean < chance - CHANCE_MARGIN)


def best_index(scores: dict[int, float], mode: str) -> int:
    """The best mean score's index; a tie goes to the smaller learning rate (as adabench.analysis.tuning.select)."""
    sign = -1 if mode == "max" else 1
    return min(scores, key=lambda index: (sign * scores[index], index))


def decide(scores: dict[int, float], mode: str, limits: tuple[int, int], chance: float | None = None) -> Decision:
    """The next step of the search from the mean score of every lattice index tried so far (a diverged seed makes
    its rate's mean the worst value, -inf for "max"). ``limits``: the lowest and highest indices allowed."""
    if not scores:
        raise ValueError("no rate tried yet")
    lowest, highest = limits
    tried = sorted(scores)
    low_end, high_end = tried[0], tried[-1]
    worst = -math.inf if mode == "max" else math.inf
    step = 2  # one grid step out when widening (the lattice halves the grid's step)
    if not any(trains(scores[index], mode, chance) for index in tried):
        add = []
        if low_end > lowest:
            add.append(max(low_end - step, lowest))
        if high_end < highest and scores[high_end] != worst:
            add.append(min(high_end + step, highest))
        if add:
            return Decision(WIDEN, tuple(add), None, "no rate trains yet: both ends widened")
        return Decision(UNTRAINED, (), None, "no rate trains over the whole range searched")
    best = best_index(scores, mode)
    if best == low_end and best > lowest:
        return Decision(WIDEN, (max(best - step, lowest),), best, "best at the lowest rate tried")
    if best == high_end and best < highest:
        return Decision(WIDEN, (min(best + step, highest),), best, "best at the highest rate tried")
    neighbours = tuple(index for index in (best - 1, best + 1) if lowest <= index <= highest and index not in scores)
    if neighbours:
        return Decision(REFINE, neighbours, best, "best flanked: its 1/3-decade neighbours added")
    if best in (lowest, highest):
        return Decision(AT_LIMIT, (), best, f"best at the {'lowest' if best == lowest else 'highest'} rate allowed")
    return Decision(DONE, (), best, "best flanked by its 1/3-decade neighbours")


def decide_all(sensitivity: pd.DataFrame, lattice: Lattice, limits: dict[str, tuple[int, int]],
               chance: dict[str, float | None], round_: int) -> pd.DataFrame:
    """One round's decisions for every (problem, optimizer) of ``sensitivity`` (adabench.analysis.tuning's
    lr_sensitivity over every rate tried so far): per optimizer its best rate so far, the action, and the rates to
    try next (``next_lrs``, ";"-joined). ``limits`` and ``chance`` are per optimizer and per problem."""
    rows = []
    for (problem, optimizer), part in sensitivity.groupby(["problem", "optimizer"], sort=True):
        mode = part["mode"].iloc[0]
        scores = {lattice.index(row.lr): float(row["mean"]) for _, row in part.iterrows()}
        decision = decide(scores, mode, limits[optimizer], chance.get(problem))
        best = decision.best
        rows.append({"round": round_, "problem": problem, "optimizer": optimizer, "rates_tried": len(scores),
                     "lowest_tried": lattice.rate(min(scores)), "highest_tried": lattice.rate(max(scores)),
                     "best_lr": math.nan if best is None else lattice.rate(best),
                     "best_score": math.nan if best is None else scores[best],
                     "action": decision.action,
                     "next_lrs": ";".join(repr(lattice.rate(index)) for index in decision.add),
                     "note": decision.note})
    return pd.DataFrame(rows, columns=ROUND_COLUMNS)


ROUND_COLUMNS = ["round", "problem", "optimizer", "rates_tried", "lowest_tried", "highest_tried", "best_lr",
                 "best_score", "action", "next_lrs", "note"]


def next_rates(decisions: pd.DataFrame) -> dict[str, list[float]]:
    """Optimizer -> the rates a round's decisions add (empty when its search has ended)."""
    return {row.optimizer: [float(lr) for lr in str(row.next_lrs).split(";") if lr and lr != "nan"]
            for row in decisions.itertuples()}


def finished(decisions: pd.DataFrame) -> bool:
    """Whether a problem's search has ended: no optimizer adds a rate."""
    return not any(next_rates(decisions).values())
