"""What the workflow's jobs do; scripts/ only unpack Snakemake's arguments and call these."""
from __future__ import annotations

import json
import math
import os
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import torch

from ..analysis.aggregate import chance_levels as declared_levels
from ..analysis.aggregate import gather, run_row
from ..analysis.tuning import lr_sensitivity, select
from ..core.atomic import atomic_write_text
from ..core.data import prepare_fashion_mnist
from ..core.optim import optimizer_arguments, packaged_optimizer
from ..core.packaged import define
from ..core.problems import PROBLEMS
from ..core.records import RecordError, read_run, read_summary
from ..core.runtime import PREEMPTED_EXIT_CODE, Preempted, stop_on_sigterm
from ..core.spec import RunSpec
from ..core.trainer import train_population
from ..study.config import load_plugins
from ..study.design import Study, StudyProblems
from ..study.layout import StudyLayout
from ..study.made_from import write_sources
from ..study.plan import read_plan, roles_by_dir, with_role
from ..study.progress import write_progress
from ..study.search import Lattice, decide_all, next_rates
from ..study.state import chosen_rates, plan_rows, round_file, searched_specs, tuned_plan, verified
from .joblog import LogFile, job_log
from .store import ensure_store
from .tracking import mlflow_trackers, sync_runs


def start_job(snakemake) -> LogFile:
    """What every rule's script that reads the registries does first: its log file, and the study's plugins
    imported (a plugin's problems and optimizers must be registered wherever the registries are read)."""
    log = job_log(snakemake)
    load_plugins(snakemake.config.get("plugins", []))
    define(snakemake.config.get("packaged"))  # the study's aliases of packaged optimizers (checked by the config)
    return log


def die_with_parent(log, interval: float = 1.0) -> None:
    """End this process as soon as the process that started it (Snakemake) is gone.

    Killing Snakemake alone would otherwise leave its training jobs running, and a rerun would train the same
    run directories twice at once. Nothing is lost: every completed epoch is in the checkpoints.
    """
    parent = os.getppid()

    def watch():
        while True:
            time.sleep(interval)
            if os.getppid() != parent:
                log(f"the process that started this job ({parent}) is gone: stopping; the checkpoints hold every "
                    "completed epoch")
                os._exit(PREEMPTED_EXIT_CODE)

    threading.Thread(target=watch, daemon=True, name="die-with-parent").start()


def complete_runs_of(plan: Path, problem: str) -> list[dict]:
    """The verified summaries of the complete runs of ``problem`` in the study's plan (tuned reruns are found by
    their own jobs): what a job's new runs will be compared with."""
    summaries = []
    runs = read_plan(plan)
    for run_dir, key in runs[(runs.problem == problem) & (runs.run_dir != "")][["run_dir", "key"]].itertuples(
            index=False):  # a tuned slot has none yet
        try:
            summary = read_summary(Path(run_dir))
        except RecordError:
            continue
        if summary["run_key"] == key:  # a record naming another run is not this run's (it is trained again)
            summaries.append(summary)
    return summaries


def train_job(config: dict, job_id: str, job: dict, marker: Path, threads: int, log: LogFile, plan: Path) -> None:
    """Train one job's population: ``job`` as the rule's params give it (Job.params: its runs); the study's other
    runs of its problem are read from ``plan``. Runs already complete are skipped, so a failed job loses nothing
    that finished before it; SIGTERM stops after the current epoch with every checkpoint written."""
    stop_on_sigterm()
    die_with_parent(log)
    torch.set_num_threads(threads)
    study = StudyProblems(config)
    specs = list({spec.key: spec for spec in (RunSpec.from_dict(run) for run in job["runs"])}.values())
    refuse_other_packages(specs)
    trackers = mlflow_trackers(study.tracking_uri(), study.experiment, config["mlflow"]["timeout_s"], log)
    progress_file = Path(study.progress_file(job_id))
    write_progress(progress_file, job_id, job["problem"], {"size": len(specs)})  # `adabench status`: starting

    def on_epoch(progress: dict) -> None:
        write_progress(progress_file, job_id, job["problem"], progress)

    try:
        train_population([(spec, study.run_dir(spec)) for spec in specs], device=study.device(job["problem"]),
                         deterministic=config["deterministic"], trackers=trackers, log=log, on_epoch=on_epoch,
                         trained_beside=complete_runs_of(plan, job["problem"]))
    except Preempted as stop:
        log(str(stop))
        sys.exit(PREEMPTED_EXIT_CODE)  # the scheduler requeues or Snakemake retries; the rerun resumes
    finally:
        progress_file.unlink(missing_ok=True)
    atomic_write_text(Path(marker), json.dumps([{"key": spec.key, "run_dir": str(study.run_dir(spec))}
                                                for spec in specs], indent=2) + "\n")


