"""The model of a population: runs of one problem, with identical problem options, as one vectorised model.

Members differ in seed, optimizer or hyperparameters, and each stays exactly itself:
- its initial weights are the ones ``build_model()`` draws right after ``torch.manual_seed(seed)`` (the trainer
  gives them, or a checkpoint's);
- its optimizer is the registry's own class, or the packaged class it names (adabench.core.packaged), with its own
  hyperparameters. Members that share an elementwise optimizer (every entry of the registry), hyperparameters and
  progress share one instance over their parameters stacked along a new first dimension: that makes each
  member's own update. Any other optimizer (every packaged one) gets an instance of its own over leaves of the
  member's own shapes, as a lone user's loop would give it: a [1, n] row would be factored by Adafactor, and a
  reduction over a tensor would see the member's dimension. Such an *own* group also keeps what a lone run has
  to itself: its step's closure recomputes only its member's loss, its random draws come from a generator of its
  own (seeded with the member's seed), and its whole ``state_dict`` is its checkpoint.

Each member's parameters are a row of its group's stacked leaf tensors (or an own group's leaves); the problem
computes all members' losses in one forward pass and their sum is differentiated once: each member gets its own
gradient. The epochs, batch orders, checkpoints and records are the trainer's (adabench.core.trainer).

Seconds are measured per section: each batch's passes (forward and backward) and each optimizer group's step,
so that the trainer can charge each member its share of the passes plus its own optimizer's work.

An optimizer that raises (when it is built, in its step, its step sizes or a switch between train() and eval()),
or that changes a parameter's shape, dtype or device, has *failed*: its group records the error and is never
stepped again, and its leaves get back their shapes (zeros) so that the passes of the other members go on; the
trainer retires its members as ``failed``. Their rows stay in the passes, on their own as a diverged member's do.
"""
from __future__ import annotations

import contextlib
import copy
import json
import time
import traceback
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .optim import is_elementwise, make_optimizer, optimizer_traits, step_size_summaries
from .problems import Problem
from .records import CHECKPOINT
from .spec import RunSpec


