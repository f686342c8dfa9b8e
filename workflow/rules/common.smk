# The study: its config checked (defaults filled in), its plan made, its state read from the run records, the paths
# of what it computes. Only jobs with runs left to train enter the DAG (adabench.study.state).
import hashlib
import os
import re
from pathlib import Path

import pandas as pd
import torch

from adabench.core.problems import PROBLEMS
from adabench.study.config import ConfigError, validate_config
from adabench.study.design import SEARCH_JOB, TUNED_JOB, Study
from adabench.study.plan import study_run_dirs
from adabench.study.search import finished, next_rates
from adabench.study.state import (chosen_rates, choice_file, pending, read_state, records_param, round_file,
                                  search_rounds_on_disk, searched_specs)
from adabench.workflow.housekeeping import (StudyLocked, incomplete_outputs, invocation_executes, refuse_symlinks,
                                            remove_stale_outputs, stale_outputs, take_study_lock)

try:
    config.update(validate_config(config))  # in place: the jobs' scripts see the same, filled-in config
except ConfigError as error:
    raise WorkflowError(str(error)) from None
# the reference report's numbers: from the working directory, else the workflow's own config/ (-d elsewhere)
if not Path(config["reference"]["results"]).exists():
    config["reference"]["results"] = str(Path(workflow.basedir) / config["reference"]["results"])

try:
    STUDY = Study(config)  # refuses, naming both, two settings that would share one run key
except ConfigError as error:
    raise WorkflowError(str(error)) from None
# The records are read and verified once, by the Snakemake that plans the study (here, or a cluster's login node).
# A cluster job's own Snakemake (workflow.is_main_process False) runs the one job it was sent, of the plan as the
# config makes it: a training job there holds all its runs and skips those already complete
# (adabench.core.trainer.train_population), and what is computed from the records' state (which jobs the analysis
# waits for, the records' digests in params: Snakemake records params only in the planning process) is not needed.
STATE = read_state(STUDY) if workflow.is_main_process else None
JOBS = dict(STUDY.jobs) if STATE is None else STATE.pending_jobs()
if STATE is not None:
    DAMAGED = f", {len(STATE.damaged)} damaged (trained again)" if STATE.damaged else ""
    print(f"adabench: study {STUDY.name!r}: {len(STATE.complete)} of {len(STATE.run_keys())} planned runs complete "
          f"(their records verified){DAMAGED}; {len(JOBS)} planned jobs with runs to train")
# every rule's software environment (`--sdm conda`), relative to the rule files in workflow/rules/
ENV = "../../environment.yml"
PLAN = STUDY.path("plan.csv")
PROBLEMS_FILE = STUDY.path("problems.json")  # what the analysis reads of each problem (Problem.declarations)


def study_path(*parts):
    return STUDY.path(*parts)


# MLflow: MLFLOW_TRACKING_URI (a shared server on a cluster) reaches every job
if "MLFLOW_TRACKING_URI" in os.environ:

    envvars:
        "MLFLOW_TRACKING_URI",


STORE = study_path("mlflow", "experiment.json")
SYNCED = study_path("mlflow", "synced.json")
TUNING = config["tuning"]
SELECTION = study_path("tuning", "selection.csv")
SEARCH_RUNS = study_path("tuning", "search_runs.csv")
TUNED_RUNS = study_path("tuning", "tuned_runs.csv")
RUNS_TABLE = study_path("tables", "runs.csv")
CURVES_TABLE = study_path("tables", "curves.csv.gz")


# the markers of the planned jobs this run trains: what the analysis waits for (removed once it has read them)
PENDING_MARKERS = [] if STATE is None else [STUDY.job_marker(job_id) for job_id in JOBS]
GRID_KEYS = {spec.key for spec in STUDY.runs("grid")}


def carried(path):
    """An input that git carries (committed with a study: the plan, problems.json, the tuning's rounds, choices and
    plans), read as ancient: a clone's file times are those of its checkout, and Snakemake 9 compares file times
    whatever rerun-triggers says (snakemake#2328), so they would remake what reads it in every fresh clone. What makes
    it runs only where it is missing (adabench.workflow.housekeeping removes it when it no longer holds). Nothing
    else is read as ancient: a job is not rerun for an ancient input that exists even when the job making that
    input runs (snakemake#4166)."""
    return ancient(path)


