"""Optimizers: AdaGrad from scratch, its variants, and torch.optim's own, under one registry.

Every entry is a ``torch.optim.Optimizer`` subclass (param groups, ``state_dict``), and every entry
can say what step size it applies to each coordinate right now, so runs can log how AdaGrad's
per-coordinate rates decay next to the single global rate of SGD.

``elementwise`` says that an update treats every coordinate on its own (no norms or other reductions over
a tensor). Such an optimizer may run on the parameters of several runs stacked along a new first dimension
and still make each run's own update: that is how a population trains its members (adabench.core.population).
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
from typing import Iterable

import torch

from .packaged import ALIASES, Fallback, Packaged, ReferenceError, is_reference, probe, read_class, resolve
from .arguments import (NON_NEGATIVE, POSITIVE, UNIT_OPEN, Argument, Bound, canonical_value, constructor_arguments,
                        refuse_unknown, same_value)
from .registry import Registry

OPTIMIZERS: Registry[torch.optim.Optimizer] = Registry("optimizer")

# Ranges of the hyperparameters the registry's optimizers share; a class adds or overrides them in ``bounds``.
HYPERPARAMETER_BOUNDS: dict[str, Bound] = {
    "lr": POSITIVE,
    "eps": NON_NEGATIVE,
    "weight_decay": NON_NEGATIVE,
    "lr_decay": NON_NEGATIVE,
    "initial_accumulator_value": NON_NEGATIVE,
    "momentum": UNIT_OPEN,
    "dampening": Bound(0, 1),
    "alpha": Bound(0, 1),
    "rho": Bound(0, 1),
    "betas": UNIT_OPEN,
    "c": POSITIVE,
}


class StepSizeReporting:
    """Mixin: ``effective_step_sizes(members)`` gives each member's per-coordinate step of the last update.

    ``elementwise`` is True for every entry of the registry; a new optimizer whose update reduces over a
    tensor (a norm, a trust ratio) sets it to False and is then never stacked across runs.
    """

    elementwise = True
    bounds: dict[str, Bound] = {}

    def effective_step_sizes(self, members: int = 1) -> torch.Tensor | None:
        """[members, coordinates]: parameters are stacked along their first dimension, one row per member.
        A step the optimizer reports as one rate for a whole tensor is repeated for every member."""
        parts = []
        for group in self.param_groups:
            for p in group["params"]:
                state = self.state.get(p)
                if state:
                    steps = self._coordinate_steps(group, state)
                    rows = steps.reshape(members, -1) if steps.shape == p.shape else steps.reshape(1, -1).expand(members, -1)
                    parts.append(rows.to("cpu", torch.float64))
        if not parts:
            return None
        return torch.cat(parts, dim=1)

    def _coordinate_steps(self, group: dict, state: dict) -> torch.Tensor:
        raise NotImplementedError


def check_hyperparameters(cls: type, values: dict) -> None:
    """Refuse a hyperparameter out of its range, as torch.optim's constructors do (ValueError naming it): the
    ranges the config's schema is built from (HYPERPARAMETER_BOUNDS, and the class's own ``bounds``)."""
    bounds = {**HYPERPARAMETER_BOUNDS, **getattr(cls, "bounds", {})}
    for name, value in values.items():
        if name in bounds and not bounds[name].admits(value):
            raise ValueError(f"Invalid {name} value: {value!r} (the range is {bounds[name].describe()})")


def step_size_summaries(optimizer: torch.optim.Optimizer, members: int = 1) -> list[dict[str, float]]:
    """Per member: min / median / max over coordinates of the effective step size, or {} before the first step."""
    sizes = optimizer.effective_step_sizes(members)
    if sizes is None or sizes.numel() == 0:
        return [{} for _ in range(members)]
    low, median, high = sizes.min(dim=1).values, sizes.median(dim=1).values, sizes.max(dim=1).values
    return [{"eff_lr_min": low[k].item(), "eff_lr_median": median[k].item(), "eff_lr_max": high[k].item()}
            for k in range(members)]


def step_size_summary(optimizer: torch.optim.Optimizer) -> dict[str, float]:
    """The summary of an optimizer over one run's parameters."""
    return step_size_summaries(optimizer, 1)[0]


def _step_count(state: dict) -> float:
    step = state["step"]
    return float(step.item() if torch.is_tensor(step) else step)


