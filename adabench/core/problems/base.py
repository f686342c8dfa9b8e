"""The problem interface: data, model, loss and metrics of one benchmark task, for a population of runs.

A population trains K runs of one problem at once (adabench.core.population). Their parameters are stacked:
``params`` maps each parameter name of ``build_model()`` to a tensor [K, *shape], member k's parameters at
row k. A problem computes the K members' losses on their own batches and their metrics from that stack.

A new problem subclasses ``Problem``, sets the class attributes and writes ``build_model``, ``loss`` and
``evaluate_member`` for one member; the base class runs them member by member. The built-in problems also
override ``batch_losses`` and ``evaluate`` with one vectorised computation for all members, which the tests
prove equal to the member-by-member one.
"""
from __future__ import annotations

import functools

import torch
from torch import nn
from torch.func import functional_call

from ..data import tensors_digest  # noqa: F401  (the problems' data digests)
from ..arguments import NON_NEGATIVE, SEED_RANGE, Argument, Bound, constructor_arguments, refuse_unknown
from ..registry import Registry

PROBLEMS: Registry["Problem"] = Registry("problem")

# Ranges of the options the problems share; a class adds or overrides them in ``bounds``.
OPTION_BOUNDS: dict[str, Bound] = {
    "epochs": Bound(1, 100_000),
    "steps": Bound(1, 1_000_000),
    "batch_size": Bound(1, 1_000_000),
    "data_seed": SEED_RANGE,
    "split_seed": SEED_RANGE,
    "noise": NON_NEGATIVE,
}

Params = dict[str, torch.Tensor]


class Problem:
    """A benchmark task. Subclasses set the class attributes and implement the methods.

    ``unit`` names the row index of the records ("epoch", or "step" for full-batch problems).
    ``headline`` is the metric the comparison tables report, ``selection`` the one a tuning protocol
    may choose on (never a test metric), each as (column, "max" | "min").
    ``curve`` is the metric the learning-curve figure shows; ``log_scale`` the metrics read on a log axis.
    ``figures`` names the problem-specific figure kinds that apply (adabench.analysis.figures), beyond the
    ones every problem gets (learning curves, final metric, effective step sizes).
    ``train_size`` is the number of training samples a shuffled epoch visits in batches of ``batch_size``;
    ``None`` for a full-batch problem, whose every unit is one step on all of its data.
    ``holdout_options`` are the options that make the problem hold out the split its ``selection`` metric is
    measured on: the tuning grid's runs get them (a study may override them with ``grid_options``); every other
    run trains on all of the training data, as the reference report did.
    ``data_digest`` (set by ``__init__``) is the sha256 of the data the problem trains and evaluates on, by
    content (``tensors_digest``): runs record it, so that runs trained on different data are never mixed.
    ``metric_bounds`` are the ranges its metrics cannot leave ({metric: (low, high)}, e.g. an accuracy's (0, 1), a
    squared error's (0, None): None is no bound on that side): the tables clip confidence intervals to them.
    ``chance`` is the value a metric takes when the model learned nothing ({metric: value}, e.g. 0.1 for the
    accuracy of ten balanced classes), declared only where it is known before any data is drawn: the tables call a
    run that stays at it "never trained", one that falls back to it "collapsed" (adabench.analysis.aggregate).
    Both concern metrics, unlike ``bounds``, the ranges of the problem's options.
    """

    unit = "epoch"
    headline: tuple[str, str] = ("train_loss", "min")
    selection: tuple[str, str] = ("train_loss", "min")
    curve: str | None = None  # default: the headline metric
    log_scale: frozenset[str] = frozenset()
    figures: tuple[str, ...] = ()
    records_initial_state = False  # the full-batch problems also record the point before the first step
    bounds: dict[str, Bound] = {}
    metric_bounds: dict[str, tuple[float | None, float | None]] = {}
    chance: dict[str, float] = {}
    train_size: int | None = None
    batch_size: int | None = None
    holdout_options: dict = {}
    data_digest: str = ""
    # class attributes a problem-specific figure reads (e.g. the quadratics' ``hessian``), declared with the rest
    figure_declarations: tuple[str, ...] = ()

    def __init__(self, device: torch.device, epochs: int):
        self.device = device
        self.epochs = int(epochs)
        self._template: nn.Module | None = None

    @classmethod
    def curve_metric(cls) -> str:
        return cls.curve or cls.headline[0]

    @classmethod
    def declarations(cls) -> dict:
        """What the analysis reads of the problem, as plain data: written beside a study's plan
        (``problems.json``), so that its tables, figures and results page need neither torch nor this class.
        ``metric_bounds`` and ``chance`` appear only where the problem declares some: a problem that declares
        none keeps the declarations it had before they existed (a changed problems.json makes the plan stale)."""
        declared = {"unit": cls.unit, "headline": list(cls.headline), "selection": list(cls.selection),
                    "curve": cls.curve_metric(), "log_scale": sorted(cls.log_scale), "figures": list(cls.figures),
                    **{name: getattr(cls, name) for name in cls.figure_declarations}}
        if cls.metric_bounds:
            declared["metric_bounds"] = {metric: [None if bound is None else float(bound) for bound in pair]
                                         for metric, pair in sorted(cls.metric_bounds.items())}
        if cls.chance:
            declared["chance"] = {metric: float(value) for metric, value in sorted(cls.chance.items())}
        return declared

    def build_model(self) -> nn.Module:
        """One member's freshly initialised model; called right after the member's seed is set."""
        raise NotImplementedError

    def members_per_pass(self, device: torch.device) -> int | None:
        """How many members one forward pass should take at most on ``device``; None: all of them."""
        return None

    # --- one member at a time: what a new problem writes -------------------------------------------------
    def loss(self, model, indices: torch.Tensor | None) -> torch.Tensor | tuple[torch.Tensor, dict]:
        """One member's mean training loss on the samples ``indices`` (None: the full batch), optionally
        with per-sample train metrics summed over the batch ({name: 0-d tensor}), e.g. correct predictions."""
        raise NotImplementedError

    @torch.no_grad()
    def evaluate_member(self, model) -> dict:
        """Metrics of one member's current model that need no gradients ({name: float or 0-d tensor})."""
        return {}

    # --- all members at once: the vectorised path the built-in problems override ---------------------------
    def batch_losses(self, params: Params, indices: torch.Tensor | None) -> tuple[torch.Tensor, dict]:
        """Per member: the mean training loss of its batch, [K], and per-sample train metrics summed over it.

        ``indices`` is [K, B] (row k: member k's batch), or None for a full-batch step.
        """
        losses, sums = [], {}
        for k in range(members(params)):
            result = self.loss(self.member_model(params, k), None if indices is None else indices[k])
            loss, extra = result if isinstance(result, tuple) else (result, {})
            losses.append(loss)
            for name, value in extra.items():
                sums.setdefault(name, []).append(torch.as_tensor(value, device=loss.device))
        return torch.stack(losses), {name: torch.stack(values) for name, values in sums.items()}

    @torch.no_grad()
    def evaluate(self, params: Params) -> dict[str, torch.Tensor]:
        """Per member metrics, {name: [K]}."""
        rows = [self.evaluate_member(self.member_model(params, k)) for k in range(members(params))]
        return {name: torch.stack([torch.as_tensor(row[name], dtype=torch.float64).cpu() for row in rows])
                for name in rows[0]} if rows else {}

    def member_model(self, params: Params, k: int):
        """Member k as a callable model: ``build_model()``'s module run on row k of the stacked parameters."""
        if self._template is None:
            with torch.random.fork_rng(devices=[]):  # the template's own initialisation draws nothing that matters
                self._template = self.build_model()
        row = {name: value[k] for name, value in params.items()}
        return lambda *inputs: functional_call(self._template, row, inputs)


