"""Gather every run's own files (summary.json, metrics.csv), verified, into two long tables with generic
columns: one row per run (identity, roles, the problem's declared headline and selection metrics, final
values, its outcome) and one row per run and epoch (its curve). Nothing here knows a problem or a metric by name:
what a problem declares (problems.json: Problem.declarations) comes in as plain data."""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from ..study.plan import ROLES
from ..core.identity import identity_columns
from ..core.records import ENDED_EARLY, RecordError, check_same_data, read_run
from ..study.search import CHANCE_MARGIN  # one margin for runs' outcomes and the search's rates

# what the runs table keeps of each run's environment; cpu_capability (the CPU's vector instructions torch's kernels
# use, AVX2 or AVX512: a compiled pass's last bits differ between them) is empty for records written before it was
ENVIRONMENT_COLUMNS = ["device", "device_name", "cpu_capability", "threads", "torch", "git_commit", "hostname"]
RUN_COLUMNS = ["run_key", "problem", "options_id", "optimizer", "setting", "seed"] + [f"in_{role}" for role in ROLES]

# the runs that failed to give a result, as the tables count them (column name, outcome)
FAILURES = {"diverged": "diverged", "collapsed": "collapsed", "never_trained": "never trained", "failed": "failed"}


def declared_bounds(declared: dict | None, metric: str) -> tuple[float, float] | None:
    """The range ``metric`` cannot leave as its problem declares it (``declared``: the problem's entry of
    problems.json), ``(low, high)`` with infinities for open sides; None where it declares none."""
    pair = ((declared or {}).get("metric_bounds") or {}).get(metric)
    if pair is None:
        return None
    return (-math.inf if pair[0] is None else float(pair[0]), math.inf if pair[1] is None else float(pair[1]))


def declared_chance(declared: dict | None, metric: str) -> float | None:
    """The value ``metric`` takes for a model that learned nothing, as its problem declares it; None if unknown."""
    value = ((declared or {}).get("chance") or {}).get(metric)
    return None if value is None else float(value)


def chance_levels(declarations: dict[str, dict]) -> dict[str, float]:
    """Per problem, the chance level of its selection metric where it declares one (``declarations``: problems.json,
    or Problem.declarations), as tuning.select and the search take it."""
    levels = {problem: declared_chance(declared, declared["selection"][0])
              for problem, declared in declarations.items()}
    return {problem: level for problem, level in levels.items() if level is not None}


def chance_margin(declared: dict | None, metric: str) -> float:
    """:data:`CHANCE_MARGIN` in ``metric``'s units: times its declared range where that is finite."""
    bounds = declared_bounds(declared, metric)
    finite = bounds is not None and all(math.isfinite(bound) for bound in bounds)
    return CHANCE_MARGIN * (bounds[1] - bounds[0]) if finite else CHANCE_MARGIN


def run_outcome(status: str, best, final, mode: str, chance: float | None, margin: float = CHANCE_MARGIN) -> str:
    """What became of a run, from its headline metric: "diverged" or "failed" (its status: its optimizer raised, see
    adabench.core.trainer), "never trained" (its best value over
    the curve never got more than ``margin`` past ``chance``), "collapsed" (its best did, its final value fell back
    within ``margin`` of chance or past it), else "trained". Without a chance level: "trained", "diverged" or
    "failed".
    ``mode`` is the headline's direction ("max": past chance is above it). A missing (non-finite) best or final
    value counts as at chance: a finished run has a finite headline, so that only happens to damaged data."""
    if status in ENDED_EARLY:
        return status
    if chance is None:
        return "trained"
    sign = 1.0 if mode == "max" else -1.0

    def learned(value) -> bool:
        return not pd.isna(value) and math.isfinite(float(value)) and sign * (float(value) - chance) > margin

    if not learned(best):
        return "never trained"
    return "trained" if learned(final) else "collapsed"


def headline_outcome(row, declared: dict | None) -> str:
    """:func:`run_outcome` of a row of the runs table (or of run_row's dict), with its problem's declarations."""
    metric = row["headline_metric"]
    best = row.get("best_value", row.get("final_headline"))  # a table without best values: the final is one
    return run_outcome(row["status"], best, row.get("final_headline"), row["headline_mode"],
                       declared_chance(declared, metric), chance_margin(declared, metric))


def with_outcomes(runs: pd.DataFrame, declarations: dict[str, dict] | None) -> pd.DataFrame:
    """The runs table with its ``outcome`` column (:func:`run_outcome`) computed from each problem's declarations
    (problems.json), beside ``status``: a table made before outcomes existed, or without the declarations, gets
    them here."""
    declarations = declarations or {}
    outcome = [headline_outcome(row, declarations.get(str(row["problem"]))) for row in runs.to_dict("records")]
    result = runs.drop(columns="outcome", errors="ignore")
    position = result.columns.get_loc("status") + 1 if "status" in result else len(result.columns)
    result.insert(position, "outcome", pd.Series(outcome, index=runs.index, dtype=object))
    return result


