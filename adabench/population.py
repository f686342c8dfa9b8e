"""Populations: runs of one problem, with identical problem options, trained at once as one vectorised model.

Members differ in seed, optimizer or hyperparameters, and each stays exactly itself:
- its initial weights are the ones ``build_model()`` draws right after ``torch.manual_seed(seed)``;
- its batch order comes from its own generator, seeded with its seed;
- its optimizer is the registry's own class with its own hyperparameters. Members that share optimizer,
  hyperparameters and progress share one instance over their parameters stacked along a new first
  dimension; for an elementwise optimizer (every entry of the registry) that makes each member's own update.
  Any other optimizer gets one instance per member.

Each member's parameters are a row of its group's stacked leaf tensors; the problem computes all members'
losses in one forward pass and their sum is differentiated once. A member whose metrics become non-finite is
recorded as ``diverged`` and retired: its records end there. Its rows still go through every pass and step of
the population (on their own in every operation, they leave the other members untouched), and their compute is
charged to no member.

Seconds are honest per member: each batch's passes (forward and backward) are timed and shared equally by the
rows they computed, and each optimizer group's step is timed and shared by its members, so a member's
``time_s`` is its share of the passes plus its own optimizer's work (``step_time_s``).

Every member keeps its own run directory, records, checkpoint and MLflow run, exactly as a run trained alone:
training alone *is* a population of one. After every epoch each member's checkpoint is written atomically;
a killed population resumes every member from its own checkpoint, and members already complete are skipped.
Members resumed at different epochs train side by side, each on its own epoch.
"""
from __future__ import annotations

import contextlib
import json
import math
import time
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .optim import OPTIMIZERS, make_optimizer, step_size_summaries
from .problems import make_problem
from .records import (CHECKPOINT, METRICS, SUMMARY, RunLock, atomic_torch_save, build_summary, check_same_data,
                      complete_summary, load_checkpoint, set_aside, write_run)
from .run import (STOP_REQUESTED, Preempted, RunSpec, Tracker, configure_determinism, configure_precision, environment,
                  resolve_device)


@dataclass
class Member:
    spec: RunSpec
    out_dir: Path
    position: int  # index in the caller's list of runs
    generator: torch.Generator
    params: dict[str, torch.Tensor]
    optimizer_state: dict | None
    records: list[dict]
    steps: int
    train_time: float
    step_time: float
    epoch: int
    resumed_from: int
    tracker: "GuardedTracker | None" = None
    status: str | None = None  # set when the member stops: "finished" or "diverged"

    @property
    def active(self) -> bool:
        return self.status is None


@dataclass
class OptimizerGroup:
    """Members that share one optimizer over their stacked parameters (rows in member order)."""

    members: list[Member]
    leaves: dict[str, torch.Tensor]
    optimizer: torch.optim.Optimizer = field(repr=False)


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


class GuardedTracker:
    """A tracker whose failures never stop training: the first one is logged as a warning and tracking of this
    run stops there. Its records are complete anyway; the workflow's mlflow_sync rule brings MLflow up to date."""

    def __init__(self, tracker: Tracker, key: str, log, failures: list):
        self.tracker, self.key, self.log = tracker, key, log
        self.failures = failures  # shared by a population's trackers: after one failure, none waits on MLflow again

    def __call__(self, method: str, *arguments, **keywords) -> None:
        if self.failures:
            return
        try:
            getattr(self.tracker, method)(*arguments, **keywords)
        except Exception as error:  # noqa: BLE001 - MLflow is a view: any failure of it is only a warning
            self.failures.append(error)
            self.log(f"WARNING: MLflow tracking of {self.key} failed ({type(error).__name__}: {str(error)[:300]}); "
                     "training goes on, and mlflow_sync catches MLflow up from the run records")


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


def is_diverged(row: dict) -> bool:
    return any(
        isinstance(value, float) and not math.isfinite(value)
        for name, value in row.items()
        if not name.startswith("eff_lr")
    )


