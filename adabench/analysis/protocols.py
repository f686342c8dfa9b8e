"""The protocols side by side -- reference, defaults, tuned: results, paired tests, time to target, profiles, and
the share of each optimizer's gap to AdaGrad that tuning removes.

Copies of an optimizer (config ``checks``) are left out of every table here (adabench.analysis.tables.competitors).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .aggregate import declared_bounds, failure_counts
from .stats import area_under_curve, gap_share, paired_comparisons, performance_profile, time_to_target
from .tables import competitors, failures_text, fmt, headline_summary, prepared_runs

# the reference protocol: the settings the study configures (lr 0.01 for every LeNet optimizer, as the reference
# report ran them); the defaults protocol: each optimizer at its library's default hyperparameters; the tuned
# protocol: each optimizer at the learning rate chosen on validation
PROTOCOLS = {"reference protocol": "in_study", "defaults protocol": "in_defaults", "tuned protocol": "in_tuned"}
REFERENCE_OPTIMIZER = "adagrad"
# what the protocols table says of an optimizer none of whose seeds trained (adabench.analysis.aggregate.run_outcome)
DOES_NOT_TRAIN = "does not train"


def optimizer_label(frame: pd.DataFrame) -> pd.Series:
    """A run's optimizer, with its setting where the frame holds several settings of that optimizer on a problem."""
    several = frame.groupby(["problem", "optimizer"], observed=True).setting.transform("nunique") > 1
    optimizer, setting = frame.optimizer.astype(str), frame.setting.astype(str)
    return optimizer.where(~several, optimizer + " (" + setting + ")")


def in_protocol(runs: pd.DataFrame, column: str) -> pd.Series:
    """Whether each run belongs to the protocol of the runs table's role ``column``; a table made before the role
    existed (no such column, e.g. no ``in_defaults``) has none of its runs."""
    return runs[column].fillna(False).astype(bool) if column in runs else pd.Series(False, index=runs.index)


def protocol_runs(runs: pd.DataFrame, tuned_problems: list[str], checks: dict[str, str] | None = None) -> pd.DataFrame:
    """The runs of each protocol on the tuned problems, labelled, without the copies ``checks`` names. Under the
    reference protocol an optimizer with several configured settings appears once per setting."""
    runs = competitors(runs, checks)
    parts = []
    for protocol, column in PROTOCOLS.items():
        part = runs[in_protocol(runs, column) & runs.problem.isin(tuned_problems)].copy()
        part["label"] = optimizer_label(part)
        part["protocol"] = protocol
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


PROTOCOL_COLUMNS = ["problem", "protocol", "optimizer", "label", "setting", "metric", "mode", "seeds", "n", "mean",
                    "std", "t_low", "t_high", "boot_low", "boot_high", "diverged", "collapsed", "never_trained",
                    "failed", "verdict", "rank"]


def protocol_table(runs: pd.DataFrame, tuned_problems: list[str], declarations: dict[str, dict] | None = None,
                   checks: dict[str, str] | None = None) -> pd.DataFrame:
    """Final headline metric per problem and optimizer under each protocol, with its rank, side by side: mean over
    seeds, std, 95% CIs within the metric's declared range (``declarations``: problems.json), and how many seeds
    diverged, collapsed, never trained or failed (adabench.analysis.aggregate.run_outcome).

    An optimizer none of whose seeds trained -- each one never rose past chance, diverged or failed -- ``does not
    train``: it takes no rank (``verdict`` says so), since the order of chance-level means is noise. One whose every
    seed diverged or failed has no mean: it ranks last. The copies ``checks`` names are left out."""
    keys = ["problem", "protocol", "label"]
    labelled = protocol_runs(prepared_runs(runs, declarations), tuned_problems, checks)
    if labelled.empty:
        return pd.DataFrame(columns=PROTOCOL_COLUMNS)
    stats = headline_summary(labelled, ["problem", "protocol", "optimizer", "label"], declarations)
    settings = labelled.groupby(keys).agg(
        setting=("setting", "first"), mode=("headline_mode", "first"), metric=("headline_metric", "first"),
    ).reset_index()
    table = stats.merge(settings, on=keys).merge(failure_counts(labelled, keys), on=keys)
    # none trained, and not only divergences (those rank last, as before): chance-level means are not ranked
    untrained = (table.never_trained > 0) & (table.never_trained + table.diverged + table.failed == table.seeds)
    table["verdict"] = np.where(untrained, DOES_NOT_TRAIN, "")
    sign = np.where(table["mode"] == "max", -1, 1)
    ranked = table.assign(key=sign * table["mean"])[~untrained]
    table["rank"] = (ranked.groupby(["problem", "protocol"]).key.rank(method="min", na_option="bottom")
                     .reindex(table.index).astype("Int64"))
    return (table.sort_values(["problem", "protocol", "rank"], na_position="last")
            .reset_index(drop=True)[PROTOCOL_COLUMNS])