# --- The functional core: the from-scratch optimizers' math as functions of tensors and numbers (as torch.optim's
# _single_tensor_adagrad). The classes below keep the state and call these, for the update and for the step sizes
# they report alike: a reported step size is the one the update applied, by construction. The operations are
# torch.optim.Adagrad's, in its order, so that adagrad agrees with it bit for bit.
DENOMINATORS = ("outside", "inside", "averaged")


def adagrad_rate(lr: float, lr_decay: float, step: float) -> float:
    """AdaGrad's rate at its update number ``step`` (1 for the first), decayed as torch.optim.Adagrad decays it."""
    return lr / (1 + (step - 1) * lr_decay)


def adagrad_denominator(state_sum: torch.Tensor, step: float, eps: float, form: str) -> torch.Tensor:
    """The per-coordinate denominator of the sum of squared gradients ``state_sum`` after ``step`` updates: sqrt(s)
    + eps ("outside": torch's), sqrt(s + eps) ("inside": the report's quadratic exercise), or sqrt(s/t + eps)
    ("averaged": the report's s/t variant). A new tensor: the state is never changed."""
    if form == "outside":
        return state_sum.sqrt().add_(eps)
    if form == "inside":
        return state_sum.add(eps).sqrt_()
    if form == "averaged":
        return state_sum.div(step).add_(eps).sqrt_()
    raise ValueError(f"unknown denominator {form!r}: one of {DENOMINATORS}")


def adagrad_update(param: torch.Tensor, grad: torch.Tensor, state_sum: torch.Tensor, step: float, *, lr: float,
                   lr_decay: float, eps: float, weight_decay: float, form: str) -> None:
    """One AdaGrad update of ``param`` in place, ``step`` its number (1 for the first): s += g*g; p -= rate * g /
    denominator(s)."""
    if weight_decay != 0:
        grad = grad.add(param, alpha=weight_decay)
    state_sum.addcmul_(grad, grad, value=1)
    param.addcdiv_(grad, adagrad_denominator(state_sum, step, eps, form), value=-adagrad_rate(lr, lr_decay, step))


def adagrad_step_sizes(state_sum: torch.Tensor, step: float, *, lr: float, lr_decay: float, eps: float,
                       form: str) -> torch.Tensor:
    """The per-coordinate step size of AdaGrad's update number ``step``: rate / denominator(s)."""
    return adagrad_rate(lr, lr_decay, step) / adagrad_denominator(state_sum, step, eps, form)


def sqrt_decay_rate(lr: float, c: float, updates_made: float) -> float:
    """SGD's one global rate after ``updates_made`` updates: lr / sqrt(t + c)."""
    return lr / math.sqrt(updates_made + c)


class CoordinateWiseOptimizer(StepSizeReporting, torch.optim.Optimizer):
    """The step() of torch.optim: the closure, then ``_update`` for every parameter that has a gradient.

    A subclass says what a parameter's state starts as (``_init_state``, called before its first update, so a
    loaded ``state_dict`` is kept) and how it is updated (``_update``).
    """

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    if not self.state[p]:
                        self.state[p].update(self._init_state(group, p))
                    self._update(group, p)
        return loss

    def _init_state(self, group: dict, p: torch.Tensor) -> dict:
        return {}

    def _update(self, group: dict, p: torch.Tensor) -> None:
        raise NotImplementedError


@OPTIMIZERS.register("adagrad")
class AdaGrad(CoordinateWiseOptimizer):
    """AdaGrad (Duchi et al. 2011; D2L 12.7): s += g*g; p -= lr * g / (sqrt(s) + eps).

    ``eps_inside_sqrt`` moves eps under the root, p -= lr * g / sqrt(s + eps), as the reference report's
    quadratic exercise does. ``lr_decay`` and ``initial_accumulator_value`` follow
    ``torch.optim.Adagrad`` (and the update uses the same operations, so the two agree bit for bit).
    """

    def __init__(
        self,
        params: Iterable,
        lr: float = 0.01,
        eps: float = 1e-10,
        eps_inside_sqrt: bool = False,
        lr_decay: float = 0.0,
        initial_accumulator_value: float = 0.0,
        weight_decay: float = 0.0,
    ):
        defaults = dict(
            lr=lr,
            eps=eps,
            eps_inside_sqrt=eps_inside_sqrt,
            lr_decay=lr_decay,
            initial_accumulator_value=initial_accumulator_value,
            weight_decay=weight_decay,
        )
        check_hyperparameters(type(self), defaults)
        super().__init__(params, defaults)

    def _init_state(self, group: dict, p: torch.Tensor) -> dict:
        return {"step": torch.tensor(0.0),
                "sum": torch.full_like(p, group["initial_accumulator_value"], memory_format=torch.preserve_format)}

    def _form(self, group: dict) -> str:
        return "inside" if group["eps_inside_sqrt"] else "outside"

    def _update(self, group: dict, p: torch.Tensor) -> None:
        state = self.state[p]
        state["step"] += 1
        adagrad_update(p, p.grad, state["sum"], _step_count(state), lr=group["lr"], lr_decay=group["lr_decay"],
                       eps=group["eps"], weight_decay=group["weight_decay"], form=self._form(group))

    def _coordinate_steps(self, group: dict, state: dict) -> torch.Tensor:
        return adagrad_step_sizes(state["sum"], _step_count(state), lr=group["lr"], lr_decay=group["lr_decay"],
                                  eps=group["eps"], form=self._form(group))