# how torch words a warning of use_deterministic_algorithms(True, warn_only=True): "<op> does not have a
# deterministic implementation, but you set ..."
NONDETERMINISTIC = " does not have a deterministic implementation"


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def train_population(runs: list[tuple[RunSpec, Path]], device: str = "auto", deterministic: bool = False,
                     trackers=None, log=print, on_epoch=None, trained_beside: list[dict] = ()) -> list[dict]:
    """Train every run of ``runs`` (spec, run directory) that is not complete yet, all at once; return each
    run's summary, in order. ``trackers(spec)`` gives a run's tracker, or None; ``on_epoch(progress)`` is called
    after every epoch with where the population stands (see Population.progress). ``trained_beside``: summaries of
    complete runs the new ones will be compared with; runs of other data are refused (records.MixedData)."""
    if not runs:
        return []
    check_same_problem([spec for spec, _ in runs])
    summaries: list[dict | None] = [None] * len(runs)
    with contextlib.ExitStack() as held:
        pending = []
        for position, (spec, out_dir) in enumerate(runs):
            out_dir = Path(out_dir)
            held.enter_context(RunLock(out_dir, log))  # released when the population ends, or its process dies
            summary, why_not = complete_summary(out_dir, spec.identity())
            if summary is not None:
                log(f"{spec.key}: already {summary['status']}, skipped")
                summaries[position] = summary
                continue
            if (out_dir / SUMMARY).exists():
                log(f"WARNING: {why_not}; the run is trained again")
                set_aside(out_dir / SUMMARY, log)
            pending.append(position)
        if pending:
            beside = list(trained_beside) + [summary for summary in summaries if summary]
            trained = Population([(runs[i][0], Path(runs[i][1]), i) for i in pending], device, deterministic,
                                 trackers, log, on_epoch, beside).train()
            for position, summary in trained.items():
                summaries[position] = summary
    return summaries