class SectionTimer:
    """Seconds spent in named sections of an epoch: perf_counter on a CPU; on a GPU, CUDA events read once at the
    end of the epoch (no synchronisation per batch)."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.totals: dict = defaultdict(float)
        self.events: list = []

    @contextlib.contextmanager
    def section(self, name):
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            yield
            end.record()
            self.events.append((name, start, end))
        else:
            tick = time.perf_counter()
            yield
            self.totals[name] += time.perf_counter() - tick

    def seconds(self) -> dict:
        if self.events:
            torch.cuda.synchronize()
            for name, start, end in self.events:
                self.totals[name] += start.elapsed_time(end) / 1000
            self.events = []
        return self.totals


def population_identity(spec: RunSpec) -> dict:
    identity = spec.identity()
    return {"problem": identity["problem"], "options": identity["options"], "precision": identity["precision"]}


def check_same_problem(specs: list[RunSpec]) -> None:
    """Members must share problem, options and precision; the message names every one that differs."""
    first = population_identity(specs[0])
    for spec in specs[1:]:
        other = population_identity(spec)
        if other == first:
            continue
        if other["problem"] != first["problem"]:
            raise ValueError(f"a population holds runs of one problem; got {first['problem']!r} and {other['problem']!r}")
        differing = sorted(name for name in set(first["options"]) | set(other["options"])
                           if first["options"].get(name) != other["options"].get(name))
        if other["precision"] != first["precision"]:
            differing.append("precision")
        raise ValueError(f"a population's runs must have identical problem options; {spec.key} differs from "
                         f"{specs[0].key} in: " + ", ".join(
                             f"{name} ({first['options'].get(name, first['precision'])!r} vs "
                             f"{other['options'].get(name, other['precision'])!r})" for name in differing))


def member_optimizer_state(optimizer: torch.optim.Optimizer, row: int, leaves: list[torch.Tensor]) -> dict:
    """Row ``row``'s share of a group optimizer's state: per-coordinate tensors sliced, the rest (step counts)
    shared by every row of the group and copied."""
    state = {}
    for index, entries in optimizer.state_dict()["state"].items():
        per_member, shared = {}, {}
        for name, value in entries.items():
            if torch.is_tensor(value) and value.shape == leaves[index].shape:
                per_member[name] = value[row].detach().clone()
            else:
                shared[name] = value.detach().clone() if torch.is_tensor(value) else value
        state[index] = {"per_member": per_member, "shared": shared}
    return state


def load_group_state(optimizer: torch.optim.Optimizer, states: list[dict]) -> None:
    """Give a group optimizer its members' states back, stacked row by row. Step counts stay on the CPU, where
    torch.optim keeps them (a checkpoint loaded onto a GPU would put them there, and every read of one a sync)."""
    stacked = {}
    for index, first in states[0].items():
        entries = {name: torch.stack([state[index]["per_member"][name] for state in states])
                   for name in first["per_member"]}
        for name, value in first["shared"].items():
            if any(not same_state(state[index]["shared"][name], value) for state in states[1:]):
                raise RuntimeError(f"members grouped on one optimizer disagree on its shared state {name!r}")
            entries[name] = value.cpu() if name == "step" and torch.is_tensor(value) else value
        stacked[index] = entries
    state_dict = optimizer.state_dict()
    state_dict["state"] = stacked
    optimizer.load_state_dict(state_dict)


def same_state(a, b) -> bool:
    return torch.equal(a, b) if torch.is_tensor(a) and torch.is_tensor(b) else a == b


# what an own group's checkpoint state says it is: a state without it is of the stacked layout
OWN_LAYOUT = "own"


@dataclass
class OptimizerGroup:
    """Members that share one optimizer over their stacked parameters (rows in member order), or (``own``) one
    member with an optimizer of its own over leaves of its own shapes."""

    members: list
    leaves: dict[str, torch.Tensor]
    optimizer: torch.optim.Optimizer | None = field(repr=False)  # None: its constructor raised (``failure``)
    failure: str | None = None  # what the optimizer raised (or did to the parameters): never stepped again
    own: bool = False
    needs_closure: bool = False  # its step takes a closure that recomputes the loss (LBFGS)
    has_modes: bool = False  # it switches between train() and eval() (schedule-free)
    rng: torch.Tensor | None = field(default=None, repr=False)  # the CPU generator state its steps draw from

    def rows(self, name: str, low: int, high: int) -> torch.Tensor:
        """Rows low:high of leaf ``name`` as [k, *shape]: a view, so that autograd gives the leaf its gradient
        (an own group's one member as a row of one)."""
        leaf = self.leaves[name]
        return leaf.unsqueeze(0) if self.own else leaf[low:high]

    def view(self, shape: torch.Size, dtype: torch.dtype, device: torch.device) -> str:
        """A leaf as one member sees its parameter: its shape (without the members' dimension), dtype, device."""
        return f"{tuple(shape if self.own else shape[1:])} {str(dtype).removeprefix('torch.')} on {device}"


# errors of the machine, not of an optimizer's code: a rerun may well succeed, so they stop the job as before
NOT_THE_OPTIMIZERS = (MemoryError, torch.cuda.OutOfMemoryError)


def failure_text(error: BaseException) -> str:
    """The error in one line, with where it was raised (file name only: a record says the same on every machine)."""
    frames = traceback.extract_tb(error.__traceback__)
    where = f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno} in {frames[-1].name})" if frames else ""
    return f"{type(error).__name__}: {str(error)[:1000]}{where}"


