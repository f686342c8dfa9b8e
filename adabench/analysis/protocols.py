"""Reference protocol against tuned protocol: side-by-side results, paired tests, time to target, profiles."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .stats import area_under_curve, paired_comparisons, performance_profile, summarize, time_to_target
from .tables import fmt

# the reference protocol: the settings the study configures (lr 0.01 for every LeNet optimizer, as the reference
# report ran them); the tuned protocol: each optimizer at the learning rate chosen on validation
PROTOCOLS = {"reference protocol": "in_study", "tuned protocol": "in_tuned"}
REFERENCE_OPTIMIZER = "adagrad"


def optimizer_label(frame: pd.DataFrame) -> pd.Series:
    """A run's optimizer, with its setting where the frame holds several settings of that optimizer on a problem."""
    several = frame.groupby(["problem", "optimizer"], observed=True).setting.transform("nunique") > 1
    optimizer, setting = frame.optimizer.astype(str), frame.setting.astype(str)
    return optimizer.where(~several, optimizer + " (" + setting + ")")


def protocol_runs(runs: pd.DataFrame, tuned_problems: list[str]) -> pd.DataFrame:
    """The runs of each protocol on the tuned problems, labelled. Under the reference protocol an optimizer with
    several configured settings appears once per setting."""
    parts = []
    for protocol, column in PROTOCOLS.items():
        part = runs[runs[column] & runs.problem.isin(tuned_problems)].copy()
        part["label"] = optimizer_label(part)
        part["protocol"] = protocol
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def protocol_table(runs: pd.DataFrame, tuned_problems: list[str]) -> pd.DataFrame:
    """Final headline metric per problem and optimizer under each protocol, with its rank, side by side."""
    labelled = protocol_runs(runs, tuned_problems)
    stats = summarize(labelled, "final_headline", ["problem", "protocol", "optimizer", "label"])
    settings = labelled.groupby(["problem", "protocol", "label"]).agg(
        setting=("setting", "first"), mode=("headline_mode", "first"), metric=("headline_metric", "first"),
        diverged=("status", lambda s: int((s == "diverged").sum()))).reset_index()
    table = stats.merge(settings, on=["problem", "protocol", "label"])
    sign = np.where(table["mode"] == "max", -1, 1)
    # a setting whose every seed diverged has no mean: it ranks last
    table["rank"] = (table.assign(key=sign * table["mean"]).groupby(["problem", "protocol"]).key
                     .rank(method="min", na_option="bottom").astype(int))
    return table.sort_values(["problem", "protocol", "rank"]).reset_index(drop=True)


def display_protocols(table: pd.DataFrame) -> pd.DataFrame:
    """The protocols side by side, one row per problem and optimizer (per configured setting where the reference
    protocol has several): its setting, final metric (mean ± std over seeds) and rank under each protocol, the
    tuned one with its 95% CI. Best tuned first within each problem; an optimizer one protocol lacks shows "–"."""
    def shown(protocol: str) -> pd.DataFrame:
        part = table[table.protocol == protocol]
        diverged = [f" ({d} diverged)" if d else "" for d in part.diverged]
        return pd.DataFrame({"problem": part.problem, "metric": part.metric + " (" + part["mode"] + ")",
                             "optimizer": part.optimizer, "setting": part.setting,
                             "mean ± std": [f"{fmt(m)} ± {fmt(s)}{d}" for m, s, d in zip(part["mean"], part["std"],
                                                                                         diverged)],
                             "95% CI (t)": [f"[{fmt(lo)}, {fmt(hi)}]" for lo, hi in zip(part.t_low, part.t_high)],
                             "rank": part["rank"]})

    reference, tuned = shown("reference protocol"), shown("tuned protocol")
    side = reference.drop(columns="95% CI (t)").merge(tuned, on=["problem", "metric", "optimizer"], how="outer",
                                                      suffixes=(" (reference)", " (tuned)"))
    side = side.sort_values(["problem", "rank (tuned)", "rank (reference)"], kind="stable", na_position="last")
    ranks = ["rank (reference)", "rank (tuned)"]
    side[ranks] = side[ranks].apply(lambda column: column.map(lambda r: "–" if pd.isna(r) else str(int(r))))
    return side.fillna("–").rename(columns={"setting (reference)": "reference protocol",
                                            "setting (tuned)": "tuned protocol"})[
        ["problem", "metric", "optimizer", "reference protocol", "mean ± std (reference)", "rank (reference)",
         "tuned protocol", "mean ± std (tuned)", "95% CI (t)", "rank (tuned)"]].reset_index(drop=True)


