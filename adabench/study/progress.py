"""Where a study stands (``adabench status``), and stopping it within one epoch (``adabench stop``).

The state comes from the records (adabench.study.state) and from the progress file each training job rewrites after
every epoch (``results/<study>/progress/<job>.json``: its process, epoch, active runs and seconds per epoch).
A job whose process is alive but whose progress file has not changed for three of its epochs is *stalled* (a
stopped process, a hung file system): Snakemake itself waits on it without a word.
"""
from __future__ import annotations

import json
import os
import platform
import signal
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..core.atomic import DamagedJSON, atomic_write_text, read_json
from .cost import measured_epoch_seconds, per_epoch_options, planned_epochs
from ..core.locks import holder_gone, holder_if_held, same_process, this_process
from ..core.provenance import cpu_model
from ..core.records import ENDED_EARLY, METRICS, duration
from .state import StudyState, search_rounds_on_disk, searched_on_disk, tuned_runs_on_disk, verified
from .design import SEARCH_JOB, Study

STALLED_EPOCHS = 3  # a job is stalled after this many of its epochs without progress
STAGE_OF_ROLE = {"reference": "study", "study": "study", "defaults": "study", "grid": "grid", "tuned": "tuned"}


@dataclass
class RunningJob:
    job: str
    problem: str
    pid: int
    host: str
    epoch: int
    epochs: int
    unit: str
    active: int
    size: int
    seconds_per_epoch: float | None
    eta_s: float | None
    quiet_s: float  # seconds since the job last reported progress
    start: str | None = None  # its process's start time (locks.process_start): with the pid, which process it is

    @property
    def stalled(self) -> bool:
        return self.seconds_per_epoch is not None and self.quiet_s > STALLED_EPOCHS * self.seconds_per_epoch


def write_progress(path: Path, job: str, problem: str, progress: dict) -> None:
    """A training job's progress file: its process, and where its population stands (PopulationTrainer.progress)."""
    atomic_write_text(Path(path), json.dumps({"job": job, "problem": problem, **this_process(),
                                              "updated": time.time(), **progress}, indent=1) + "\n")


def running_jobs(study: Study, now: float | None = None, damaged: list[str] | None = None) -> list[RunningJob]:
    """The study's training jobs whose process is alive (or, on another host, not known to be gone: a job removes
    its progress file when it ends). A progress file that cannot be read (damaged, or lacking what a job writes)
    is skipped; ``damaged``, where given, collects a line naming each."""
    now = time.time() if now is None else now
    jobs = []
    for path in sorted(Path(study.path("progress")).glob("*.json")):
        try:
            progress = read_json(path)
            if holder_gone(progress):
                continue
            if progress.get("host") == platform.node() and progress.get("start") is None:
                # every job records its start: without it, the pid may now be any process (stop must not signal it)
                raise ValueError("it records no process start time, so its pid may be another process by now")
            jobs.append(RunningJob(job=str(progress["job"]), problem=str(progress["problem"]),
                                   pid=int(progress["pid"]), host=progress["host"], epoch=progress.get("epoch", 0),
                                   epochs=progress.get("epochs", 0), unit=progress.get("unit", "epoch"),
                                   active=progress.get("active", 0), size=progress.get("size", 0),
                                   seconds_per_epoch=progress.get("seconds_per_epoch"), eta_s=progress.get("eta_s"),
                                   quiet_s=now - float(progress["updated"]),
                                   start=None if progress.get("start") is None else str(progress["start"])))
        except FileNotFoundError:  # its job ended meanwhile
            continue
        except DamagedJSON as error:
            if damaged is not None:
                damaged.append(f"{error}; skipped (a running job rewrites it after its next epoch)")
        except OSError as error:
            if damaged is not None:
                damaged.append(f"{path}: unreadable ({error.strerror or error}); skipped")
        except (KeyError, TypeError, ValueError) as error:
            if damaged is not None:
                damaged.append(f"{path}: damaged, not a job's progress ({type(error).__name__}: {error}); skipped")
    return jobs