def refuse_other_packages(specs: list[RunSpec]) -> None:
    """A job trains what its plan named: a packaged optimizer installed here at another version than the plan's
    (a cluster node with another install) would compute other runs under the plan's identity."""
    for spec in specs:
        if spec.package is not None and (installed := packaged_optimizer(spec.optimizer).identity()) != spec.package:
            raise SystemExit(f"run {spec.key}: the plan names {spec.optimizer} from {spec.package['distribution']} "
                             f"{spec.package['version']}, this machine has {installed['distribution']} "
                             f"{installed['version']}: install the plan's version here, or plan again where "
                             "this one is installed (a rerun of Snakemake there)")


def chance_levels(problems: list[str]) -> dict[str, float]:
    """Per problem, the chance level of its selection metric where the problem declares one (from the registry)."""
    return declared_levels({problem: PROBLEMS.get(problem).declarations() for problem in problems})


def search_limits(study: Study) -> dict[str, tuple[int, int]]:
    """Per tuned optimizer, the lattice indices of the lowest and highest rates the search may try: the study's
    ``tuning.lr_limits`` within the optimizer's own valid range of ``lr``."""
    lattice, limits = Lattice.of(study.tuning), {}
    for optimizer in study.tuning["optimizers"]:
        schema = optimizer_arguments(optimizer)["lr"].schema
        low = max(study.tuning["lr_limits"]["low"], schema.get("minimum", 0.0), schema.get("exclusiveMinimum", 0.0))
        high = min(study.tuning["lr_limits"]["high"], schema.get("maximum", math.inf),
                   schema.get("exclusiveMaximum", math.inf))
        limits[optimizer] = lattice.limits(low, high)
    return limits


def search_round(config: dict, problem: str, round_: int, output: Path, sources: Path, log: LogFile) -> None:
    """One round of the search on ``problem``: score every rate tried so far from its runs' records, decide per
    optimizer what comes next (adabench.study.search.decide), write the decisions (and which records they came from)."""
    study = Study(config)
    rounds = [pd.read_csv(round_file(study, problem, earlier)) for earlier in range(round_)]
    summaries = searched_summaries(study, problem, rounds)
    runs = pd.DataFrame([run_row(summary, {"grid"}) for summary in summaries.values()])
    decisions = decide_all(lr_sensitivity(runs), Lattice.of(study.tuning), search_limits(study),
                           chance_levels([problem]), round_)
    # the sidecar first: a round on disk always has the sidecar that vouches for it (adabench status, reading beside
    # this job, would otherwise count a round without one as not made); a round's sidecar alone is never read
    write_sources(Path(sources), summaries)
    atomic_write_text(Path(output), decisions.to_csv(index=False))
    for row in decisions.itertuples():
        log(f"{problem}/{row.optimizer} round {round_}: {row.action} ({row.note})"
            + (f"; next: {row.next_lrs}" if isinstance(row.next_lrs, str) and row.next_lrs else ""))


def searched_summaries(study: Study, problem: str, rounds: list[pd.DataFrame]) -> dict[str, dict]:
    """Run key -> verified summary of every run the search of ``problem`` asked for before ``rounds`` ended:
    what a round scores, and the choice."""
    summaries = {}
    for spec in searched_specs(study, problem, rounds):
        summary, why = verified(study, spec)
        if summary is None:
            raise RecordError(f"{study.run_dir(spec)}: {why or 'no records'}; the search needs every run it scores: "
                              "run snakemake again (its job trains it)")
        summaries[spec.key] = summary
    return summaries


