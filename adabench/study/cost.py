"""What a study costs before it runs: its jobs (populations), runs and epochs per stage and problem, and, from
runs already measured on some machine, the seconds that machine needs for them.

The plan (plan.csv's table, which adabench.study.design makes) says which runs each job trains. A job trains its runs as
one population, so it costs the seconds of one epoch of that population times its epochs; a measured run's summary
says what that was on its machine: its wall time over its epochs, shared among the members of its population
(``population_size``). That rate, per member and epoch, is taken from finished runs that trained the same problem
with the same options (the number of epochs aside) and, when there are any, with the same population size as the
job. Nothing is assumed for problems without such a measurement: their seconds stay empty.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ..core.atomic import read_json
from ..core.spec import canonical_options
from .design import StudyProblems

STAGES = ("study", "grid", "search", "tuned")
# options that say how long a run is, not what it computes per epoch
LENGTH_OPTIONS = ("epochs", "steps")


def planned_epochs(problem: str, options: dict) -> int:
    """Epochs (steps for the full-batch problems) a run will train: its options, else the problem's default."""
    full = canonical_options(problem, options)
    for name in LENGTH_OPTIONS:
        if name in full:
            return int(full[name])
    raise ValueError(f"problem {problem!r} has no epochs or steps option")


def per_epoch_options(problem: str, options: dict) -> str:
    """The options that decide what one epoch costs, with the problem's defaults filled in."""
    return json.dumps({name: value for name, value in canonical_options(problem, options).items()
                       if name not in LENGTH_OPTIONS}, sort_keys=True)


def stage_of(roles: str) -> str:
    """A run's stage for the cost table: a run of the study (its settings, the reference's, the defaults) counts
    there, even if the tuning grid also uses it; the plan's grid runs are the search's first round."""
    roles = set(roles.split(";"))
    return "study" if roles & {"study", "reference", "defaults"} else "grid" if "grid" in roles else "tuned"


def planned_jobs(plan: pd.DataFrame, problems: StudyProblems) -> pd.DataFrame:
    """One row per (job, stage) of a study's plan (plan.csv's columns; ``Study.plan()`` before the study is
    planned): problem, population size of the job, runs of that stage in it, the epochs each trains, and the
    per-epoch options (the study's config says them: ``problems``).

    The tuned reruns' learning rates are chosen from the grid, so they are counted as new runs: an upper bound, as
    a chosen setting equal to a study setting is not trained again.
    """
    plan = plan.assign(stage=plan.roles.map(stage_of))
    rows, population = [], plan.job.value_counts()
    for (job, stage), part in plan.groupby(["job", "stage"], sort=False):
        problem = part.problem.iloc[0]
        options = problems.grid_options(problem) if stage == "grid" else problems.options(problem)
        rows.append({"stage": stage, "problem": problem, "job": job, "population": int(population[job]),
                     "runs": len(part), "epochs": planned_epochs(problem, options),
                     "options": per_epoch_options(problem, options)})
    return pd.DataFrame(rows + tuning_estimate(problems), columns=["stage", "problem", "job", "population", "runs",
                                                                   "epochs", "options"])


def tuning_estimate(problems: StudyProblems) -> list[dict]:
    """What the tuning adds beyond the plan, which only its scores decide, priced as the least the search adds (the
    refinement: two rates per optimizer, every grid seed; widening adds more) and the most the tuned reruns take
    (one new run per tuned optimizer and seed; a chosen setting equal to a planned run is not trained again)."""
    tuning = problems.config.get("tuning")
    rows = []
    for problem in tuning["problems"] if tuning else []:
        size, searched = problems.population_size(problem), problems.tuned_optimizers(problem)
        for stage, options, runs in (
                ("search", problems.grid_options(problem), 2 * len(searched) * len(tuning["grid_seeds"])),
                ("tuned", problems.options(problem), len(searched) * len(problems.seeds(problem)))):
            for index, start in enumerate(range(0, runs, size)):
                rows.append({"stage": stage, "problem": problem, "job": f"{problem}-{stage}-estimate-{index}",
                             "population": min(size, runs - start), "runs": min(size, runs - start),
                             "epochs": planned_epochs(problem, options),
                             "options": per_epoch_options(problem, options)})
    return rows