class Population:
    def __init__(self, runs: list[tuple[RunSpec, Path, int]], device: str, deterministic: bool, trackers, log,
                 on_epoch=None, trained_beside: list[dict] = ()):
        self.log = log
        self.on_epoch = on_epoch
        self.wall_start = time.perf_counter()
        configure_determinism(deterministic)
        first = runs[0][0]
        configure_precision(first.precision)
        self.device = resolve_device(device)
        self.environment = environment(self.device, deterministic)
        self.nondeterministic: set[str] = set()  # operations that ran without a deterministic kernel
        self.problem = make_problem(first.problem, first.problem_options, self.device)
        check_same_data(list(trained_beside), new=(f"{first.problem}@{first.options_id}", self.problem.data_digest))
        self.unit = self.problem.unit
        train_size, batch_size = self.problem.train_size, self.problem.batch_size
        self.steps_per_epoch = 1 if train_size is None else math.ceil(train_size / batch_size)
        self.autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=first.precision == "bf16")
        members = [self.member(spec, out_dir, position) for spec, out_dir, position in runs]
        self.groups = self.group(members)
        self.members = [member for group in self.groups for member in group.members]  # in row order
        # each member's group and row in it, and each group's first row, in row order
        self.placement = [(group, row) for group in self.groups for row in range(len(group.members))]
        self.group_starts = [index for index, (_, row) in enumerate(self.placement) if row == 0]
        self.size = len(self.members)
        # how many members one forward pass takes (Problem.members_per_pass: on a CPU, a LeNet's one at a time)
        self.members_per_pass = self.problem.members_per_pass(self.device) or self.size
        self.names = list(self.groups[0].leaves)
        tracking_failures: list = []
        for member in self.members:
            if trackers is not None and (tracker := trackers(member.spec)) is not None:
                member.tracker = GuardedTracker(tracker, member.spec.key, log, tracking_failures)
        self.record_initial_state()
        for member in self.members:
            if member.tracker:
                member.tracker("start", member.spec, self.unit, self.environment,
                               recorded_up_to=member.records[-1][self.unit] if member.records else -1)
                member.tracker("log", member.records)
        if self.size > 1:
            log(f"population of {self.size} {first.problem} runs on {self.device}, "
                f"{len(self.groups)} optimizer group(s)")

    def member(self, spec: RunSpec, out_dir: Path, position: int) -> Member:
        generator = torch.Generator().manual_seed(spec.seed)
        checkpoint = load_checkpoint(out_dir, spec.identity(), self.device, self.log)
        if checkpoint is None:
            torch.manual_seed(spec.seed)
            model = self.problem.build_model()
            params = {name: value.detach() for name, value in model.named_parameters()}
            return Member(spec, out_dir, position, generator, params, None, [], 0, 0.0, 0.0, 0, 0)
        generator.set_state(checkpoint["batch_order"].cpu())  # a CPU generator, whatever the device
        self.log(f"{spec.key}: resuming after {self.unit} {checkpoint['epoch']}")
        return Member(spec, out_dir, position, generator, checkpoint["params"], checkpoint["optimizer"],
                      checkpoint["records"], checkpoint["steps"], checkpoint["train_time"], checkpoint["step_time"],
                      checkpoint["epoch"], checkpoint["epoch"])

    def group(self, members: list[Member]) -> list[OptimizerGroup]:
        """Members with the same optimizer, hyperparameters and progress share one (elementwise) optimizer."""
        keyed: dict[tuple, list[Member]] = {}
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

    def record_initial_state(self) -> None:
        if not self.problem.records_initial_state or all(member.records for member in self.members):
            return
        initial = self.evaluate()
        for member, metrics in zip(self.members, initial):
            if not member.records:
                member.records.append({self.unit: 0, **metrics, "time_s": 0.0, "step_time_s": 0.0})

    def train_epoch(self) -> tuple[list[dict], dict]:
        """One epoch (one step for a full-batch problem) of every member: per member its train metrics, and the
        seconds of the epoch's sections ("passes", and each optimizer group's step, under the group's id)."""
        problem, timer = self.problem, SectionTimer(self.device)
        if problem.train_size is None:
            self.train_batch(None, timer)
            return [{} for _ in range(self.size)], timer.seconds()
        n, batch_size = problem.train_size, problem.batch_size
        # each member's own order, drawn on the CPU from its own generator: the same on every device
        orders = torch.stack([torch.randperm(n, generator=member.generator) for member in self.members]).to(self.device)
        total = torch.zeros(self.size, device=self.device, dtype=torch.float64)
        sums: dict[str, torch.Tensor] = {}
        for start in range(0, n, batch_size):
            indices = orders[:, start:start + batch_size]
            losses, extra = self.train_batch(indices, timer)
            total += losses.detach().double() * indices.shape[1]
            for name, value in extra.items():
                sums[name] = sums[name] + value.detach() if name in sums else value.detach()
        return self.per_member({"train_loss": (total / n).tolist(),
                                **{name: (value.double() / n).tolist() for name, value in sums.items()}}), timer.seconds()

    def train_batch(self, indices: torch.Tensor | None, timer: SectionTimer) -> tuple[torch.Tensor, dict]:
        """Every member's step on its batch: the passes (forward, and backward through the sum of the members'
        independent losses, so each gets its own gradient), then each group's optimizer, each timed."""
        with timer.section("passes"):
            for group in self.groups:
                group.optimizer.zero_grad(set_to_none=True)
            losses, extra = self.batch_losses(indices)
            losses.sum().backward()
        for group in self.groups:
            with timer.section(id(group)):
                group.optimizer.step()
        return losses, extra

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
        return [summary for group in self.groups for summary in step_size_summaries(group.optimizer, len(group.members))]

    def train(self) -> dict[int, dict]:
        summaries = {}
        planned = self.problem.epochs
        while any(member.active for member in self.members):
            tick = time.perf_counter()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                trained, seconds = self.train_epoch()
                evaluated, step_sizes = self.evaluate(), self.step_sizes()
            self.note_warnings(caught)
            for row_index, member in enumerate(self.members):
                if not member.active:
                    continue
                group, _ = self.placement[row_index]
                step_share = seconds[id(group)] / len(group.members)
                member.epoch += 1
                member.steps += self.steps_per_epoch
                member.step_time += step_share
                member.train_time += seconds["passes"] / self.size + step_share
                row = {self.unit: member.epoch, **trained[row_index], **evaluated[row_index], **step_sizes[row_index],
                       "time_s": member.train_time, "step_time_s": member.step_time}
                member.records.append(row)
                if member.tracker:
                    member.tracker("log", [row])
                if is_diverged(row):
                    self.log(f"{member.spec.key}: non-finite metrics at {self.unit} {member.epoch}, stopped as diverged")
                    summaries[member.position] = self.finish(member, "diverged")
                elif member.epoch >= planned:
                    summaries[member.position] = self.finish(member, "finished")
                else:
                    self.save_checkpoint(member, *self.placement[row_index])
                    write_run(member.out_dir, member.records, self.unit)
            self.report(time.perf_counter() - tick)
            if STOP_REQUESTED.is_set() and any(member.active for member in self.members):
                raise Preempted(f"stop requested; the checkpoints hold every member's last completed {self.unit}")
        return summaries

    def note_warnings(self, caught: list) -> None:
        """Count the operations that ran without a deterministic kernel (the run was asked to be deterministic);
        pass every other warning on."""
        for warning in caught:
            message = str(warning.message)
            if NONDETERMINISTIC in message:
                self.nondeterministic.add(message.split(NONDETERMINISTIC)[0].strip())
            else:
                warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)

    def report(self, epoch_seconds: float) -> None:
        """One line per epoch on the log, and the same to ``on_epoch``: where the population stands."""
        progress = self.progress(epoch_seconds)
        epochs = (f"{progress['epoch']}" if progress["epoch"] == progress["epoch_max"]
                  else f"{progress['epoch']}-{progress['epoch_max']}")
        self.log(f"{self.unit} {epochs}/{progress['epochs']}: {progress['active']} of {self.size} runs active, "
                 f"{epoch_seconds:.1f} s/{self.unit}, ETA {duration(progress['eta_s'])}")
        if self.on_epoch is not None:
            self.on_epoch(progress)

    def progress(self, epoch_seconds: float) -> dict:
        """The slowest active member's epoch, the number of active members, and the time left at this pace."""
        active = [member for member in self.members if member.active]
        done = [member.epoch for member in (active or self.members)]
        left = self.problem.epochs - min(done) if active else 0
        return {"unit": self.unit, "epoch": min(done), "epoch_max": max(done), "epochs": self.problem.epochs,
                "active": len(active), "size": self.size, "seconds_per_epoch": epoch_seconds,
                "eta_s": left * epoch_seconds, "runs": [member.spec.key for member in active]}

    def save_checkpoint(self, member: Member, group: OptimizerGroup, row: int) -> None:
        atomic_torch_save({
            "identity": member.spec.identity(),
            "params": {name: leaf[row].detach().clone() for name, leaf in group.leaves.items()},
            "optimizer": member_optimizer_state(group.optimizer, row, list(group.leaves.values())),
            "batch_order": member.generator.get_state(),
            "records": member.records,
            "steps": member.steps,
            "train_time": member.train_time,
            "step_time": member.step_time,
            "epoch": member.epoch,
        }, member.out_dir / CHECKPOINT)

    def run_environment(self) -> dict:
        """The environment as it really was: not deterministic if any operation ran without a deterministic
        kernel (named in ``nondeterministic_ops``)."""
        if not self.nondeterministic:
            return self.environment
        return {**self.environment, "deterministic": False, "nondeterministic_ops": sorted(self.nondeterministic)}

    def finish(self, member: Member, status: str) -> dict:
        member.status = status
        spec, unit, records = member.spec, self.unit, member.records
        summary = build_summary(spec, status, unit, records, self.problem.epochs, self.problem.headline,
                                self.problem.selection, steps=member.steps, train_time_s=member.train_time,
                                step_time_s=member.step_time,
                                wall_time_s=time.perf_counter() - self.wall_start, resumed_from=member.resumed_from,
                                population_size=self.size, data_digest=self.problem.data_digest,
                                environment=self.run_environment())
        # the records first: MLflow, a view of them, may fail without losing the run
        summary = write_run(member.out_dir, records, unit, summary)
        (member.out_dir / CHECKPOINT).unlink(missing_ok=True)
        if member.tracker:
            member.tracker("finish", summary, [member.out_dir / METRICS])
        self.log(f"{spec.key}: {status} after {summary['epochs_completed']} {unit}s")
        return summary
