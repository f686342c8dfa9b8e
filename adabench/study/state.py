"""A study's state on disk: which of its runs are complete, which jobs still have runs to train, and the digest of
the records an output is made from (a rule's params; adabench.study.staleness says what no longer holds).

The run records are the source of truth. A run is complete when its verified ``summary.json`` is of its own
identity (adabench.core.records); the plan fixes which job trains each run, and a job is pending while any of its runs
is not complete. Only pending jobs enter Snakemake's DAG, so a clone with a study's complete records trains
nothing again, wherever it runs. The state is read where Snakemake plans, once per invocation: a cluster job's
Snakemake reads no records (workflow/rules/common.smk), and a training job there skips its runs already complete.

The runs the tuning search adds (its later rounds, the tuned reruns) are known only from the search's own outputs,
Snakemake checkpoints (workflow/rules/tuning.smk): their jobs are pending as long as any of their runs is not
complete (:func:`pending`), read when Snakemake evaluates the checkpoint's consumers.
"""
from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..core.records import RecordError, read_summary
from ..core.spec import RunSpec
from .design import Job, Study, StudyProblems
from .made_from import records_digest
from .plan import PLAN_COLUMNS
from .search import next_rates


@dataclass
class StudyState:
    study: Study
    complete: dict[str, dict] = field(default_factory=dict)  # run key -> verified summary
    damaged: dict[str, str] = field(default_factory=dict)  # run key -> why its records are not usable

    def is_complete(self, spec: RunSpec) -> bool:
        return spec.key in self.complete

    def pending_jobs(self) -> dict[str, Job]:
        """Every job of the plan that still has runs to train, cut to them. A job made only of complete runs is
        not pending."""
        pending = {}
        for job in self.study.jobs.values():
            runs = tuple(spec for spec in job.runs if not self.is_complete(spec))
            if runs:
                pending[job.id] = Job(job.id, job.problem, runs=runs)
        return pending

    def run_keys(self, role: str | None = None) -> list[str]:
        """The keys of the plan's runs (of one role)."""
        return list(dict.fromkeys(spec.key for spec in self.study.runs(role)))


def verified(study: StudyProblems, spec: RunSpec) -> tuple[dict | None, str]:
    """(summary, "") for a complete run of ``spec``; (None, why) where its records are damaged or of another run,
    (None, "") where it has none."""
    directory = study.run_dir(spec)
    try:
        summary = read_summary(directory)
    except RecordError as error:
        return None, str(error) if (directory / "summary.json").exists() else ""
    if summary["identity"] != spec.identity():
        return None, f"{directory}: a run of another configuration"
    if summary["run_key"] != spec.key:  # digests recomputed over another run's key: it would be filed under that run
        return None, f"{directory / 'summary.json'}: names run {summary['run_key']!r}, not its own {spec.key!r}"
    return summary, ""


def read_state(study: Study) -> StudyState:
    """Read and verify the records of every run the study plans."""
    state = StudyState(study)
    for spec in study.runs():
        summary, why = verified(study, spec)
        if summary is not None:
            state.complete[spec.key] = summary
        elif why:
            state.damaged[spec.key] = why
    return state


def records_param(state: StudyState, run_dirs) -> str:
    """The digest of the complete records in ``run_dirs`` (study.made_from.records_digest: what the sidecar of an
    output made from them records as its records_sha256), for the params of a rule that reads them: a record that
    changes (retrained, brought in by git) changes the params, and Snakemake reruns the rule and everything made
    from its outputs. Snakemake evaluates params when it plans, and again just before the job runs (after the
    training it waits for): the runs complete when the study was read are taken from ``state`` (training never
    touches a complete run), the others are read from disk each time, so that the params a job ran with are those
    the next invocation plans with."""
    summaries, runs = {}, Path(state.study.root) / "runs"
    for directory in dict.fromkeys(str(path) for path in run_dirs):
        # every run directory the plans hold is the study's run_dir of its run, runs/<its key>: a path elsewhere
        # (a plan edited by hand) stops the planning with relative_to's ValueError, which names it
        summary = complete_record(state, Path(directory).relative_to(runs).as_posix())
        if summary is not None:
            summaries[directory] = summary  # else not complete (yet): its job trains it, and the rule waits for it
    return records_digest(summaries)


def complete_record(state: StudyState, key: str) -> dict | None:
    """The verified summary of run ``key``, or None where it has none that verifies: from ``state`` where the
    study's read found it complete (training never touches a complete run), else read from its directory
    (summary_on_disk: a run the tuning search added, or one trained since). A record naming another run's key is
    not this run's (adabench.core.records.complete_summary)."""
    summary = state.complete.get(key) or summary_on_disk(Path(state.study.root) / "runs" / key)
    return summary if summary is not None and summary["run_key"] == key else None


# verified summaries by run directory, with the sizes and times of the files they were verified from: a planning
# process asks for the records of the search's runs once per rule that reads them (every round reads the rounds
# before it), and verifying hashes and parses every metrics.csv
_READ: dict[str, tuple[tuple, dict | None]] = {}