@OPTIMIZERS.register("adagrad_avg")
class AdaGradAveraged(AdaGrad):
    """The reference report's "less aggressive decay" (exercise 6, method 1): p -= lr * g / sqrt(s/t + eps).

    Dividing the accumulated squares by the step count t keeps the denominator an average, so the
    rate stops shrinking like 1/sqrt(t).
    """

    def __init__(self, params: Iterable, lr: float = 0.01, eps: float = 1e-8, weight_decay: float = 0.0):
        super().__init__(params, lr=lr, eps=eps, eps_inside_sqrt=True, weight_decay=weight_decay)

    def _form(self, group: dict) -> str:
        return "averaged"


@OPTIMIZERS.register("sgd_sqrt_decay")
class SGDSqrtDecay(CoordinateWiseOptimizer):
    """SGD with one global rate lr / sqrt(t + c), t = updates already made: the reference report's baseline (section 1)."""

    def __init__(self, params: Iterable, lr: float = 0.1, c: float = 1.0, momentum: float = 0.0):
        defaults = dict(lr=lr, c=c, momentum=momentum)
        check_hyperparameters(type(self), defaults)
        super().__init__(params, defaults)

    def _init_state(self, group: dict, p: torch.Tensor) -> dict:
        if group["momentum"]:
            return {"step": torch.tensor(0.0), "momentum_buffer": torch.zeros_like(p)}
        return {"step": torch.tensor(0.0)}

    def _update(self, group: dict, p: torch.Tensor) -> None:
        state = self.state[p]
        rate = sqrt_decay_rate(group["lr"], group["c"], _step_count(state))
        state["step"] += 1
        direction = p.grad
        if group["momentum"]:
            direction = state["momentum_buffer"].mul_(group["momentum"]).add_(p.grad)
        p.add_(direction, alpha=-rate)

    def _coordinate_steps(self, group: dict, state: dict) -> torch.Tensor:
        # the rate of the last update made (t - 1 updates had been made before it)
        return torch.full((1,), sqrt_decay_rate(group["lr"], group["c"], _step_count(state) - 1), dtype=torch.float64)


@OPTIMIZERS.register("torch_adagrad")
class TorchAdagrad(StepSizeReporting, torch.optim.Adagrad):
    def _coordinate_steps(self, group: dict, state: dict) -> torch.Tensor:
        return adagrad_step_sizes(state["sum"], _step_count(state), lr=group["lr"], lr_decay=group["lr_decay"],
                                  eps=group["eps"], form="outside")


@OPTIMIZERS.register("adam")
class Adam(StepSizeReporting, torch.optim.Adam):
    def _coordinate_steps(self, group: dict, state: dict) -> torch.Tensor:
        step = _step_count(state)
        _, beta2 = group["betas"]
        second_moment = state["exp_avg_sq"] / (1 - beta2**step)
        return group["lr"] / second_moment.sqrt().add(group["eps"])


@OPTIMIZERS.register("rmsprop")
class RMSprop(StepSizeReporting, torch.optim.RMSprop):
    def _coordinate_steps(self, group: dict, state: dict) -> torch.Tensor:
        variance = state["square_avg"]
        if group["centered"]:
            variance = variance - state["grad_avg"] ** 2
        return group["lr"] / variance.sqrt().add(group["eps"])


@OPTIMIZERS.register("adadelta")
class Adadelta(StepSizeReporting, torch.optim.Adadelta):
    def _coordinate_steps(self, group: dict, state: dict) -> torch.Tensor:
        eps = group["eps"]
        return group["lr"] * state["acc_delta"].add(eps).sqrt() / state["square_avg"].add(eps).sqrt()