def display_protocols(table: pd.DataFrame) -> pd.DataFrame:
    """The protocols side by side, one row per problem and optimizer (per configured setting where the reference
    protocol has several): its setting, final metric (mean ± std over seeds, with the seeds that failed) and rank
    under each protocol ("does not train" where none of its seeds trained), the tuned one with its 95% CI. Best
    tuned first within each problem; an optimizer one protocol lacks shows "–", a protocol the table has no runs of
    (the defaults protocol of an older study) no columns."""
    def shown(protocol: str) -> pd.DataFrame:
        part = table[table.protocol == protocol]
        failed = [f" ({text})" if (text := failures_text(row)) else "" for _, row in part.iterrows()]
        return pd.DataFrame({"problem": part.problem, "metric": part.metric + " (" + part["mode"] + ")",
                             "optimizer": part.optimizer, "setting": part.setting,
                             "mean ± std": [f"{fmt(m)} ± {fmt(s)}{f}" for m, s, f in zip(part["mean"], part["std"],
                                                                                         failed)],
                             "95% CI (t)": [f"[{fmt(lo)}, {fmt(hi)}]" for lo, hi in zip(part.t_low, part.t_high)],
                             "rank": part["rank"].astype(float), "verdict": part.verdict})

    keys = ["problem", "metric", "optimizer"]
    present = [protocol for protocol in PROTOCOLS if (table.protocol == protocol).any()]
    side = None
    for protocol in present:
        short = protocol.removesuffix(" protocol")
        part = shown(protocol)
        if protocol != "tuned protocol":
            part = part.drop(columns="95% CI (t)")
        part = part.rename(columns={"setting": protocol, "mean ± std": f"mean ± std ({short})",
                                    "rank": f"rank ({short})", "verdict": f"verdict ({short})"})
        side = part if side is None else side.merge(part, on=keys, how="outer")
    if side is None:
        return pd.DataFrame(columns=keys)
    ranks = [f"rank ({protocol.removesuffix(' protocol')})" for protocol in reversed(present)]
    side = side.sort_values(["problem", *ranks], kind="stable", na_position="last")
    for protocol in present:
        short = protocol.removesuffix(" protocol")
        rank, verdict = side[f"rank ({short})"], side.pop(f"verdict ({short})")
        side[f"rank ({short})"] = [verdict if verdict else ("–" if pd.isna(r) else str(int(r)))
                                   for r, verdict in zip(rank, verdict.fillna(""))]
    columns = keys + [column for protocol in present for column in (
        protocol, f"mean ± std ({protocol.removesuffix(' protocol')})",
        *(["95% CI (t)"] if protocol == "tuned protocol" else []), f"rank ({protocol.removesuffix(' protocol')})")]
    return side.fillna("–")[columns].reset_index(drop=True)


