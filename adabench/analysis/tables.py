"""The comparison tables, written as CSV (full precision), Markdown and LaTeX."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.records import TIME_COLUMNS
from .aggregate import FAILURES, declared_bounds, failure_counts, with_outcomes
from .stats import summarize

# a reproduced value this close to the reference report's counts as equal when all seeds agree (deterministic runs)
EXACT_TOLERANCE = 1e-9
REPRODUCTION_COLUMNS = ["problem", "optimizer", "setting", "metric", "reference_value", "n", "mean", "std", "t_low",
                        "t_high", "in_ci"]


def fmt(value, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}g}" if abs(value) >= 1e4 or (value != 0 and abs(value) < 1e-3) else f"{value:.{digits}f}"


def competitors(runs: pd.DataFrame, checks: dict[str, str] | None = None) -> pd.DataFrame:
    """The runs of the optimizers that compete: without those that ``checks`` (copy -> original, config ``checks``)
    names as copies of another. A copy checks an implementation, it is not a competitor: it is shown once, in the
    implementation checks table, and takes no rank, no place in a Holm family and no profile curve."""
    return runs[~runs.optimizer.astype(str).isin(list(checks or {}))]


def prepared_runs(runs: pd.DataFrame, declarations: dict[str, dict] | None = None,
                  checks: dict[str, str] | None = None) -> pd.DataFrame:
    """The competitors' runs (:func:`competitors`) with their outcomes from ``declarations`` (problems.json) where
    given, else as the table has them (adabench.analysis.aggregate.outcomes)."""
    runs = competitors(runs, checks)
    return with_outcomes(runs, declarations) if declarations is not None else runs


def headline_summary(frame: pd.DataFrame, by: list[str], declarations: dict[str, dict] | None = None,
                     **options) -> pd.DataFrame:
    """:func:`summarize` of ``final_headline`` per group of ``by`` (which starts with "problem"), each problem's
    intervals clipped to the range its headline metric declares (problems.json; none without ``declarations``)."""
    parts = [summarize(part, "final_headline", by,
                       bounds=declared_bounds((declarations or {}).get(str(problem)), part.headline_metric.iloc[0]),
                       **options)
             for problem, part in frame.groupby("problem", sort=False, observed=True)]
    return pd.concat(parts, ignore_index=True) if parts else summarize(frame, "final_headline", by, **options)


def failures_text(row) -> str:
    """The seeds that gave no result, as a table shows them: "1 diverged, 2 collapsed of 5" (nothing if none)."""
    parts = [f"{row[column]} {outcome}" for column, outcome in FAILURES.items() if row[column]]
    return f"{', '.join(parts)} of {row['seeds']}" if parts else ""


def comparison_table(runs: pd.DataFrame, declarations: dict[str, dict] | None = None,
                     checks: dict[str, str] | None = None) -> pd.DataFrame:
    """Per problem, optimizer and setting: the final headline metric over seeds (mean, std, 95% CIs, within the
    metric's declared range), best epoch, training time and how many seeds diverged, collapsed, never trained or
    failed (outcomes from ``declarations``, problems.json; see adabench.analysis.aggregate.run_outcome). The
    copies that ``checks`` names are left out (:func:`competitors`)."""
    keys = ["problem", "optimizer", "setting"]
    study = prepared_runs(runs, declarations, checks)
    study = study[study.in_study]
    stats = headline_summary(study, keys, declarations)
    extra = study.groupby(keys, sort=False).agg(
        metric=("headline_metric", "first"),
        mode=("headline_mode", "first"),
        best_epoch_median=("best_epoch", "median"),
        train_time_s=("train_time_s", "mean"),
        wall_time_s=("wall_time_s", "mean"),
    ).reset_index()
    table = extra.merge(failure_counts(study, keys), on=keys).merge(stats, on=keys)
    ascending = table["mode"] == "min"
    # best first within each problem
    table["_order"] = table["mean"].where(ascending, -table["mean"])
    table = table.sort_values(["problem", "_order"], kind="stable").drop(columns="_order")
    return table[["problem", "optimizer", "setting", "metric", "mode", "seeds", "n", "mean", "std", "t_low", "t_high",
                  "boot_low", "boot_high", "best_epoch_median", "train_time_s", "wall_time_s", *FAILURES]]


# the keys on which a copy's run and its original's are the same run but for the optimizer's code
CHECK_KEYS = ["problem", "options_id", "precision", "hyperparameters", "seed"]
CHECK_COLUMNS = ["problem", "copy", "original", "settings", "pairs", "identical", "max_abs_diff", "largest_in",
                 "max_rel_diff"]


def implementation_check_table(runs: pd.DataFrame, checks: dict[str, str] | None) -> pd.DataFrame:
    """Each copy (config ``checks``: copy -> original) against its original, per problem the copy ran: its runs
    paired with the original's that share problem, options, precision, canonical hyperparameters and seed (any role:
    grid runs too); ``settings`` and ``pairs`` count them, ``identical`` the pairs whose every final value
    (``final_*`` but the measured seconds, TIME_COLUMNS, which two trainings of one run may differ in; missing on
    both counts as equal) is the same, ``max_abs_diff`` the largest absolute difference of any of them over the
    pairs (inf where one has a value the other lacks) and ``largest_in`` its column, and ``max_rel_diff`` the largest
    difference relative to the larger magnitude of the two (the final values differ in scale by orders of magnitude:
    an effective step size of 1e8 next to an accuracy). Where a copy is shown, once."""
    finals = [column for column in runs.columns if column.startswith("final_") and column != "final_headline"
              and column.removeprefix("final_") not in TIME_COLUMNS]
    keys = [key for key in CHECK_KEYS if key in runs]
    rows = []
    for copy, original in (checks or {}).items():
        copies = runs[runs.optimizer.astype(str) == copy]
        pairs = copies.merge(runs[runs.optimizer.astype(str) == original], on=keys, suffixes=(" copy", " original"))
        for problem in sorted(set(copies.problem.astype(str))):
            part = pairs[pairs.problem.astype(str) == problem]
            a = part[[f"{column} copy" for column in finals]].to_numpy(dtype=float)
            b = part[[f"{column} original" for column in finals]].to_numpy(dtype=float)
            same = (a == b) | (np.isnan(a) & np.isnan(b))
            with np.errstate(invalid="ignore", divide="ignore"):
                difference = np.where(same, 0.0, np.nan_to_num(np.abs(a - b), nan=np.inf))
                relative = np.where(same, 0.0, np.nan_to_num(difference / np.fmax(np.abs(a), np.abs(b)), nan=np.inf))
            largest = np.unravel_index(np.argmax(difference), difference.shape) if difference.size else None
            rows.append({"problem": problem, "copy": copy, "original": original,
                         "settings": part.hyperparameters.nunique() if "hyperparameters" in part else 0,
                         "pairs": len(part), "identical": int(same.all(axis=1).sum()),
                         "max_abs_diff": float(difference[largest]) if largest is not None else np.nan,
                         "largest_in": finals[largest[1]] if largest is not None and difference[largest] > 0 else "",
                         "max_rel_diff": float(relative.max()) if relative.size else np.nan})
    return pd.DataFrame(rows, columns=CHECK_COLUMNS)


def display_implementation_checks(table: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "problem": table.problem,
        "copy": table["copy"],
        "original": table.original,
        "settings": table.settings,
        "identical final values": [f"{i}/{n} pairs" for i, n in zip(table.identical, table.pairs)],
        "largest difference": [fmt(v) if v else "0" for v in table.max_abs_diff],
        "in": table.largest_in.replace("", "–"),
        "largest relative difference": [fmt(v) if v else "0" for v in table.max_rel_diff],
    })


def reproduction_table(runs: pd.DataFrame, reference: list[dict],
                       declarations: dict[str, dict] | None = None) -> pd.DataFrame:
    """Each number the reference report printed beside the reproduced mean ± std and its 95% CI over this
    pipeline's seeds (within the metric's declared range, ``declarations``: problems.json), from the study's runs
    of the same configuration. ``reference``: the report's runs (Study.reference_settings: problem, optimizer,
    setting as this pipeline's run keys write it, printed)."""
    rows = []
    for run in reference:
        problem, optimizer, setting = run["problem"], run["optimizer"], run["setting"]
        matching = runs[(runs.problem == problem) & (runs.optimizer == optimizer)
                        & (runs.setting == setting) & runs.in_reference]
        for metric, printed in run["printed"].items():
            column = f"final_{metric}"
            values = matching[column] if column in matching else pd.Series(dtype=float)
            bounds = declared_bounds((declarations or {}).get(problem), metric)
            summary = (summarize(pd.DataFrame({"value": values, "g": 0}), "value", "g", bounds=bounds).iloc[0]
                       if len(values) else None)
            row = {"problem": problem, "optimizer": optimizer, "setting": setting,
                   "metric": metric, "reference_value": printed, "n": 0, "mean": math.nan, "std": math.nan,
                   "t_low": math.nan, "t_high": math.nan, "in_ci": "no runs"}
            if summary is not None and summary["n"] > 0:
                row.update(n=int(summary["n"]), mean=summary["mean"], std=summary["std"],
                           t_low=summary["t_low"], t_high=summary["t_high"])
                row["in_ci"] = verdict(printed, summary)
            rows.append(row)
    return pd.DataFrame(rows, columns=REPRODUCTION_COLUMNS)