def progress_table(state: StudyState, tuned: dict[str, list] | None = None,
                   stale: Collection[Path] = ()) -> pd.DataFrame:
    """Per stage and problem: runs complete and planned, epochs done and planned (a run in several roles counts
    in its first stage). The search's later rounds count as far as its rounds have asked for rates; the tuned
    reruns, before the search has ended, count as one new run per tuned optimizer and seed (an upper bound: a
    chosen setting equal to a planned run is not trained again). Rounds and choices among ``stale`` (outputs that
    no longer hold: the next Snakemake run removes them) do not count."""
    study, rows, seen = state.study, [], set()
    for spec in study.runs():
        if spec.key in seen:
            continue
        seen.add(spec.key)
        stage = STAGE_OF_ROLE[next(role for role in ("study", "reference", "defaults", "grid")
                                   if role in study.roles(spec))]
        rows.append(run_progress(state, spec, stage))
    for spec in searched_on_disk(study, stale):  # the plan's grid runs are seen already
        if spec.key not in seen:
            seen.add(spec.key)
            rows.append(run_progress(state, spec, "grid"))
    tuned = tuned_runs_on_disk(study, stale) if tuned is None else tuned  # (report reads them once for both)
    for problem in study.tuning["problems"] if study.tuning else []:
        if problem not in tuned:  # its search has not chosen yet
            epochs = planned_epochs(problem, study.options(problem))
            for _ in range(len(study.tuned_optimizers(problem)) * len(study.seeds(problem))):
                rows.append({"stage": "tuned", "problem": problem, "complete": 0, "runs": 1, "done": 0,
                             "epochs": epochs, "options": per_epoch_options(problem, study.options(problem))})
        for spec in tuned.get(problem, []):
            if spec.key not in seen:
                seen.add(spec.key)
                rows.append(run_progress(state, spec, "tuned"))
    table = pd.DataFrame(rows, columns=["stage", "problem", "complete", "runs", "done", "epochs", "options"])
    return table


def run_progress(state: StudyState, spec, stage: str) -> dict:
    epochs = planned_epochs(spec.problem, spec.problem_options)
    # a run the search added is not in the plan the state was read from: its records are read here
    summary = state.complete.get(spec.key) or verified(state.study, spec)[0]
    if summary is not None:
        done = int(summary["epochs_completed"])
        epochs = done if summary["status"] in ENDED_EARLY else epochs  # it ended there
        complete = 1
    else:
        done, complete = trained_epochs(state.study.run_dir(spec)), 0
    return {"stage": stage, "problem": spec.problem, "complete": complete, "runs": 1, "done": done, "epochs": epochs,
            "options": per_epoch_options(spec.problem, spec.problem_options)}


def trained_epochs(run_dir: Path) -> int:
    """Epochs an incomplete run has behind it: the rows of the metrics.csv it rewrites after every epoch (a
    full-batch problem's first row is its starting point)."""
    try:
        frame = pd.read_csv(Path(run_dir) / METRICS, usecols=[0])
    except (OSError, ValueError, pd.errors.EmptyDataError):
        return 0
    return int(frame.iloc[:, 0].max()) if len(frame) else 0


def live_rates(study: Study, jobs: list[RunningJob]) -> dict[tuple[str, str], float]:
    """Seconds per run and epoch that the running jobs measure now (their last epoch over their population's size),
    per problem and per-epoch options: how fast this machine trains with what shares it at this moment."""
    rates: dict[tuple[str, str], list[float]] = {}
    for running in jobs:
        if running.stalled or not running.seconds_per_epoch or not running.size or running.problem not in (
                study.config["problems"]):
            continue
        job = study.jobs.get(running.job)
        if job is not None and job.runs:
            options = job.runs[0].problem_options
        elif (match := SEARCH_JOB.fullmatch(running.job)) and match["problem"] == running.problem:
            options = study.grid_options(running.problem)  # a job of the search's later rounds: the grid's data
        else:
            options = study.options(running.problem)  # a tuned rerun's
        rates.setdefault((running.problem, per_epoch_options(running.problem, options)), []).append(
            running.seconds_per_epoch / running.size)
    return {key: float(pd.Series(values).median()) for key, values in rates.items()}