def paired_table(runs: pd.DataFrame, tuned_problems: list[str], method: str = "wilcoxon",
                 declarations: dict[str, dict] | None = None, checks: dict[str, str] | None = None) -> pd.DataFrame:
    """Each optimizer against AdaGrad on the same seeds (same initial weights and batch order), per problem
    and protocol, with Holm-corrected p-values within each problem and protocol (the copies ``checks`` names are
    no part of it), the CI of each mean difference within the range the metric's declared bounds allow, and
    ``mde``: the smallest difference the paired t-test would detect with 80% power (stats.paired_comparisons)."""
    labelled = protocol_runs(runs, tuned_problems, checks)
    tables = []
    for (problem, protocol), part in labelled.groupby(["problem", "protocol"], sort=True):
        labels = set(part.label)
        reference = REFERENCE_OPTIMIZER if REFERENCE_OPTIMIZER in labels else None
        if len(labels) < 2:
            continue
        metric = part.headline_metric.iloc[0]
        bounds = declared_bounds((declarations or {}).get(str(problem)), metric)
        result = paired_comparisons(part, value="final_headline", by="label", pair_on="seed", reference=reference,
                                    method=method, bounds=bounds)
        result.insert(0, "protocol", protocol)
        result.insert(0, "problem", problem)
        result.insert(2, "metric", metric)
        tables.append(result)
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


def time_to_target_table(runs: pd.DataFrame, curves: pd.DataFrame, targets: dict[str, float],
                         tuned_problems: list[str], checks: dict[str, str] | None = None) -> pd.DataFrame:
    """Per problem with a target, protocol and optimizer: how many seeds reach the target (of the headline
    metric), the median epochs (steps) they take, which no hardware changes, then the median seconds on the
    machines they trained on (each run's own seconds: its share of the passes and its optimizer's steps), and the
    normalised area under the headline metric's curve. The copies ``checks`` names are left out (so the
    performance profile drawn from this table has no curve of theirs)."""
    labelled = protocol_runs(runs, [p for p in tuned_problems if p in targets], checks)
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


def tuned_times(time_table: pd.DataFrame, checks: dict[str, str] | None = None) -> pd.DataFrame:
    """The tuned protocol's rows of a time-to-target table, without the copies ``checks`` names."""
    tuned = competitors(time_table, checks)
    return tuned[tuned.protocol == "tuned protocol"]


def profile_coverage(time_table: pd.DataFrame, checks: dict[str, str] | None = None,
                     searched: list[str] | None = None) -> tuple[list[str], list[str], dict[str, list[str]]]:
    """What a performance profile covers: its problems (every problem of the time-to-target table, whose problems
    are the tuned ones with a target), the optimizers it draws and those it leaves out, each with the problems it
    was run on. Its candidates are the optimizers ``searched`` (config ``tuning.optimizers``) where given, else those
    with a tuned row anywhere, less the copies ``checks`` names; it draws those the study ran, under any protocol, on
    every problem. A problem without an optimizer's tuned runs counts as one it did not solve: right where it was
    searched and no rate trained (a failure is a result), wrong where the study never ran it (a packaged optimizer on
    the LeNets alone), which would rank it below an optimizer that ran and failed: that one is left out."""
    ran = competitors(time_table, checks)
    problems = sorted(set(ran.problem.astype(str)))
    if searched is None:
        candidates = set(tuned_times(time_table, checks).optimizer.astype(str))
    else:
        candidates = {str(name) for name in searched} - set(checks or {})
    run_on = ran.problem.astype(str).groupby(ran.optimizer.astype(str)).agg(lambda column: set(column)).to_dict()
    covered = {name: run_on.get(name, set()) & set(problems) for name in candidates}
    drawn = sorted(name for name in candidates if len(covered[name]) == len(problems))
    left_out = {name: sorted(covered[name]) for name in sorted(candidates - set(drawn))}
    return problems, drawn, left_out


def profile_left_out(time_table: pd.DataFrame, checks: dict[str, str] | None = None,
                     searched: list[str] | None = None) -> dict[str, list[str]]:
    """The optimizers the performance profile leaves out, each with the problems it was run on
    (:func:`profile_coverage`)."""
    return profile_coverage(time_table, checks, searched)[2]


def left_out_note(left_out: dict[str, list[str]]) -> str:
    """The sentence that names the optimizers a profile leaves out (:func:`profile_left_out`), for the figure, the
    page and the job's log; empty where none is."""
    return "Left out, not run on every problem: " + "; ".join(
        f"{optimizer} (run on {', '.join(run_on)})" for optimizer, run_on in left_out.items()) if left_out else ""