def paired_table(runs: pd.DataFrame, tuned_problems: list[str], method: str = "wilcoxon") -> pd.DataFrame:
    """Each optimizer against AdaGrad on the same seeds (same initial weights and batch order), per problem
    and protocol, with Holm-corrected p-values within each problem and protocol."""
    labelled = protocol_runs(runs, tuned_problems)
    tables = []
    for (problem, protocol), part in labelled.groupby(["problem", "protocol"], sort=True):
        labels = set(part.label)
        reference = REFERENCE_OPTIMIZER if REFERENCE_OPTIMIZER in labels else None
        if len(labels) < 2:
            continue
        result = paired_comparisons(part, value="final_headline", by="label", pair_on="seed", reference=reference,
                                    method=method)
        result.insert(0, "protocol", protocol)
        result.insert(0, "problem", problem)
        result.insert(2, "metric", part.headline_metric.iloc[0])
        tables.append(result)
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


def time_to_target_table(runs: pd.DataFrame, curves: pd.DataFrame, targets: dict[str, float],
                         tuned_problems: list[str]) -> pd.DataFrame:
    """Per problem with a target, protocol and optimizer: how many seeds reach the target (of the headline
    metric), the median epochs (steps) they take, which no hardware changes, then the median seconds on the
    machines they trained on (each run's own seconds: its share of the passes and its optimizer's steps), and the
    normalised area under the headline metric's curve."""
    labelled = protocol_runs(runs, [p for p in tuned_problems if p in targets])
    rows = []
    for (problem, protocol), part in labelled.groupby(["problem", "protocol"], sort=True):
        metric, mode = part.headline_metric.iloc[0], part.headline_mode.iloc[0]
        run_curves = curves[curves.run_key.isin(part.run_key)]
        reached = time_to_target(run_curves, metric, targets[problem], mode=mode)
        area = area_under_curve(run_curves, metric)
        merged = part.set_index("run_key").join(reached).join(area)
        for label, group in merged.groupby("label", sort=True):
            rows.append({"problem": problem, "protocol": protocol, "optimizer": group.optimizer.iloc[0],
                         "label": label, "metric": metric, "mode": mode, "target": targets[problem],
                         "seeds": len(group), "reached": int(group.reached.sum()),
                         "median_epochs": float(np.median(group.epochs_to_target)),
                         "median_seconds": float(np.median(group.seconds_to_target)),
                         "auc_metric": metric, "auc": float(group[f"{metric}_auc"].mean())})
    return pd.DataFrame(rows)


# what a performance profile can count as the cost of reaching the target, machine-free first
PROFILE_COSTS = {"epochs": "median_epochs", "seconds": "median_seconds"}


def profile(time_table: pd.DataFrame, taus: np.ndarray | None = None) -> pd.DataFrame:
    """Performance profiles of the tuned protocol over problems, one per cost (``cost``: median epochs to target,
    then median seconds)."""
    tuned = time_table[time_table.protocol == "tuned protocol"]
    taus = np.geomspace(1, 100, 60) if taus is None else taus
    parts = []
    for cost, column in PROFILE_COSTS.items():
        costs = tuned.pivot_table(index="problem", columns="optimizer", values=column, aggfunc="first")
        parts.append(performance_profile(costs, taus).assign(cost=cost))
    return pd.concat(parts, ignore_index=True)[["cost", "optimizer", "tau", "fraction"]]