def outcomes(runs: pd.DataFrame) -> pd.Series:
    """Each run's outcome: the table's ``outcome`` column, or for a table without one (older, or synthetic), what its
    status alone says ("diverged", "failed" or "trained")."""
    from_status = runs.status.map(lambda status: status if status in ENDED_EARLY else "trained")
    return runs.outcome.fillna(from_status) if "outcome" in runs else from_status


def failure_counts(runs: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Per group of ``by``: how many runs diverged, collapsed, never trained and failed (:data:`FAILURES`) and
    how many seeds it has."""
    marked = runs[by].assign(**{column: outcomes(runs) == outcome for column, outcome in FAILURES.items()},
                             seeds=1)
    return marked.groupby(by, sort=False, observed=True).sum().astype(int).reset_index()


def run_row(summary: dict, roles: set[str], declared: dict | None = None) -> dict:
    """A run's row of the runs table, from its verified summary (whose spec holds canonical hyperparameters), and
    its outcome (:func:`run_outcome`: the summary's best and final headline values against the chance level that
    ``declared``, its problem's declarations, gives; without them "trained", "diverged" or "failed")."""
    identity = identity_columns(summary["identity"], summary["run_key"])
    best = summary.get("best") or {}
    selection = summary.get("best_selection") or {}
    unit = summary["unit"]
    row = {
        "run_key": summary["run_key"],
        **{name: identity[name] for name in ("problem", "options_id", "optimizer", "setting", "seed")},
        **{f"in_{role}": role in roles for role in ROLES},
        **{name: identity[name] for name in ("precision", "lr", "hyperparameters")},
        "status": summary["status"],
        "unit": unit,
        "epochs_completed": summary["epochs_completed"],
        "epochs_planned": summary["epochs_planned"],
        "headline_metric": summary["headline"]["metric"],
        "headline_mode": summary["headline"]["mode"],
        "best_value": best.get("value"),
        "best_epoch": best.get(unit),
        "selection_metric": summary["selection"]["metric"],
        "selection_mode": summary["selection"]["mode"],
        "selection_best_value": selection.get("value"),
        "train_time_s": summary["train_time_s"],
        "step_time_s": summary["step_time_s"],
        "steps": summary["steps"],
        "wall_time_s": summary["wall_time_s"],
        "population_size": summary["population_size"],
        "data_digest": summary["data_digest"],
        **{name: summary["environment"].get(name) for name in ENVIRONMENT_COLUMNS},
    }
    row.update({f"final_{name}": value for name, value in summary["final"].items() if name != unit})
    # a failed run's last row is from before its planned end: no final result to average (its outcome counts it)
    row["final_headline"] = (math.nan if summary["status"] == "failed"
                             else summary["final"].get(row["headline_metric"]))
    # beside the status; the summary's best is the best headline value over the run's whole curve
    items = list(row.items())
    position = list(row).index("status") + 1
    return dict(items[:position] + [("outcome", headline_outcome(row, declared))] + items[position:])


def gather(roles_by_dir: dict[str, set[str]],
           declarations: dict[str, dict] | None = None) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, dict]]:
    """One row per run, and every run's curve (its metrics.csv, its unit column named ``epoch``: the step where the
    run's ``unit`` is "step") with the run's identity columns, and each run's verified summary by directory. Each run's records are verified first; a
    damaged one stops the table with its reason (a rerun of the workflow trains it again: see adabench.study.state).
    ``declarations`` (problems.json) give the runs their outcomes (:func:`run_row`)."""
    rows, curves, summaries = [], [], {}
    for directory, roles in sorted(roles_by_dir.items()):
        directory = Path(directory)
        try:
            summary, metrics = read_run(directory)
        except RecordError as error:
            raise RecordError(f"{error}; run snakemake again: the job that owns this run trains it again") from None
        summaries[str(directory)] = summary
        row = run_row(summary, roles, (declarations or {}).get(summary["identity"]["problem"]))
        rows.append(row)
        curve = metrics.rename(columns={summary["unit"]: "epoch"})
        for column in reversed(RUN_COLUMNS + ["unit"]):
            curve.insert(0, column, row[column])
        curves.append(curve)
    check_same_data(list(summaries.values()))
    if not rows:
        return pd.DataFrame(columns=RUN_COLUMNS), pd.DataFrame(columns=RUN_COLUMNS + ["unit", "epoch"]), summaries
    return pd.DataFrame(rows), pd.concat(curves, ignore_index=True), summaries