def members(params: Params) -> int:
    return next(iter(params.values())).shape[0]


# a name stays registered to one class for the life of the process (the registry refuses a second one), and
# inspecting a constructor is most of what building a study's plan costs at every Snakemake start
@functools.cache
def problem_arguments(name: str) -> dict[str, Argument]:
    """The options a problem accepts from the config: default, type and range (shared: never modify it)."""
    cls = PROBLEMS.get(name)
    return constructor_arguments(cls, skip=("device",), bounds={**OPTION_BOUNDS, **cls.bounds})


def make_problem(name: str, options: dict, device: torch.device) -> Problem:
    refuse_unknown("problem", name, "option", options, problem_arguments(name))
    return PROBLEMS.get(name)(device=device, **options)


def stacked_classification_metrics(logits_of, inputs: torch.Tensor, labels: torch.Tensor, chunk: int,
                                   prefix: str) -> dict[str, torch.Tensor]:
    """Mean cross-entropy and accuracy of K classifiers over one resident dataset, in chunks.

    ``logits_of(inputs)`` gives [K, n, classes] for a chunk of shared inputs. Per member results, [K], float64.
    """
    total_loss = correct = None
    for start in range(0, len(labels), chunk):
        logits = logits_of(inputs[start:start + chunk]).float()
        target = labels[start:start + chunk]
        k, n, classes = logits.shape
        losses = nn.functional.cross_entropy(logits.reshape(k * n, classes), target.repeat(k), reduction="none")
        batch_loss = losses.reshape(k, n).double().sum(dim=1)
        batch_correct = (logits.argmax(dim=2) == target).sum(dim=1)
        total_loss = batch_loss if total_loss is None else total_loss + batch_loss
        correct = batch_correct if correct is None else correct + batch_correct
    n = len(labels)
    return {f"{prefix}_loss": (total_loss / n).cpu(), f"{prefix}_acc": (correct.double() / n).cpu()}
