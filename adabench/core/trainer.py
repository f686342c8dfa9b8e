"""Training a population: every run of it from its seed or its checkpoint to its last epoch, its records,
checkpoints, progress, summary and MLflow run; ``train_run`` is a population of one, so every run, alone or among
others, goes through the same loop.

- Each member keeps its own batch order: a generator seeded with its seed, drawn on the CPU (the same on every
  device).
- A member whose metrics become non-finite is recorded as ``diverged`` and retired: its records end there. Its
  rows still go through every pass and step of the population (on their own in every operation, they leave the
  other members untouched), and their compute is charged to no member.
- A member whose optimizer raises (or reshapes a parameter: adabench.core.population) is recorded as ``failed``, with
  the error in its summary, and retired the same way: its records end at its last complete epoch, and its
  siblings train on. The record is complete like any other (a plug-in's bug is deterministic: a rerun would
  fail again), so a rerun skips it; delete the run's directory to train it again once the optimizer is fixed.
- Seconds are honest per member: each batch's passes are shared equally by the rows they computed, and each
  optimizer group's step by its members, so a member's ``time_s`` is its share of the passes plus its own
  optimizer's work (``step_time_s``).
- An optimizer with train() and eval() (schedule-free) is in eval mode while its member is evaluated and
  checkpointed (the initial evaluation too), and back in train mode after, as a lone user's loop switches it: its
  records are of its eval-mode weights, and a resume goes on from the checkpoint with train(), as the uninterrupted
  run did. The switches are not timed, like the evaluation.
- Every member keeps its own run directory, records, checkpoint and MLflow run, exactly as a run trained alone.
  After every epoch each member's checkpoint is written atomically; a killed population resumes every member
  from its own checkpoint, and members already complete are skipped. Members resumed at different epochs train
  side by side, each on its own epoch.
"""
from __future__ import annotations

import contextlib
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from .checkpoints import atomic_torch_save, load_checkpoint
from .optim import packaged_optimizer
from .packaged import is_reference
from .population import PopulationModel, SectionTimer, check_same_problem
from .problems import make_problem
from .records import (
    CHECKPOINT,
    METRICS,
    SUMMARY,
    RunLock,
    build_summary,
    check_same_data,
    complete_summary,
    duration,
    set_aside,
    write_run,
)
from .runtime import (
    STOP_REQUESTED,
    Preempted,
    Tracker,
    configure_determinism,
    configure_precision,
    environment,
    resolve_device,
)
from .spec import RunSpec


@dataclass
class Member:
    spec: RunSpec
    out_dir: Path
    position: int  # index in the caller's list of runs
    generator: torch.Generator
    params: dict[str, torch.Tensor] | None  # until the model stacks them
    optimizer_state: dict | None
    records: list[dict]
    steps: int
    train_time: float
    step_time: float
    epoch: int
    resumed_from: int
    earlier_wall_time: float  # seconds its training jobs ran before this one resumed it (from the checkpoint)
    tracker: "GuardedTracker | None" = None
    status: str | None = None  # set when the member stops: "finished", "diverged" or "failed"

    @property
    def active(self) -> bool:
        return self.status is None


class GuardedTracker:
    """A tracker whose failures never stop training: the first one is logged as a warning and tracking of this
    run stops there. Its records are complete anyway; the workflow's mlflow_sync rule brings MLflow up to date."""

    def __init__(self, tracker: Tracker, key: str, log, failures: list):
        self.tracker, self.key, self.log = tracker, key, log
        self.failures = failures  # shared by a population's trackers: after one failure, none waits on MLflow again

    def start(self, key: str, identity: dict, unit: str, environment: dict, recorded_up_to: int) -> None:
        self.guarded(self.tracker.start, key, identity, unit, environment, recorded_up_to)

    def log_rows(self, rows: list[dict]) -> None:
        self.guarded(self.tracker.log, rows)

    def finish(self, summary: dict, artifacts: list[Path]) -> None:
        self.guarded(self.tracker.finish, summary, artifacts)

    def guarded(self, call, *arguments) -> None:
        if self.failures:
            return
        try:
            call(*arguments)
        except Exception as error:  # noqa: BLE001 - MLflow is a view: any failure of it is only a warning
            self.failures.append(error)
            self.log(f"WARNING: MLflow tracking of {self.key} failed ({type(error).__name__}: {str(error)[:300]}); "
                     "training goes on, and mlflow_sync catches MLflow up from the run records")


def is_diverged(row: dict) -> bool:
    return any(
        isinstance(value, float) and not math.isfinite(value)
        for name, value in row.items()
        if not name.startswith("eff_lr")
    )