def verdict(printed: float, summary) -> str:
    if summary["n"] >= 2 and summary["std"] > 0:
        return "yes" if summary["t_low"] <= printed <= summary["t_high"] else "no"
    # one seed, or every seed identical: the CI is a point, so ask for equality to rounding
    tolerance = EXACT_TOLERANCE * max(1.0, abs(printed))
    return "equal" if abs(summary["mean"] - printed) <= tolerance else "no"


def markdown(frame: pd.DataFrame) -> str:
    header = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(str(value) for value in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body]) + "\n"


def display_comparison(table: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "problem": table.problem,
        "optimizer": table.optimizer,
        "setting": table.setting,
        "metric": table.metric + " (" + table["mode"] + ")",
        "mean ± std": [f"{fmt(m)} ± {fmt(s)}" for m, s in zip(table["mean"], table["std"])],
        "95% CI (t)": [f"[{fmt(lo)}, {fmt(hi)}]" for lo, hi in zip(table.t_low, table.t_high)],
        "95% CI (bootstrap)": [f"[{fmt(lo)}, {fmt(hi)}]" for lo, hi in zip(table.boot_low, table.boot_high)],
        "best epoch": [fmt(v, 1) for v in table.best_epoch_median],
        "train s": [fmt(v, 1) for v in table.train_time_s],
        "failed seeds": [failures_text(row) or f"0 of {row['seeds']}" for _, row in table.iterrows()],
    })