def measured_epoch_seconds(run_roots: list[Path]) -> pd.DataFrame:
    """Per finished run under ``run_roots`` (their summary.json files): wall seconds per member and epoch."""
    rows, seen = [], set()
    for root in run_roots:
        for path in sorted(Path(root).rglob("summary.json")):
            try:
                summary = read_json(path)  # damaged: a DamagedJSON, a ValueError
                # a run once, though MLflow's artifacts hold a copy of its summary too
                key = (summary.get("run_key", str(path.parent)), summary.get("environment", {}).get("device_name"))
                if key in seen:
                    continue
                seen.add(key)
                spec = summary["spec"]
                if summary.get("status") != "finished" or not summary.get("epochs_completed"):
                    continue
                # a resumed run's wall time is not one stretch of training: it counts a restart (or, in older
                # records, only its last job)
                if summary.get("resumed_from"):
                    continue
                size, environment = int(summary.get("population_size", 1)), summary["environment"]
                rows.append({"problem": spec["problem"], "optimizer": spec["optimizer"],
                             "options": per_epoch_options(spec["problem"], spec["problem_options"]),
                             "population": size, "device": environment.get("device"),
                             "device_name": environment.get("device_name"), "threads": environment.get("threads"),
                             "s_per_member_epoch": summary["wall_time_s"] / summary["epochs_completed"] / size})
            except (OSError, ValueError, KeyError, TypeError):
                continue  # not a run's summary this planner can read: measured runs are a sample anyway
    return pd.DataFrame(rows, columns=["problem", "optimizer", "options", "population", "device", "device_name",
                                       "threads", "s_per_member_epoch"])


def job_rate(job: pd.Series, measured: pd.DataFrame) -> tuple[float, int, str]:
    """(seconds per member-epoch, measured runs, machines) for a job: runs of its problem and options, of its
    population size if any were measured at that size."""
    same = measured[(measured.problem == job.problem) & (measured.options == job.options)]
    if (same.population == job.population).any():
        same = same[same.population == job.population]
    if same.empty:
        return float("nan"), 0, ""
    return float(same.s_per_member_epoch.median()), len(same), ", ".join(sorted(set(map(str, same.device_name))))


def cost_table(jobs: pd.DataFrame, measured: pd.DataFrame) -> pd.DataFrame:
    """Per stage and problem: jobs, runs, epochs (summed over runs), the measured seconds per member and epoch,
    and the seconds the jobs take one after another on the measuring machine."""
    priced = jobs.copy()
    rates = [job_rate(job, measured) for job in priced.itertuples()]
    priced["s_per_member_epoch"] = [rate for rate, _, _ in rates]
    priced["measured_runs"] = [count for _, count, _ in rates]
    priced["measured_on"] = [machines for _, _, machines in rates]
    priced["member_epochs"] = priced.runs * priced.epochs
    priced["serial_s"] = priced.member_epochs * priced.s_per_member_epoch
    table = (priced.groupby(["stage", "problem"], sort=False)
             .agg(jobs=("job", "nunique"), runs=("runs", "sum"), epochs=("member_epochs", "sum"),
                  s_per_member_epoch=("s_per_member_epoch", "median"), measured_runs=("measured_runs", "max"),
                  measured_on=("measured_on", "first"), serial_s=("serial_s", lambda s: s.sum(min_count=len(s))))
             .reset_index())
    table["stage"] = pd.Categorical(table["stage"], STAGES, ordered=True)
    table = table.sort_values(["stage", "problem"], kind="stable").reset_index(drop=True)
    table["stage"] = table["stage"].astype(str)
    return table


def slot_estimate(table: pd.DataFrame, jobs: pd.DataFrame, parallel_jobs: int, startup_s: float) -> float:
    """Wall seconds of the study's training with ``parallel_jobs`` jobs at a time (on one GPU, several
    populations share it), each paying ``startup_s`` to start: a lower bound that assumes the work spreads evenly."""
    return table.serial_s.sum() / parallel_jobs + startup_s * jobs.job.nunique() / parallel_jobs