def run_tables(wildcards):
    """Where the analysis finds the study's runs: the plan, and the tuning's plans where the study tunes (the
    search's later rounds and the tuned reruns)."""
    if not TUNING:
        return {"plan": carried(PLAN)}
    return {"plan": carried(PLAN), "search_runs": carried(SEARCH_RUNS), "tuned_runs": carried(TUNED_RUNS)}


# --- the tuning search: rounds (checkpoints), each scored from its runs' records, then the choice -------------
def search_round_inputs(wildcards):
    """A round of the search on a problem waits for the jobs of its rates: the plan's grid jobs in round 0, then
    those of the rates the previous round added (known once that round's checkpoint has run)."""
    problem, round_ = wildcards.problem, int(wildcards.round)
    inputs = {"plan": carried(PLAN)}
    if round_ == 0:
        jobs = [job for job in JOBS.values() if job.problem == problem and any(s.key in GRID_KEYS for s in job.runs)]
    else:
        # carried, as the other outputs made from records: a round whose records changed has other params (every
        # later round reads them too: search_records), and is removed with every later round where Snakemake has no
        # metadata (adabench.workflow.housekeeping); a change of what the search may try changes every round's params
        previous = checkpoints.search_round.get(problem=problem, round=round_ - 1).output.decisions
        inputs["previous"] = carried(previous)
        jobs = pending(STUDY, STUDY.round_jobs(problem, round_, next_rates(pd.read_csv(previous))))
    inputs["markers"] = [STUDY.job_marker(job.id) for job in jobs]
    return inputs


def search_rounds(wildcards):
    """Every round of a problem's search, up to the round that adds no rate: the search has ended there."""
    files, round_ = [], 0
    while True:
        decisions = checkpoints.search_round.get(problem=wildcards.problem, round=round_).output.decisions
        files.append(carried(decisions))
        if finished(pd.read_csv(decisions)):
            return files
        round_ += 1


def search_params(problem):
    """What a problem's search may try and with what: a change (the grid, its seeds or limits, the optimizers
    searched, the grid runs' options) makes its rounds, and the choice, again."""
    keys = sorted(spec.key for spec in STUDY.grid_runs() if spec.problem == problem)
    return {**{name: TUNING[name] for name in ("lr_grid", "grid_seeds", "lr_limits", "optimizers")},
            "grid_runs": hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16]}


def tuned_markers(problem):
    """The input function of the markers of ``problem``'s tuned reruns' jobs that have runs to train, known once its
    search has ended (its choice, a checkpoint). One function per problem, each an input of its own: Snakemake
    evaluates each apart, so a problem's tuned reruns enter the DAG (and train) while another problem's search
    runs."""

    def markers(wildcards):
        if STATE is None:
            return []
        choice = checkpoints.search_ended.get(problem=problem).output.choice
        jobs = pending(STUDY, STUDY.tuned_jobs(chosen_rates(pd.read_csv(choice))))
        return [STUDY.job_marker(job.id) for job in jobs]

    return markers


TUNED_MARKERS = {f"tuned_{problem}": tuned_markers(problem) for problem in (TUNING["problems"] if TUNING else [])}


def job_of(job_id):
    """A training job: one of the plan's, or one the search added (its runs read from the checkpoint that made it)."""
    if job_id in JOBS:
        return JOBS[job_id]
    if match := SEARCH_JOB.fullmatch(job_id):
        problem, round_ = match["problem"], int(match["round"])
        jobs = STUDY.round_jobs(problem, round_, next_rates(pd.read_csv(round_file(STUDY, problem, round_ - 1))))
    else:
        problem = TUNED_JOB.fullmatch(job_id)["problem"]
        jobs = STUDY.tuned_jobs(chosen_rates(pd.read_csv(choice_file(STUDY, problem))))
    return {job.id: job for job in jobs}[job_id]