def display_reproduction(table: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "problem": table.problem,
        "optimizer": table.optimizer,
        "setting": table.setting,
        "metric": table.metric,
        "reference report": [fmt(v) for v in table.reference_value],
        "this pipeline (mean ± std)": [f"{fmt(m)} ± {fmt(s)}" for m, s in zip(table["mean"], table["std"])],
        "95% CI": [f"[{fmt(lo)}, {fmt(hi)}]" for lo, hi in zip(table.t_low, table.t_high)],
        "seeds": table.n,
        "reported value in CI": table.in_ci,
    })


def rounded(table: pd.DataFrame) -> pd.DataFrame:
    """The table as shown in Markdown and LaTeX: floats rounded for reading."""
    return table.apply(lambda column: column.map(fmt) if column.dtype.kind == "f" else column)


def write_table(table: pd.DataFrame, shown: pd.DataFrame, stem: Path) -> None:
    """CSV keeps full precision; Markdown and LaTeX show the rounded view."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(stem.with_suffix(".csv"), index=False)
    stem.with_suffix(".md").write_text(markdown(shown))
    stem.with_suffix(".tex").write_text(shown.to_latex(index=False, escape=True))


def overhead_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per problem and optimizer, what one training step costs, measured in every run: the optimizer's own step
    (``step_time_s``) and the whole step (its share of the forward and backward passes too, ``train_time_s``), in
    milliseconds per step (median over runs), and each relative to SGD's on the same problem (to the cheapest
    optimizer where the study has no SGD), as DeepOBS reports it. Seconds are of the machines the runs trained on."""
    rows = []
    for problem, part in runs.assign(step_ms=1000 * runs.step_time_s / runs.steps,
                                     total_ms=1000 * runs.train_time_s / runs.steps).groupby("problem", sort=True):
        per = part.groupby("optimizer").agg(runs=("run_key", "count"), step_ms=("step_ms", "median"),
                                            total_ms=("total_ms", "median"),
                                            machines=("device_name", lambda s: ", ".join(sorted(set(map(str, s))))))
        reference = "sgd" if "sgd" in per.index else per.step_ms.idxmin()
        per["relative_to"] = reference
        per["step_ratio"] = per.step_ms / per.loc[reference, "step_ms"]
        per["total_ratio"] = per.total_ms / per.loc[reference, "total_ms"]
        rows.append(per.reset_index().assign(problem=problem).sort_values("step_ratio"))
    columns = ["problem", "optimizer", "runs", "step_ms", "step_ratio", "total_ms", "total_ratio", "relative_to",
               "machines"]
    return pd.concat(rows, ignore_index=True)[columns] if rows else pd.DataFrame(columns=columns)


MACHINE_COLUMNS = ["device", "device_name", "threads", "torch"]


def compute_table(runs: pd.DataFrame) -> pd.DataFrame:
    """What the study cost, per machine (device, its name, threads per job, torch) and in all: runs and epochs,
    hours of training (the runs' own ``train_time_s``: passes and optimizer steps), hours of training jobs (each
    run's share of its population job's wall time, evaluation and setup included: ``wall_time_s`` over the
    population's size) and those times the job's threads (core-hours on a CPU). A run that resumed counts on the
    machine that finished it."""
    shares = runs.assign(training_hours=runs.train_time_s / 3600,
                         job_hours=runs.wall_time_s / runs.population_size / 3600)
    shares["thread_hours"] = shares.job_hours * shares.threads
    totals = {"runs": ("run_key", "count"), "epochs": ("epochs_completed", "sum"),
              "training_hours": ("training_hours", "sum"), "job_hours": ("job_hours", "sum"),
              "thread_hours": ("thread_hours", "sum")}
    per_machine = shares.groupby(MACHINE_COLUMNS, dropna=False).agg(**totals).reset_index()
    if len(per_machine) > 1:
        everything = shares.assign(**{name: "all" for name in MACHINE_COLUMNS}).groupby(MACHINE_COLUMNS).agg(**totals)
        per_machine = pd.concat([per_machine, everything.reset_index()], ignore_index=True)
    return per_machine[MACHINE_COLUMNS + list(totals)]
