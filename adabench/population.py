"""The model of a population: runs of one problem, with identical problem options, as one vectorised model.

Members differ in seed, optimizer or hyperparameters, and each stays exactly itself:
- its initial weights are the ones ``build_model()`` draws right after ``torch.manual_seed(seed)`` (the trainer
  gives them, or a checkpoint's);
- its optimizer is the registry's own class with its own hyperparameters. Members that share optimizer,
  hyperparameters and progress share one instance over their parameters stacked along a new first
  dimension; for an elementwise optimizer (every entry of the registry) that makes each member's own update.
  Any other optimizer gets one instance per member.

Each member's parameters are a row of its group's stacked leaf tensors; the problem computes all members'
losses in one forward pass and their sum is differentiated once: each member gets its own gradient. The epochs,
batch orders, checkpoints and records are the trainer's (adabench.trainer).

Seconds are measured per section: each batch's passes (forward and backward) and each optimizer group's step,
so that the trainer can charge each member its share of the passes plus its own optimizer's work.

An optimizer that raises (in its step or its step sizes), or that changes a parameter's shape, dtype or device, has
*failed*: its group records the error and is never stepped again, and its leaves get back their shapes (zeros) so
that the passes of the other members go on; the trainer retires its members as ``failed``. Their rows stay in the
passes, on their own as a diverged member's do.
"""
from __future__ import annotations

import contextlib
import json
import time
import traceback
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .optim import OPTIMIZERS, make_optimizer, step_size_summaries
from .problems import Problem
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


@dataclass
class OptimizerGroup:
    """Members that share one optimizer over their stacked parameters (rows in member order)."""

    members: list
    leaves: dict[str, torch.Tensor]
    optimizer: torch.optim.Optimizer = field(repr=False)
    failure: str | None = None  # what the optimizer raised (or did to the parameters): never stepped again


# errors of the machine, not of an optimizer's code: a rerun may well succeed, so they stop the job as before
NOT_THE_OPTIMIZERS = (MemoryError, torch.cuda.OutOfMemoryError)


def failure_text(error: BaseException) -> str:
    """The error in one line, with where it was raised (file name only: a record says the same on every machine)."""
    frames = traceback.extract_tb(error.__traceback__)
    where = f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno} in {frames[-1].name})" if frames else ""
    return f"{type(error).__name__}: {str(error)[:1000]}{where}"


def member_view(shape: torch.Size, dtype: torch.dtype, device: torch.device) -> str:
    """A stacked leaf as one member sees its parameter: its shape without the members' dimension, dtype, device."""
    return f"{tuple(shape[1:])} {str(dtype).removeprefix('torch.')} on {device}"


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
        """Members with the same optimizer, hyperparameters and progress share one (elementwise) optimizer."""
        keyed: dict[tuple, list] = {}
        for member in members:
            spec = member.spec
            shareable = getattr(OPTIMIZERS.get(spec.optimizer), "elementwise", False)
            key = (spec.optimizer, json.dumps(spec.hyperparameters, sort_keys=True), member.epoch) if shareable \
                else ("alone", member.position)
            keyed.setdefault(key, []).append(member)
        groups = []
        for group_members in keyed.values():
            names = list(group_members[0].params)
            leaves = {name: torch.stack([m.params[name].to(self.device) for m in group_members]).requires_grad_()
                      for name in names}
            spec = group_members[0].spec
            optimizer = make_optimizer(spec.optimizer, list(leaves.values()), spec.hyperparameters)
            if group_members[0].optimizer_state is not None:
                load_group_state(optimizer, [m.optimizer_state for m in group_members])
            for m in group_members:
                m.params, m.optimizer_state = None, None  # the group's leaves hold them from now on
            groups.append(OptimizerGroup(group_members, leaves, optimizer))
        return groups

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
                params = {name: leaf[low:high] for name, leaf in group.leaves.items()}
            else:
                params = {name: torch.cat([group.leaves[name][low:high] for group, low, high in parts])
                          for name in self.names}
            yield slice(start, stop), params

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
        for group in self.groups:
            if group.failure is not None:
                continue
            with timer.section(id(group)):
                self.guarded_step(group)
        return losses, extra

    def guarded_step(self, group: OptimizerGroup) -> None:
        """The group's optimizer step; an exception of it, or a parameter it reshaped, fails the group."""
        shapes = {name: (leaf.shape, leaf.dtype, leaf.device) for name, leaf in group.leaves.items()}
        try:
            group.optimizer.step()
        except NOT_THE_OPTIMIZERS:
            raise
        except Exception as error:  # noqa: BLE001 - a plug-in's bug fails its own runs, not its siblings
            self.fail(group, failure_text(error), shapes)
            return
        for name, leaf in group.leaves.items():
            if (leaf.shape, leaf.dtype, leaf.device) != shapes[name]:
                self.fail(group, f"the optimizer changed parameter {name!r} from {member_view(*shapes[name])} to "
                                 f"{member_view(leaf.shape, leaf.dtype, leaf.device)}", shapes)
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
            if group.failure is None:
                try:
                    summaries = step_size_summaries(group.optimizer, len(group.members))
                except NOT_THE_OPTIMIZERS:
                    raise
                except Exception as error:  # noqa: BLE001 - as in guarded_step
                    group.failure = f"{failure_text(error)} (reading its step sizes)"
            sizes.extend(summaries or [{} for _ in group.members])
        return sizes

    def member_state(self, row: int) -> tuple[dict, dict]:
        """Row ``row``'s parameters and optimizer state, detached copies: what its checkpoint holds."""
        group, within = self.placement[row]
        return ({name: leaf[within].detach().clone() for name, leaf in group.leaves.items()},
                member_optimizer_state(group.optimizer, within, list(group.leaves.values())))