def remaining_seconds(table: pd.DataFrame, study: Study, jobs: list[RunningJob] = ()) -> tuple[float, list[str]]:
    """One-job seconds of the epochs left, and the problems with work left but no measurement. The rate of a problem
    is the one its running jobs measure now, else the one this study's finished runs measured on this machine (the
    cost planner's seconds per run and epoch): finished runs may have shared the machine with other work."""
    live = live_rates(study, list(jobs))
    measured = measured_epoch_seconds([study.root / "runs"])
    here = measured[measured.device_name == cpu_model()]
    measured = here if len(here) else measured  # this machine's rates where it has measured any
    left = table.assign(left=table.epochs - table.done).groupby(["problem", "options"]).left.sum()
    total, unmeasured = 0.0, []
    for (problem, options), epochs in left.items():
        if epochs <= 0:
            continue
        if (problem, options) in live:
            total += epochs * live[(problem, options)]
            continue
        rates = measured[(measured.problem == problem) & (measured.options == options)].s_per_member_epoch
        if rates.empty:
            unmeasured.append(problem)
        else:
            total += epochs * float(rates.median())
    return total, sorted(set(unmeasured))


def report(state: StudyState, now: float | None = None, stale: Collection[Path] = ()) -> str:
    """The text ``adabench status`` prints. ``stale``: the study's outputs that no longer hold (made for another
    config, or from other records: adabench.study.staleness.stale_tuning); the search's rounds and choices
    among them count as not made, as the next Snakemake run removes them."""
    study = state.study
    chosen = tuned_runs_on_disk(study, stale)
    table = progress_table(state, chosen, stale)
    by_stage = (table.groupby(["stage", "problem"], sort=False)[["complete", "runs", "done", "epochs"]].sum()
                .reset_index())
    lines = [f"study {study.name}: {int(table.complete.sum())} of {len(table)} runs complete, "
             f"{int(table.done.sum())} of {int(table.epochs.sum())} epochs trained"]
    lines.append(f"{'stage':<6} {'problem':<22} {'runs':>11} {'epochs':>13}")
    for row in by_stage.itertuples():
        lines.append(f"{row.stage:<6} {row.problem:<22} {f'{row.complete}/{row.runs}':>11} "
                     f"{f'{row.done}/{row.epochs}':>13}")
    searching = [f"{problem} ({len(search_rounds_on_disk(study, problem, stale))} rounds made)"
                 for problem in (study.tuning["problems"] if study.tuning else []) if problem not in chosen]
    if searching:
        lines.append(f"the learning-rate search has not chosen yet on {', '.join(searching)}: the rates its next "
                     "rounds add are not counted yet, and the tuned reruns count as one run per tuned optimizer and "
                     "seed until it has chosen")
    if state.damaged:
        lines.append(f"{len(state.damaged)} runs have damaged records and will be trained again, e.g. "
                     f"{next(iter(state.damaged.values()))}")
    damaged: list[str] = []
    jobs = running_jobs(study, now, damaged)
    lines += [f"WARNING: {why}" for why in damaged]
    lines.append(f"training now: {len(jobs)} job(s)" + (":" if jobs else ""))
    for job in jobs:
        where = f"pid {job.pid}" + ("" if job.host == platform.node() else f" on {job.host}")
        if job.stalled:
            lines.append(f"  {job.job}: STALLED, no progress for {duration(job.quiet_s)} ({STALLED_EPOCHS} x its "
                         f"{job.seconds_per_epoch:.0f} s {job.unit}) [{where}]: a stopped or hung process")
        elif job.seconds_per_epoch is None:
            lines.append(f"  {job.job}: starting, {job.size} runs [{where}]")
        else:
            lines.append(f"  {job.job}: {job.unit} {job.epoch}/{job.epochs}, {job.active} of {job.size} runs active, "
                         f"{job.seconds_per_epoch:.1f} s/{job.unit}, job ETA {duration(job.eta_s)} [{where}]")
    seconds, unmeasured = remaining_seconds(table, study, jobs)
    if table.done.sum() < table.epochs.sum() and unmeasured and not seconds:
        lines.append(f"left: {int(table.epochs.sum() - table.done.sum())} run-epochs, nothing measured yet "
                     f"({', '.join(unmeasured)}); ETA unknown")
    elif table.done.sum() < table.epochs.sum():
        parallel = max(1, len([job for job in jobs if not job.stalled]))
        lines.append(f"left: {duration(seconds)} of one-job training at the seconds per run-epoch the running jobs "
                     f"measure (else this study's finished runs); ETA {duration(seconds / parallel)} at {parallel} "
                     "job(s) at a time"
                     + (f" (not counting {', '.join(unmeasured)}: nothing measured yet)" if unmeasured else ""))
    else:
        lines.append("every run is complete")
    return "\n".join(lines)