def job_inputs(wildcards):
    """A job needs the MLflow store created (a fresh SQLite store must not be created by jobs at once), the plan
    (its problem's runs trained before it are checked against its own: the same data), its data, and for a job the
    search added, the checkpoint output its runs are read from. What the job trains is its params. None is ancient:
    a training job is in the DAG only while it has runs to train, so it runs whatever their file times say; and an
    ancient input would hide it from Snakemake where the job making that input is rerun as incomplete (Snakemake
    then skips the jobs that read it only as ancient, even with their outputs missing: snakemake#4166)."""
    job = job_of(wildcards.job)
    inputs = {"store": STORE, "plan": PLAN}
    if "data_file" in STUDY.options(job.problem):
        inputs["data"] = STUDY.options(job.problem)["data_file"]
    if match := SEARCH_JOB.fullmatch(wildcards.job):
        inputs["round"] = round_file(STUDY, match["problem"], int(match["round"]) - 1)
    elif match := TUNED_JOB.fullmatch(wildcards.job):
        inputs["choice"] = choice_file(STUDY, match["problem"])
    return inputs


def job_gpus(wildcards):
    """1 for a job that trains on a GPU, else 0. With device auto that is a GPU wherever CUDA exists: here, or
    on a cluster's nodes (Snakemake submits the job elsewhere). On a CPU-only machine no job asks for one, so
    `--resources gpu=N` never serialises CPU jobs."""
    device = STUDY.device(job_of(wildcards.job).problem)
    if device == "auto":
        return int(torch.cuda.is_available() or workflow.non_local_exec)
    return int(device == "cuda")


# --- tables and figures ----------------------------------------------------------------------------------------
TABLE_NAMES = ["comparison", "reproduction", "optimizer_overhead", "compute", "implementation_checks"] + (
    ["protocols", "paired_tests", "time_to_target", "gap_share"] if TUNING else [])
TABLES = expand(study_path("tables", "{table}.{ext}"), table=TABLE_NAMES, ext=["md", "tex", "csv"])
if TUNING:
    TABLES.append(study_path("tuning", "selection_check.json"))

# figure -> the tables it is drawn from; the problem-specific kinds are those the study's problems declare
FIGURE_INPUTS = {name: {"curves": CURVES_TABLE, "runs": RUNS_TABLE} for name in ("learning_curves", "final_metric",
                                                                             "effective_lr")}
for problem in dict.fromkeys(spec.problem for spec in STUDY.runs()):
    for kind in PROBLEMS.get(problem).figures:
        FIGURE_INPUTS[kind] = {"curves": CURVES_TABLE, "runs": RUNS_TABLE}
FIGURE_INPUTS["gerschgorin"] = {}
if TUNING:
    FIGURE_INPUTS.update(
        lr_sensitivity={
            "sensitivity": study_path("tuning", "lr_sensitivity.csv"),
            "selection": SELECTION,
        },
        # the time-to-target table says which optimizers the profile leaves out (not run on every problem)
        performance_profile={"profile": study_path("tables", "performance_profile.csv"),
                             "times": study_path("tables", "time_to_target.csv")},
        tuning_budget={"budget": study_path("tuning", "tuning_budget.csv"),
                       "stability": study_path("tuning", "choice_stability.csv")},
        time_to_target={"times": study_path("tables", "time_to_target.csv")},
    )
for inputs in FIGURE_INPUTS.values():
    inputs["problems"] = carried(PROBLEMS_FILE)
FIGURE_NAMES = list(FIGURE_INPUTS)
# every optimizer the study runs: each takes one color in every figure and on the results page, whichever of them a
# plot shows (adabench.analysis.colors)
STUDY_OPTIMIZERS = sorted({str(spec.optimizer) for spec in STUDY.runs()})
FIGURES = expand(study_path("figures", "{figure}.{ext}"), figure=FIGURE_NAMES, ext=["png", "pdf"])


# what the results page shows beside the tables: the tuning's sensitivity and selection, the profiles' data
EXPLORER_DATA = [study_path("tuning", name) for name in ("selection.csv", "lr_sensitivity.csv", "search.csv",
                                                        "tuning_budget.csv", "choice_stability.csv")] + [
    study_path("tables", "performance_profile.csv")] if TUNING else []


def figure_inputs(wildcards):
    return FIGURE_INPUTS[wildcards.figure]


# --- what is made from the outputs that read run records -------------------------------------------------------
# The rules that read records have their digest among their params (adabench.study.state.records_param); a changed
# record reruns them, and Snakemake then reruns all that reads their outputs. Without Snakemake's metadata (a fresh
# clone) only missing outputs count, and a missing output is made only for an output asked for: where a sidecar says
# an output no longer holds, what is made from it goes too (adabench.workflow.housekeeping.stale_outputs), so that
# what the invocation asks for is made again from the records.
AGGREGATE_OUTPUTS = [RUNS_TABLE, CURVES_TABLE, study_path("tables", "runs.parquet"),
                     study_path("tables", "curves.parquet")]