class PopulationModel:
    """The stacked parameters of a population's members, their optimizer groups, and what is computed on them:
    passes, losses, a training step, an epoch over given batch orders, evaluation and step sizes.

    ``members`` are the trainer's (each with ``spec``, ``epoch``, ``position`` and, until grouped, ``params`` and
    ``optimizer_state``); after grouping they are in row order (``members``, ``placement``: (group, row))."""

    def __init__(self, problem: Problem, device: torch.device, precision: str, members: list):
        self.problem, self.device = problem, device
        self.autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
        self.groups = self.group(members)
        self.members = [member for group in self.groups for member in group.members]  # in row order
        # each member's group and row in it, and each group's first row, in row order
        self.placement = [(group, row) for group in self.groups for row in range(len(group.members))]
        self.group_starts = [index for index, (_, row) in enumerate(self.placement) if row == 0]
        self.size = len(self.members)
        # how many members one forward pass takes (Problem.members_per_pass: on a CPU, a LeNet's one at a time)
        self.members_per_pass = problem.members_per_pass(device) or self.size
        self.names = list(self.groups[0].leaves)

    def group(self, members: list) -> list[OptimizerGroup]:
        """Members with the same optimizer, hyperparameters and progress share one (elementwise) optimizer; every
        other member gets one of its own (own_group)."""
        keyed: dict[tuple, list] = {}
        for member in members:
            spec = member.spec
            key = (spec.optimizer, json.dumps(spec.hyperparameters, sort_keys=True), member.epoch) \
                if is_elementwise(spec.optimizer) else ("alone", member.position)
            keyed.setdefault(key, []).append(member)
        groups = []
        for key, group_members in keyed.items():
            if key[0] == "alone":
                groups.append(self.own_group(group_members[0]))
                continue
            names = list(group_members[0].params)
            leaves = {name: torch.stack([m.params[name].to(self.device) for m in group_members]).requires_grad_()
                      for name in names}
            spec = group_members[0].spec
            optimizer = make_optimizer(spec.optimizer, list(leaves.values()), spec.hyperparameters)
            if group_members[0].optimizer_state is not None:
                if any("layout" in m.optimizer_state for m in group_members):
                    raise RuntimeError(f"{spec.optimizer} is shared by stacked members now, but a checkpoint of "
                                       f"{spec.key} holds the state of an optimizer of its own (layout 'own'): "
                                       f"delete {group_members[0].out_dir / CHECKPOINT} to train it from scratch")
                load_group_state(optimizer, [m.optimizer_state for m in group_members])
            for m in group_members:
                m.params, m.optimizer_state = None, None  # the group's leaves hold them from now on
            groups.append(OptimizerGroup(group_members, leaves, optimizer))
        return groups

    def own_group(self, member) -> OptimizerGroup:
        """A member's optimizer of its own, over leaves of its own shapes. Its constructor runs on a generator
        seeded with the member's seed, and its steps go on from there where it draws random numbers, so that
        neither depends on its companions. A constructor that raises fails the group (not the population)."""
        spec, state = member.spec, member.optimizer_state
        leaves = {name: value.to(self.device).detach().clone().requires_grad_()
                  for name, value in member.params.items()}
        needs_closure, has_modes, draws_random = optimizer_traits(spec.optimizer)
        group = OptimizerGroup([member], leaves, None, own=True, needs_closure=needs_closure, has_modes=has_modes)
        member.params, member.optimizer_state = None, None  # the group's leaves hold them from now on
        if state is not None and state.get("layout") != OWN_LAYOUT:
            raise RuntimeError(f"the checkpoint of {spec.key} holds {spec.optimizer}'s state in the stacked layout "
                               f"of an older adabench, but it now has an optimizer of its own over the run's own "
                               f"shapes: delete {member.out_dir / CHECKPOINT} to train it from scratch")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(spec.seed)
            try:
                group.optimizer = make_optimizer(spec.optimizer, list(leaves.values()), spec.hyperparameters)
            except NOT_THE_OPTIMIZERS:
                raise
            except Exception as error:  # noqa: BLE001 - as in guarded_step: it fails its own run only
                group.failure = f"{failure_text(error)} (building it)"
                return group
            rng = torch.get_rng_state()
        if state is not None:
            # the whole state_dict: Prodigy's d and schedule-free's k and weight sum live in its param_groups
            group.optimizer.load_state_dict(state["state_dict"])
            rng = state["rng"]
        if draws_random:
            group.rng = rng.cpu()  # map_location put a loaded one on the training device
        if has_modes:
            # a fresh schedule-free optimizer starts in eval mode, and a checkpoint was written in eval mode
            self.switch(group, "train")
        return group

    def passes(self):
        """Per forward pass of ``members_per_pass`` members: their rows and parameters, [k, *shape] per name.
        A pass within one group takes views of its leaves; only a pass across groups joins their rows."""
        for start in range(0, self.size, self.members_per_pass):
            stop = min(start + self.members_per_pass, self.size)
            parts = [(group, max(start, first) - first, min(stop, first + len(group.members)) - first)
                     for group, first in zip(self.groups, self.group_starts)
                     if first < stop and first + len(group.members) > start]
            if len(parts) == 1:
                group, low, high = parts[0]
                params = {name: group.rows(name, low, high) for name in self.names}
            else:
                params = {name: torch.cat([group.rows(name, low, high) for group, low, high in parts])
                          for name in self.names}
            yield slice(start, stop), params

    @contextlib.contextmanager
    def evaluation(self):
        """Optimizers with train() and eval() (schedule-free) in eval mode while the members are evaluated and
        checkpointed, and back in train mode after, as a lone user's loop switches them. The parameters it
        evaluates at are its eval-mode ones (schedule-free's averaged x, not the gradient point y)."""
        switched = [group for group in self.groups if group.has_modes and group.failure is None]
        for group in switched:
            self.switch(group, "eval")
        yield
        for group in switched:
            if group.failure is None:
                self.switch(group, "train")

    def switch(self, group: OptimizerGroup, mode: str) -> None:
        """The group's optimizer to "train" or "eval" mode; an exception of it fails the group."""
        shapes = {name: (leaf.shape, leaf.dtype, leaf.device) for name, leaf in group.leaves.items()}
        try:
            getattr(group.optimizer, mode)()
        except NOT_THE_OPTIMIZERS:
            raise
        except Exception as error:  # noqa: BLE001 - as in guarded_step
            self.fail(group, f"{failure_text(error)} (switching to {mode})", shapes)

    def evaluate(self) -> list[dict]:
        parts = {}
        with torch.no_grad():
            for _, params in self.passes():
                with self.autocast:
                    metrics = self.problem.evaluate(params)
                for name, values in metrics.items():
                    parts.setdefault(name, []).append(values.double().cpu())
        return self.per_member({name: torch.cat(values).tolist() for name, values in parts.items()})

    def per_member(self, columns: dict[str, list]) -> list[dict]:
        """{name: a value per member} -> a row {name: value} per member."""
        return [{name: values[row] for name, values in columns.items()} for row in range(self.size)]

    def train_epoch(self, orders: torch.Tensor | None, timer: "SectionTimer") -> list[dict]:
        """One epoch of every member over its batch ``orders`` ([members, train_size] on the device, row order;
        None for a full-batch problem's one step): per member its train metrics."""
        problem = self.problem
        if orders is None:
            self.train_batch(None, timer)
            return [{} for _ in range(self.size)]
        n, batch_size = problem.train_size, problem.batch_size
        total = torch.zeros(self.size, device=self.device, dtype=torch.float64)
        sums: dict[str, torch.Tensor] = {}
        for start in range(0, n, batch_size):
            indices = orders[:, start:start + batch_size]
            losses, extra = self.train_batch(indices, timer)
            total += losses.detach().double() * indices.shape[1]
            for name, value in extra.items():
                sums[name] = sums[name] + value.detach() if name in sums else value.detach()
        return self.per_member({"train_loss": (total / n).tolist(),
                                **{name: (value.double() / n).tolist() for name, value in sums.items()}})

    def train_batch(self, indices: torch.Tensor | None, timer: SectionTimer) -> tuple[torch.Tensor, dict]:
        """Every member's step on its batch: the passes (forward, and backward through the sum of the members'
        independent losses, so each gets its own gradient), then each group's optimizer, each timed."""
        with timer.section("passes"):
            for group in self.groups:
                if group.failure is None:
                    group.optimizer.zero_grad(set_to_none=True)
                else:
                    for leaf in group.leaves.values():
                        leaf.grad = None
            losses, extra = self.batch_losses(indices)
            losses.sum().backward()
        for group, first in zip(self.groups, self.group_starts):
            if group.failure is not None:
                continue
            with timer.section(id(group)):  # a closure's passes count as its member's step time
                self.guarded_step(group, None if indices is None else indices[first:first + 1])
        return losses, extra

    def closure(self, group: OptimizerGroup, indices: torch.Tensor | None):
        """The closure of a lone user's loop for an own group's step (LBFGS): its member's loss on the same batch,
        recomputed at the current parameters, and its gradient."""
        def closure():
            group.optimizer.zero_grad(set_to_none=True)
            with torch.enable_grad():
                with self.autocast:
                    losses, _ = self.problem.batch_losses({name: group.rows(name, 0, 1) for name in self.names},
                                                          indices)
                loss = losses.sum()
                loss.backward()
            return loss

        return closure

    def guarded_step(self, group: OptimizerGroup, indices: torch.Tensor | None = None) -> None:
        """The group's optimizer step (``indices``: an own group's member's batch, for a closure); an exception of
        it, or a parameter it reshaped, fails the group."""
        shapes = {name: (leaf.shape, leaf.dtype, leaf.device) for name, leaf in group.leaves.items()}
        try:
            arguments = (self.closure(group, indices),) if group.needs_closure else ()
            if group.rng is None:
                group.optimizer.step(*arguments)
            else:
                # its own draws (CPU generator only: draws on a GPU's generator are not kept apart)
                with torch.random.fork_rng(devices=[]):
                    torch.set_rng_state(group.rng)
                    group.optimizer.step(*arguments)
                    group.rng = torch.get_rng_state()
        except NOT_THE_OPTIMIZERS:
            raise
        except Exception as error:  # noqa: BLE001 - a plug-in's bug fails its own runs, not its siblings
            self.fail(group, failure_text(error), shapes)
            return
        for name, leaf in group.leaves.items():
            if (leaf.shape, leaf.dtype, leaf.device) != shapes[name]:
                self.fail(group, f"the optimizer changed parameter {name!r} from {group.view(*shapes[name])} to "
                                 f"{group.view(leaf.shape, leaf.dtype, leaf.device)}", shapes)
                return

    def fail(self, group: OptimizerGroup, failure: str, shapes: dict) -> None:
        """Record the group's failure and give its leaves back their shapes (zeros: its members are retired, and
        what their rows compute from now on is read by no one), so that joint passes still fit together."""
        group.failure = failure
        with torch.no_grad():
            for name, leaf in group.leaves.items():
                shape, dtype, device = shapes[name]
                if (leaf.shape, leaf.dtype, leaf.device) != (shape, dtype, device):
                    leaf.data = torch.zeros(shape, dtype=dtype, device=device)
                leaf.grad = None

    def batch_losses(self, indices: torch.Tensor | None) -> tuple[torch.Tensor, dict]:
        """The members' losses on their batches, computed ``members_per_pass`` members at a time."""
        losses, sums = [], {}
        for rows, params in self.passes():
            with self.autocast:
                part, extra = self.problem.batch_losses(params, None if indices is None else indices[rows])
            losses.append(part)
            for name, value in extra.items():
                sums.setdefault(name, []).append(value)
        return torch.cat(losses), {name: torch.cat(values) for name, values in sums.items()}

    def step_sizes(self) -> list[dict]:
        """Per member (row order) its optimizer's step sizes; a failed group's members have none, and a group
        whose optimizer raises here fails."""
        sizes = []
        for group in self.groups:
            summaries = None
            # a packaged optimizer reports none (no eff_lr_* values in its records)
            if group.failure is None and hasattr(group.optimizer, "effective_step_sizes"):
                try:
                    summaries = step_size_summaries(group.optimizer, len(group.members))
                except NOT_THE_OPTIMIZERS:
                    raise
                except Exception as error:  # noqa: BLE001 - as in guarded_step
                    group.failure = f"{failure_text(error)} (reading its step sizes)"
            sizes.extend(summaries or [{} for _ in group.members])
        return sizes

    def member_state(self, row: int) -> tuple[dict, dict]:
        """Row ``row``'s parameters and optimizer state, detached copies: what its checkpoint holds. An own group's
        is its whole state_dict (param_groups too) and its generator's state, marked with its layout."""
        group, within = self.placement[row]
        if group.own:
            return ({name: leaf.detach().clone() for name, leaf in group.leaves.items()},
                    {"layout": OWN_LAYOUT, "state_dict": copy.deepcopy(group.optimizer.state_dict()),
                     "rng": None if group.rng is None else group.rng.clone()})
        return ({name: leaf[within].detach().clone() for name, leaf in group.leaves.items()},
                member_optimizer_state(group.optimizer, within, list(group.leaves.values())))