@dataclass
class Stopped:
    """What ``adabench stop`` found: how many of the study's processes, and those it could not see end (each
    named with its pid): still alive when the wait ended, or not signalled (see :func:`stop`)."""

    found: int
    left: list[str]


def stop(study: Study, log=print, wait_s: float = 0.0) -> Stopped:
    """Stop a running study within one epoch: SIGTERM to its Snakemake (it starts no more jobs), then to each of
    its training jobs (each finishes the epoch in progress, writes its checkpoints and exits; a plain rerun resumes
    them). A process is signalled only when its recorded start time is its pid's now (locks.same_process): a pid
    alone may have been taken by another process. With ``wait_s``, waits that long for them to exit; ``left``
    names those still alive then, and those not signalled (no start time recorded, another user's)."""
    signalled, damaged, left = [], [], []
    lock = study.root / "snakemake.lock"
    try:
        holder = holder_if_held(lock)
    except OSError as error:  # a read-only or damaged study: its training jobs may still be stopped
        log(f"WARNING: {lock}: cannot probe whether Snakemake holds it ({error.strerror or error}); "
            "Snakemake not stopped")
        holder, left = None, [f"Snakemake, if any ({lock}: {error.strerror or error})"]
    targets = ([("Snakemake", holder)] if holder else []) + [
        (f"training job {job.job}", {"pid": job.pid, "host": job.host, "start": job.start})
        for job in running_jobs(study, None, damaged)]
    for why in damaged:
        log(f"WARNING: {why}")
    for what, process in targets:
        named = f"{what} (pid {process.get('pid', '?')})"
        if process.get("host") != platform.node():
            log(f"{what} runs on {process.get('host')}: stop it there (adabench stop on that host)")
            continue
        if not same_process(process):
            if process.get("start") is None:
                log(f"{named}: not signalled: its record holds no process start time, so that pid may be another "
                    "process by now")
                left.append(named)
            continue  # otherwise it ended (its pid is gone, or is another process now)
        try:
            os.kill(int(process["pid"]), signal.SIGTERM)
        except ProcessLookupError:
            continue
        except PermissionError:
            log(f"{named}: not allowed to signal it (another user's process)")
            left.append(named)
            continue
        signalled.append((named, process))
        log(f"{named}: asked to stop")
    deadline = time.monotonic() + wait_s
    while wait_s and signalled:
        signalled = [(named, process) for named, process in signalled if same_process(process)]
        if not signalled or time.monotonic() >= deadline:
            break
        time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
    if wait_s:
        left += [named for named, _ in signalled]
    return Stopped(len(targets), left)