# how torch words a warning of use_deterministic_algorithms(True, warn_only=True): "<op> does not have a
# deterministic implementation, but you set ..."
NONDETERMINISTIC = " does not have a deterministic implementation"


def train_population(runs: list[tuple[RunSpec, Path]], device: str = "auto", deterministic: bool = False,
                     trackers=None, log=print, on_epoch=None, trained_beside: list[dict] = ()) -> list[dict]:
    """Train every run of ``runs`` (spec, run directory) that is not complete yet, all at once; return each
    run's summary, in order. ``trackers(spec)`` gives a run's tracker, or None; ``on_epoch(progress)`` is called
    after every epoch with where the population stands (see PopulationTrainer.progress). ``trained_beside``: summaries of
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
            summary, why_not = complete_summary(out_dir, spec)
            if summary is not None:
                log(f"{spec.key}: already {summary['status']}, skipped")
                summaries[position] = summary
                continue
            if (out_dir / SUMMARY).exists():
                log(f"WARNING: {why_not}; the run is trained again")
                set_aside(out_dir / SUMMARY, log)
            if (out_dir / METRICS).is_dir():  # a folder in the curve's place: the new curve could not replace it
                set_aside(out_dir / METRICS, log)
            pending.append(position)
        if pending:
            beside = list(trained_beside) + [summary for summary in summaries if summary]
            trained = PopulationTrainer([(runs[i][0], Path(runs[i][1]), i) for i in pending], device, deterministic,
                                        trackers, log, on_epoch, beside).train()
            for position, summary in trained.items():
                summaries[position] = summary
    return summaries


def train_run(spec: RunSpec, out_dir: Path, device: str = "auto", deterministic: bool = False,
              tracker: Tracker | None = None, log=print) -> dict:
    """Run ``spec`` into ``out_dir``, resuming from its checkpoint; a complete run is returned as it is."""
    (summary,) = train_population([(spec, Path(out_dir))], device=device, deterministic=deterministic,
                                  trackers=(lambda _spec: tracker) if tracker else None, log=log)
    return summary


class PopulationTrainer:
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
        self.model = PopulationModel(self.problem, self.device, first.precision,
                                     [self.member(spec, out_dir, position) for spec, out_dir, position in runs])
        self.members, self.size = self.model.members, self.model.size  # in the model's row order
        tracking_failures: list = []
        for member in self.members:
            if trackers is not None and (tracker := trackers(member.spec)) is not None:
                member.tracker = GuardedTracker(tracker, member.spec.key, log, tracking_failures)
        self.record_initial_state()
        for member in self.members:
            if member.tracker:
                member.tracker.start(member.spec.key, member.spec.identity(), self.unit, self.environment,
                                     recorded_up_to=member.records[-1][self.unit] if member.records else -1)
                member.tracker.log_rows(member.records)
        if self.size > 1:
            log(f"population of {self.size} {first.problem} runs on {self.device}, "
                f"{len(self.model.groups)} optimizer group(s)")

    def member(self, spec: RunSpec, out_dir: Path, position: int) -> Member:
        generator = torch.Generator().manual_seed(spec.seed)
        checkpoint = load_checkpoint(out_dir, spec.identity(), self.device, self.log)
        if checkpoint is None:
            torch.manual_seed(spec.seed)
            model = self.problem.build_model()
            params = {name: value.detach() for name, value in model.named_parameters()}
            return Member(spec, out_dir, position, generator, params, None, [], 0, 0.0, 0.0, 0, 0, 0.0)
        generator.set_state(checkpoint["batch_order"].cpu())  # a CPU generator, whatever the device
        self.log(f"{spec.key}: resuming after {self.unit} {checkpoint['epoch']}")
        return Member(spec, out_dir, position, generator, checkpoint["params"], checkpoint["optimizer"],
                      checkpoint["records"], checkpoint["steps"], checkpoint["train_time"], checkpoint["step_time"],
                      checkpoint["epoch"], checkpoint["epoch"], checkpoint["wall_time"])

    def record_initial_state(self) -> None:
        if not self.problem.records_initial_state or all(member.records for member in self.members):
            return
        with self.model.evaluation():
            initial = self.model.evaluate()
        for member, metrics in zip(self.members, initial):
            if not member.records:
                member.records.append({self.unit: 0, **metrics, "time_s": 0.0, "step_time_s": 0.0})

    def train_epoch(self) -> tuple[list[dict], dict]:
        """One epoch (one step for a full-batch problem) of every member, each on its own batch order: per member
        its train metrics, and the seconds of the epoch's sections (SectionTimer)."""
        timer, n = SectionTimer(self.device), self.problem.train_size
        orders = None if n is None else torch.stack(
            [torch.randperm(n, generator=member.generator) for member in self.members]).to(self.device)
        return self.model.train_epoch(orders, timer), timer.seconds()

    def train(self) -> dict[int, dict]:
        summaries = {}
        planned = self.problem.epochs
        while any(member.active for member in self.members):
            tick = time.perf_counter()
            with contextlib.ExitStack() as modes:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    trained, seconds = self.train_epoch()
                    # eval mode from here until the checkpoints are written: they hold the weights evaluated
                    modes.enter_context(self.model.evaluation())
                    evaluated, step_sizes = self.model.evaluate(), self.model.step_sizes()
                self.note_warnings(caught)
                for row_index, member in enumerate(self.members):
                    if not member.active:
                        continue
                    group, _ = self.model.placement[row_index]
                    if group.failure is not None:  # this epoch's update did not happen: its records end before it
                        summaries[member.position] = self.finish(member, "failed", error=group.failure)
                        continue
                    step_share = seconds[id(group)] / len(group.members)
                    member.epoch += 1
                    member.steps += self.steps_per_epoch
                    member.step_time += step_share
                    member.train_time += seconds["passes"] / self.size + step_share
                    row = {self.unit: member.epoch, **trained[row_index], **evaluated[row_index],
                           **step_sizes[row_index], "time_s": member.train_time, "step_time_s": member.step_time}
                    member.records.append(row)
                    if member.tracker:
                        member.tracker.log_rows([row])
                    if is_diverged(row):
                        self.log(f"{member.spec.key}: non-finite metrics at {self.unit} {member.epoch}, stopped as "
                                 "diverged")
                        summaries[member.position] = self.finish(member, "diverged")
                    elif member.epoch >= planned:
                        summaries[member.position] = self.finish(member, "finished")
                    else:
                        self.save_checkpoint(member, row_index)
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

    def save_checkpoint(self, member: Member, row: int) -> None:
        params, optimizer_state = self.model.member_state(row)
        atomic_torch_save({
            "identity": member.spec.identity(),
            "params": params,
            "optimizer": optimizer_state,
            "batch_order": member.generator.get_state(),
            "records": member.records,
            "steps": member.steps,
            "train_time": member.train_time,
            "step_time": member.step_time,
            "epoch": member.epoch,
            "wall_time": self.wall_time(member),
        }, member.out_dir / CHECKPOINT)

    def wall_time(self, member: Member) -> float:
        """Seconds of wall time of the jobs that trained ``member``: this one's so far, and those before a resume
        (so a study's cost counts every process, not only the one that finished the run)."""
        return member.earlier_wall_time + time.perf_counter() - self.wall_start

    def run_environment(self) -> dict:
        """The environment as it really was: not deterministic if any operation ran without a deterministic
        kernel (named in ``nondeterministic_ops``)."""
        if not self.nondeterministic:
            return self.environment
        return {**self.environment, "deterministic": False, "nondeterministic_ops": sorted(self.nondeterministic)}

    def finish(self, member: Member, status: str, error: str | None = None) -> dict:
        member.status = status
        spec, unit, records = member.spec, self.unit, member.records
        summary = build_summary(spec, status, unit, records, self.problem.epochs, self.problem.headline,
                                self.problem.selection, steps=member.steps, train_time_s=member.train_time,
                                step_time_s=member.step_time,
                                wall_time_s=self.wall_time(member), resumed_from=member.resumed_from,
                                population_size=self.size, data_digest=self.problem.data_digest,
                                environment=self.run_environment())
        if is_reference(spec.optimizer):  # a split (Muon and its fallback): which tensors each optimizer took
            group = next(group for group in self.model.groups if member in group.members)
            assigned = packaged_optimizer(spec.optimizer).assignment({name: tuple(leaf.shape)
                                                           for name, leaf in group.leaves.items()})
            if assigned:
                summary["optimizer_params"] = assigned
        if error is not None:
            summary["error"] = error
            self.log(f"{spec.key}: its optimizer failed in {unit} {member.epoch + 1} ({error}); recorded as failed "
                     f"and retired, the other runs train on. A rerun keeps this result: to train it again once the "
                     f"optimizer is fixed, delete {member.out_dir}")
        # the records first: MLflow, a view of them, may fail without losing the run
        summary = write_run(member.out_dir, records, unit, summary)
        (member.out_dir / CHECKPOINT).unlink(missing_ok=True)
        if member.tracker:
            member.tracker.finish(summary, [member.out_dir / METRICS])
        self.log(f"{spec.key}: {status} after {summary['epochs_completed']} {unit}s")
        return summary