def search_ended(config: dict, problem: str, rounds: list[str], outputs, log: LogFile) -> None:
    """A problem's search has ended (its last round adds no rate): every round's decisions in one table, and each
    optimizer's learning rate chosen on validation metrics only (adabench.analysis.tuning.select), from the records
    of every run the search asked for (those its last round scored). Its tuned reruns start from this choice,
    whether or not the other problems' searches have ended."""
    study = Study(config)
    decisions = [pd.read_csv(path) for path in rounds]
    summaries = searched_summaries(study, problem, decisions)
    choice = select(pd.DataFrame([run_row(summary, {"grid"}) for summary in summaries.values()]),
                    chance_levels([problem]))
    # its own sidecar (a round file lost or remade leaves it to be checked), written first as a round's is (alone,
    # it is fresh: it finds nothing stale, and the missing choice is made again)
    write_sources(Path(outputs.sources), summaries)
    atomic_write_text(Path(outputs.rounds), pd.concat(decisions, ignore_index=True).to_csv(index=False))
    atomic_write_text(Path(outputs.choice), choice.to_csv(index=False))
    log(f"{problem}: the search ended after {len(rounds)} rounds")
    for row in choice.itertuples():
        edge = f"; at the {row.grid_edge} rate searched (a declared limit)" if row.grid_edge else ""
        chosen = f"lr {row.lr}" if row.trains else "does not train (no rate above chance)"
        log(f"{problem}/{row.optimizer}: {chosen} ({row.metric} {row.validation_score:.4g}){edge}")


def select_tuned(config: dict, plan: Path, searches: list[str], choices: list[str], outputs, log: LogFile) -> None:
    """The tuning's tables once every problem's search has ended: each problem's choice (search_ended) in one
    table, every rate's scores, every round's decisions, the runs the search added and the tuned reruns (in the
    plan's columns), and which grid records the scores were read from."""
    study = Study(config)
    search = pd.concat([pd.read_csv(path) for path in searches], ignore_index=True)  # each problem's rounds
    rounds = {problem: [made for _, made in part.groupby("round", sort=True)]
              for problem, part in search.groupby("problem", sort=False)}
    search_jobs = [job for problem, decisions in rounds.items() for round_, made in enumerate(decisions)
                   for job in study.round_jobs(problem, round_ + 1, next_rates(made))]
    search_plan = plan_rows(study, search_jobs, "grid")
    runs, _, summaries = gather(roles_by_dir(with_role(read_plan(plan), "grid"), search_plan))
    # read as written (pandas' default float parser may be one unit in the last place off)
    selection = (pd.concat([pd.read_csv(path, float_precision="round_trip") for path in choices], ignore_index=True)
                 .sort_values(["problem", "optimizer"], kind="stable", ignore_index=True))
    atomic_write_text(Path(outputs.selection), selection.to_csv(index=False))
    atomic_write_text(Path(outputs.sensitivity), lr_sensitivity(runs).to_csv(index=False))
    atomic_write_text(Path(outputs.search), search.to_csv(index=False))
    atomic_write_text(Path(outputs.search_runs), search_plan.to_csv(index=False))
    atomic_write_text(Path(outputs.tuned_runs), tuned_plan(study, chosen_rates(selection)).to_csv(index=False))
    write_sources(Path(outputs.sources), summaries)
    log(f"the tuning's tables: {len(selection)} choices of {len(rounds)} problems' searches")


def sync_mlflow(config: dict, run_dirs: dict[str, set[str]], output: Path, log: LogFile) -> None:
    """Bring MLflow up to date with the run records: every complete run, each step once, one run per key."""
    study = StudyLayout(config)
    ensure_store(study, log)  # damaged since it was created: rebuilt, then filled from the records below
    records = []
    for directory in sorted(run_dirs):
        try:
            records.append((Path(directory), *read_run(Path(directory))))
        except RecordError as error:
            log(f"WARNING: {error}; not synced")
    counts = sync_runs(study.tracking_uri(), study.experiment, records, log)
    log(f"MLflow synced from {len(records)} run records: {counts}")
    write_sources(Path(output), {str(directory): summary for directory, summary, _ in records}, counts)


def prepare(raw_files: list[str], output: Path, log: LogFile) -> None:
    shapes = prepare_fashion_mnist(Path(raw_files[0]).parent, Path(output))
    log(f"prepared {output}: {shapes}")