TUNING_BUDGET = [study_path("tuning", name) for name in ("tuning_budget.csv", "choice_stability.csv")] if TUNING else []
FROM_TABLES = AGGREGATE_OUTPUTS + [study_path("tables", "performance_profile.csv")] + TUNING_BUDGET + [
    path for path in TABLES if not path.endswith(".json")]
MADE_FROM = {
    RUNS_TABLE: FROM_TABLES + [
        path for figure, inputs in FIGURE_INPUTS.items() if set(map(str, inputs.values())) & set(FROM_TABLES)
        for path in expand(study_path("figures", "{figure}.{ext}"), figure=figure, ext=["png", "pdf"])] + [
        study_path("explorer.html")],
    # a store made again is synced again (the sync reads its marker)
    STORE: [SYNCED],
    # the check of the choice (a target) reads both: without it, the sync or the choice would not be made again
    SYNCED: [study_path("tuning", "selection_check.json")] if TUNING else [],
    # select_tuned's outputs go together: aggregate reads the tuned plan as ancient, and would read a stale one
    SELECTION: [SEARCH_RUNS, TUNED_RUNS, study_path("tuning", "selection.sources.json")] + [
        study_path("tuning", name) for name in ("lr_sensitivity.csv", "search.csv", "selection_check.json")]
    if TUNING else [],
    # the tables and the sync read which runs the search added and which are tuned reruns, as ancient inputs
    **{plan: [RUNS_TABLE, SYNCED] for plan in ((SEARCH_RUNS, TUNED_RUNS) if TUNING else ())},
    # the selection gathers the choices (its inputs are ancient: it would not be made again with them)
    **{choice_file(STUDY, problem): [SELECTION] for problem in (TUNING["problems"] if TUNING else [])},
}


def table_records(wildcards):
    """The records the tables and the MLflow sync are made from (the plan's runs, and the tuning's plans once the
    search has made them), as one digest: a rule's params."""
    if not Path(PLAN).exists() or STATE is None:
        return ""  # the plan is made in this invocation: so is everything made from it; or a cluster job's
    plans = [path for path in (SEARCH_RUNS, TUNED_RUNS) if TUNING and Path(path).exists()]
    return records_param(STATE, study_run_dirs(PLAN, *plans))


def search_records(problem, rounds=None):
    """The records a round of the search reads (every run the search asked for before it; ``rounds`` None: every
    round on disk, what the end of the search and the choice are made from), as one digest: a rule's params."""
    if STATE is None:
        return ""  # a cluster job's Snakemake (the search's rules run where Snakemake plans)
    try:
        made = search_rounds_on_disk(STUDY, problem)
    except (OSError, ValueError):
        return ""  # a damaged round is made again (adabench.workflow.housekeeping), and what follows it
    if rounds is not None:
        if len(made) < rounds:
            return ""  # an earlier round is made in this invocation: so is this one
        made = made[:rounds]
    return records_param(STATE, [STUDY.run_dir(spec) for spec in searched_specs(STUDY, problem, made)])


# The process that plans the DAG, if it will run jobs, holds the study's lock until it exits (Snakemake's own locks are
# off: nolock in the profiles). Outputs that no longer hold (adabench.workflow.housekeeping.stale_outputs), with what
# is made from them (MADE_FROM), and those a killed Snakemake left marked incomplete (incomplete_outputs), are
# removed, so that Snakemake builds them and what reads them again; a dry run or a report only says so. Here, while
# the workflow is read, because Snakemake 9 offers no later hook before it decides what to run (onstart: runs after
# the DAG is built) and cannot tell a stale output from the records' content itself (docs/dev/
# records-as-build-state-plan.md, facts 2, 4 and 5).
if workflow.is_main_process:
    EXECUTES = invocation_executes()
    try:
        refuse_symlinks(STUDY)
        if EXECUTES:
            STUDY_LOCK = take_study_lock(STUDY)
    except StudyLocked as error:
        raise WorkflowError(str(error)) from None
    remove_stale_outputs(stale_outputs(STATE, JOBS, MADE_FROM) + incomplete_outputs(Path(".snakemake"), STUDY),
                         EXECUTES, print)