def profile(time_table: pd.DataFrame, taus: np.ndarray | None = None, checks: dict[str, str] | None = None,
            searched: list[str] | None = None) -> pd.DataFrame:
    """Performance profiles of the tuned protocol over problems, one per cost (``cost``: median epochs to target,
    then median seconds), of the optimizers :func:`profile_coverage` draws: not the copies ``checks`` names, not
    those the study did not run on every problem (the figure names them). A run that never reaches the target costs
    ``inf``; a problem where an optimizer has no tuned run (no rate of its search trained) counts as unsolved, and so
    does a problem where none has: every problem stays in the count."""
    problems, drawn, _ = profile_coverage(time_table, checks, searched)
    tuned = tuned_times(time_table, checks)
    tuned = tuned.assign(problem=tuned.problem.astype(str), optimizer=tuned.optimizer.astype(str))
    taus = np.geomspace(1, 100, 60) if taus is None else taus
    parts = []
    for cost, column in PROFILE_COSTS.items():
        costs = tuned.pivot_table(index="problem", columns="optimizer", values=column, aggfunc="first")
        costs = costs.reindex(index=problems, columns=drawn)  # an unsolved problem's NaN: inf in performance_profile
        parts.append(performance_profile(costs, taus).assign(cost=cost))
    return pd.concat(parts, ignore_index=True)[["cost", "optimizer", "tau", "fraction"]]


GAP_SHARE_COLUMNS = ["problem", "metric", "mode", "optimizer", "reference_optimizer", "reference_setting",
                     "tuned_setting", "seeds", "reference_gap", "tuned_gap", "share", "ci_low", "ci_high"]


def gap_share_table(runs: pd.DataFrame, tuned_problems: list[str], checks: dict[str, str] | None = None,
                    confidence: float = 0.95, n_resamples: int = 9999, seed: int = 0) -> pd.DataFrame:
    """Per tuned problem, each optimizer against AdaGrad: how much of its gap under the reference protocol tuning
    removes (stats.gap_share). A gap is the mean over seeds of the optimizer's final headline value minus
    AdaGrad's on the same seed; ``share = 1 - tuned_gap / reference_gap`` with a 95% bootstrap CI that resamples
    seeds, the same seeds for both gaps. Only the seeds on which both optimizers have a finite value under both
    protocols count (``seeds``). An optimizer with several settings under the reference protocol gets a row per
    setting; a problem where AdaGrad lacks a protocol, or has several settings in one, gets none. The copies
    ``checks`` names are left out."""
    labelled = protocol_runs(runs, tuned_problems, checks)
    rows = []
    for problem, part in labelled.groupby("problem", sort=True, observed=True):
        reference = part[part.protocol == "reference protocol"]
        tuned = part[part.protocol == "tuned protocol"]
        if not ({REFERENCE_OPTIMIZER} <= set(reference.label) and {REFERENCE_OPTIMIZER} <= set(tuned.label)):
            continue
        values = {name: frame.pivot(index="seed", columns="label", values="final_headline")
                  for name, frame in (("reference", reference), ("tuned", tuned))}
        for label, runs_of in reference.groupby("label", sort=True):
            optimizer = str(runs_of.optimizer.iloc[0])
            if label == REFERENCE_OPTIMIZER or optimizer not in values["tuned"]:
                continue
            both = pd.concat({"reference": values["reference"][label] - values["reference"][REFERENCE_OPTIMIZER],
                              "tuned": values["tuned"][optimizer] - values["tuned"][REFERENCE_OPTIMIZER]},
                             axis=1, join="inner")
            result = gap_share(both.reference, both.tuned, confidence, n_resamples, seed)
            rows.append({"problem": problem, "metric": part.headline_metric.iloc[0], "mode": part.headline_mode.iloc[0],
                         "optimizer": label, "reference_optimizer": REFERENCE_OPTIMIZER,
                         "reference_setting": runs_of.setting.iloc[0],
                         "tuned_setting": tuned[tuned.label == optimizer].setting.iloc[0],
                         "seeds": result.pop("n"), **result})
    return pd.DataFrame(rows, columns=GAP_SHARE_COLUMNS)
