"""A study's state on disk: which of its runs are complete, what the tuning grid has already decided, which jobs
still have runs to train, and which outputs no longer describe the records they were made from.

The run records are the source of truth. A run is complete when its verified ``summary.json`` is of its own
identity (adabench.records); the plan fixes which job trains each run, and a job is pending while any of its runs
is not complete. Only pending jobs enter Snakemake's DAG, so a clone with a study's complete records trains
nothing again, wherever it runs, and a job holds exactly the runs it held when the study was planned (a cluster
node that reads the state again finds the same job).

Once every grid run of a (problem, optimizer) is complete, its tuned learning rate is decided (the same choice
``select_tuned`` writes, from the same records), so its tuned reruns are known runs: complete ones are skipped,
and pending ones train without waiting for the rest of the grid.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from .plan import PLAN_COLUMNS
from .records import RecordError, read_summary
from .sources import records_digest
from .spec import RunSpec
from .study import Job, Study


@dataclass
class StudyState:
    study: Study
    complete: dict[str, dict] = field(default_factory=dict)  # run key -> verified summary
    damaged: dict[str, str] = field(default_factory=dict)  # run key -> why its records are not usable
    chosen: dict[tuple[str, str], float] = field(default_factory=dict)  # (problem, optimizer) -> tuned lr

    def is_complete(self, spec: RunSpec) -> bool:
        return spec.key in self.complete

    def tuned_spec(self, problem: str, optimizer: str, seed: int) -> RunSpec | None:
        """A tuned rerun, where its learning rate is already decided."""
        lr = self.chosen.get((problem, optimizer))
        return None if lr is None else self.study.spec(problem, optimizer, {"lr": lr}, seed)

    def pending_jobs(self) -> dict[str, Job]:
        """Every job that still has runs to train, cut to them: complete runs left out, and a tuned job's decided
        slots turned into runs (left to the job that plans the same run, if it is pending there). A job made only
        of complete runs is not pending."""
        pending = {}
        for job in self.study.jobs.values():
            runs = tuple(spec for spec in job.runs if not self.is_complete(spec))
            if runs:
                pending[job.id] = Job(job.id, job.problem, runs=runs)
        planned = {spec.key for job in pending.values() for spec in job.runs}
        for job in self.study.jobs.values():
            runs, slots = [], []
            for optimizer, seed in job.tuned_slots:
                spec = self.tuned_spec(job.problem, optimizer, seed)
                if spec is None:
                    slots.append((optimizer, seed))
                elif not self.is_complete(spec) and spec.key not in planned:
                    planned.add(spec.key)
                    runs.append(spec)
            if runs or slots:
                pending[job.id] = Job(job.id, job.problem, runs=tuple(runs), tuned_slots=tuple(slots))
        return pending

    def run_keys(self, role: str | None = None) -> list[str]:
        """The keys of the study's runs known now (planned, and tuned reruns whose learning rate is decided)."""
        keys = [spec.key for spec in self.study.runs(role)] if role != "tuned" else []
        if role in (None, "tuned"):
            keys += [spec.key for spec in self.tuned_runs()]
        return list(dict.fromkeys(keys))

    def tuned_runs(self) -> list[RunSpec]:
        return [spec for optimizer_seed in self.study.tuned_slots()
                if (spec := self.tuned_spec(*optimizer_seed)) is not None]

    def digest(self, role: str | None = None) -> str | None:
        """The digest of the records of the study's runs (of one role), or None while any of them is not complete
        (or, for the tuned role, not yet known)."""
        keys = self.run_keys(role)
        if role in (None, "tuned") and len(self.tuned_runs()) < len(self.study.tuned_slots()):
            return None
        if any(key not in self.complete for key in keys):
            return None
        return records_digest({key: self.complete[key] for key in keys})


def read_state(study: Study) -> StudyState:
    """Read and verify the records of every run the study plans (and of the tuned reruns the grid decides)."""
    state = StudyState(study)

    def read(spec: RunSpec) -> None:
        try:
            summary = read_summary(study.run_dir(spec))
        except RecordError as error:
            if (study.run_dir(spec) / "summary.json").exists():
                state.damaged[spec.key] = str(error)
            return
        if summary["identity"] != spec.identity():
            state.damaged[spec.key] = f"{study.run_dir(spec)}: a run of another configuration"
            return
        state.complete[spec.key] = summary

    for spec in study.runs():
        read(spec)
    state.chosen = decided_learning_rates(study, state.complete)
    for spec in state.tuned_runs():
        if spec.key not in state.complete:
            read(spec)
    return state


def decided_learning_rates(study: Study, complete: dict[str, dict]) -> dict[tuple[str, str], float]:
    """The tuned learning rate of every (problem, optimizer) whose grid runs are all complete, chosen as
    ``select_tuned`` chooses it (adabench.analysis.tuning.select) from the same records."""
    from .analysis.aggregate import run_row
    from .analysis.tuning import select

    grid: dict[tuple[str, str], list[RunSpec]] = {}
    for spec in study.runs("grid"):
        grid.setdefault((spec.problem, spec.optimizer), []).append(spec)
    rows = [run_row(complete[spec.key], {"grid"}) for specs in grid.values()
            if all(spec.key in complete for spec in specs) for spec in specs]
    if not rows:
        return {}
    return {(row.problem, row.optimizer): float(row.lr) for row in select(pd.DataFrame(rows)).itertuples()}


def tuned_plan(study: Study, selection: pd.DataFrame) -> pd.DataFrame:
    """The plan's rows of the tuned reruns, their learning rates chosen (``selection``, as select_tuned writes
    it): what the analysis and the MLflow sync read beside the plan (``tuning/tuned_runs.csv``)."""
    from .analysis.tuning import chosen_lr

    rows = []
    for job in study.jobs.values():
        for optimizer, seed in job.tuned_slots:
            spec = study.spec(job.problem, optimizer, {"lr": chosen_lr(selection, job.problem, optimizer)}, seed)
            rows.append(study.plan_row(spec, {"tuned"}, job.id))
    return pd.DataFrame(rows, columns=PLAN_COLUMNS)