def summary_on_disk(directory: Path) -> dict | None:
    """The verified summary of the run in ``directory`` (records.read_summary), None where it has none that
    verifies; read again only when its files changed."""
    def signature(path: Path):
        try:
            found = path.stat()
            return found.st_mtime_ns, found.st_size, found.st_ino
        except OSError:
            return None

    stamp = (signature(directory / "summary.json"), signature(directory / "metrics.csv"))
    cached = _READ.get(str(directory))
    if cached is None or cached[0] != stamp or None in stamp:
        try:
            summary = read_summary(directory)
        except (RecordError, OSError):
            summary = None
        cached = _READ[str(directory)] = (stamp, summary)
    return cached[1]


def pending(study: StudyProblems, jobs: list[Job]) -> list[Job]:
    """The jobs that have a run without complete records (the search's and the tuned reruns' jobs)."""
    return [job for job in jobs if any(verified(study, spec)[0] is None for spec in job.runs)]


def plan_rows(study: Study, jobs: list[Job], role: str) -> pd.DataFrame:
    """The plan's rows of runs the tuning added (``role`` "grid" for the search's later rounds, "tuned" for the
    reruns): what the analysis and the MLflow sync read beside the plan. A run that the plan holds too keeps its
    plan roles there, and this role here."""
    rows = [study.plan_row(spec, {role}, job.id) for job in jobs for spec in job.runs]
    return pd.DataFrame(rows, columns=PLAN_COLUMNS)


def tuned_plan(study: Study, chosen: dict[tuple[str, str], float]) -> pd.DataFrame:
    """The tuned reruns, every one (those the plan holds with the job that trains them there)."""
    planned = {spec.key: job.id for job in study.jobs.values() for spec in job.runs}
    by_key = {spec.key: job.id for job in study.tuned_jobs(chosen) for spec in job.runs}
    rows = [study.plan_row(spec, {"tuned"}, by_key.get(spec.key) or planned[spec.key])
            for spec in study.tuned_runs(chosen)]
    return pd.DataFrame(rows, columns=PLAN_COLUMNS)


def chosen_rates(selection: pd.DataFrame) -> dict[tuple[str, str], float]:
    """(problem, optimizer) -> the chosen learning rate, for every optimizer the search chose one for (none where
    no rate trains)."""
    chosen = selection[selection.lr.notna()]
    return {(row.problem, row.optimizer): float(row.lr) for row in chosen.itertuples()}


def round_file(study: StudyProblems, problem: str, round_: int) -> str:
    """A search round's decisions (the search_round checkpoint's output)."""
    return study.path("tuning", "search", problem, f"round-{round_}.csv")


def searched_specs(study: Study, problem: str, rounds: list[pd.DataFrame]) -> list[RunSpec]:
    """Every run the search of ``problem`` has asked for: the configured grid, and what each round added."""
    specs = [spec for spec in study.grid_runs() if spec.problem == problem]
    for round_, decisions in enumerate(rounds):
        specs += [spec for job in study.round_jobs(problem, round_ + 1, next_rates(decisions)) for spec in job.runs]
    return specs


def search_rounds_on_disk(study: StudyProblems, problem: str, stale: Collection[Path] = ()) -> list[pd.DataFrame]:
    """The decisions of a problem's search rounds made so far, in order (as far as they go without a gap, or a
    round among ``stale``: outputs that no longer hold, which the next Snakemake run removes)."""
    rounds, round_ = [], 0
    while (path := Path(round_file(study, problem, round_))).exists() and path not in stale:
        rounds.append(pd.read_csv(path))
        round_ += 1
    return rounds


def searched_on_disk(study: Study, stale: Collection[Path] = ()) -> list[RunSpec]:
    """Every run the search has asked for so far, by the rounds on disk (the grid's runs among them)."""
    return [spec for problem in (study.tuning["problems"] if study.tuning else [])
            for spec in searched_specs(study, problem, search_rounds_on_disk(study, problem, stale))]


def choice_file(study: StudyProblems, problem: str) -> str:
    """A problem's choice of each optimizer's learning rate (the search_ended checkpoint's output, made once its
    search has ended): its tuned reruns are known from it, whatever the other problems' searches are doing."""
    return study.path("tuning", "search", problem, "choice.csv")


def tuned_runs_on_disk(study: Study, stale: Collection[Path] = ()) -> dict[str, list[RunSpec]]:
    """Per tuned problem whose search has chosen, the tuned reruns of its choice (a problem still searched is
    not among them, nor one whose choice is among ``stale``: made for another search, or from other records)."""
    files = {problem: Path(choice_file(study, problem)) for problem in (study.tuning or {}).get("problems", [])}
    return {problem: study.tuned_runs(chosen_rates(pd.read_csv(path))) for problem, path in files.items()
            if path.exists() and path not in stale}