@OPTIMIZERS.register("sgd")
class SGD(StepSizeReporting, torch.optim.SGD):
    def effective_step_sizes(self, members: int = 1) -> torch.Tensor | None:
        # plain SGD keeps no state without momentum: its one rate is the step size
        rates = torch.tensor([group["lr"] for group in self.param_groups], dtype=torch.float64)
        return rates.reshape(1, -1).expand(members, -1)


def optimizer_arguments(name: str) -> dict[str, Argument]:
    """The hyperparameters an optimizer accepts: default, type and range (``params`` excluded; shared: never
    modify it). A reference (``torch.optim:NAdam``) or a study's alias of one has its constructor's, unbounded
    (adabench.core.packaged; cached per definition: an alias may be defined again)."""
    if is_reference(name):
        return packaged_optimizer(name).arguments
    return registry_arguments(name)


@functools.cache  # as problem_arguments: one class per name for the life of the process
def registry_arguments(name: str) -> dict[str, Argument]:
    cls = OPTIMIZERS.get(name)
    return constructor_arguments(cls, skip=("params",), bounds={**HYPERPARAMETER_BOUNDS, **cls.bounds})


def canonical_hyperparameters(optimizer: str, hyperparameters: dict) -> dict:
    """What an optimizer computes with: lr always given (its default filled in), every other hyperparameter only
    where it differs from the default, numbers as the types the optimizer declares. Two settings that train
    alike are one run."""
    arguments = optimizer_arguments(optimizer)
    refuse_unknown("optimizer", optimizer, "hyperparameter", hyperparameters, arguments)
    canonical = {}
    for name, argument in arguments.items():
        if name in hyperparameters:
            value = canonical_value(hyperparameters[name], argument.schema)
            if name == "lr" or not same_value(value, argument.default):
                canonical[name] = value
        elif name == "lr":
            canonical[name] = argument.default
    return canonical


def packaged_optimizer(name: str) -> Packaged:
    """A packaged optimizer: a reference (module:Class), or an alias of the study's `packaged` section (defined in
    this process by adabench.core.packaged.define), whose fallback may be an optimizer of the registry."""
    if name in ALIASES:
        return resolve_alias(name, ALIASES[name])
    return resolve(name)


@functools.cache
def resolve_alias(name: str, definition: str) -> Packaged:
    """A `packaged` entry: its optimizer's class, with the fallback it names for the tensors of other dimensions.
    ReferenceError names the part at fault (its ``name``: "optimizer", "fallback.optimizer")."""
    entry = json.loads(definition)
    main = read_class(entry["optimizer"])
    fallback = entry.get("fallback")
    if fallback is None:
        return probe(dataclasses.replace(main, name=name))
    if main.needs_closure:
        raise ReferenceError(f"{entry['optimizer']} takes a closure: it cannot share its steps with a fallback",
                             "optimizer")
    other = fallback["optimizer"]
    if other in ALIASES:
        raise ReferenceError(f"{other!r} is an alias: a fallback is a registry name or a reference",
                             "fallback.optimizer")
    try:
        package = resolve(other) if ":" in other else None
        settings = canonical_hyperparameters(other, fallback.get("settings", {}))
    except (ReferenceError, KeyError, ValueError) as error:
        raise ReferenceError(str(error.args[0]), "fallback.optimizer") from None
    split = Fallback(other, settings, tuple(entry.get("main_ndim", [2])), package and package.identity(),
                     make=functools.partial(make_optimizer, other, hyperparameters=settings))
    return probe(dataclasses.replace(main, name=name, fallback=split,
                                     has_modes=main.has_modes or bool(package and package.has_modes)))


def is_elementwise(name: str) -> bool:
    """Whether the optimizer may run on the stacked parameters of several runs (a registry class that says so);
    a reference is not known to be."""
    return not is_reference(name) and getattr(OPTIMIZERS.get(name), "elementwise", False)


def optimizer_traits(name: str) -> tuple[bool, bool, bool]:
    """(needs_closure, has_modes, draws_random) of an optimizer: what a packaged one's probe saw; the registry's
    take no closure, have no modes and draw nothing."""
    if is_reference(name):
        packaged = packaged_optimizer(name)
        return packaged.needs_closure, packaged.has_modes, packaged.draws_random
    return False, False, False


def make_optimizer(name: str, params: Iterable, hyperparameters: dict) -> torch.optim.Optimizer:
    if is_reference(name):
        return packaged_optimizer(name).build(params, hyperparameters)
    refuse_unknown("optimizer", name, "hyperparameter", hyperparameters, optimizer_arguments(name))
    return OPTIMIZERS.get(name)(params, **hyperparameters)
