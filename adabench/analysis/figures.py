"""Seaborn figures of the aggregated runs (PNG and PDF). Figure-only settings never retrain anything."""
from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from ..core.linalg import condition_number, diagonal_preconditioned, gerschgorin_discs, random_spd  # noqa: E402
from .colors import optimizer_colors  # noqa: E402
from .protocols import left_out_note, optimizer_label, profile_left_out  # noqa: E402


def save(figure: plt.Figure, outputs: list[str], dpi: int) -> None:
    """PNG and PDF, byte for byte the same for the same tables: no creation date in a PDF, so a figure drawn again
    from unchanged tables leaves git's copy untouched."""
    for path in outputs:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        metadata = {"CreationDate": None} if str(path).endswith(".pdf") else None
        figure.savefig(path, dpi=dpi, bbox_inches="tight", metadata=metadata)
    plt.close(figure)


def study_only(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame.in_study]


def facet_grid(n: int, width: float = 4.5, height: float = 3.4):
    columns = min(max(n, 1), 3)
    rows = int(np.ceil(max(n, 1) / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(width * columns, height * rows), squeeze=False)
    for axis in axes.flat[n:]:
        axis.set_visible(False)
    return figure, list(axes.flat)


def problems_declaring(frame: pd.DataFrame, problems: dict, kind: str) -> list[str]:
    """The problems in ``frame`` that declare the figure kind ``kind`` (``problems``: the study's declarations,
    Problem.declarations)."""
    return [p for p in dict.fromkeys(frame.problem) if kind in problems[p]["figures"]]


def landscape(hessian, x1, x2):
    """f = 1/2 x^T H x on a grid of points (numpy arrays), for the contours of the trajectories figure."""
    (a, b), (_, d) = hessian
    return 0.5 * (a * x1**2 + 2 * b * x1 * x2 + d * x2**2)


def figure_legend(figure: plt.Figure, axes, title: str | None = None, sort: bool = True) -> None:
    """One legend for the whole figure, right of its panels, where it covers no data: the entries of every panel's
    legend (or, where a panel has none, its labelled artists), each label once; the panels' own legends removed.
    Call it after ``tight_layout`` (which would squeeze the panels to make room for it); saving with
    ``bbox_inches="tight"`` widens the image to hold it."""
    entries = {}
    for axis in axes:
        legend = axis.get_legend()
        if legend is not None:
            pairs = list(zip(legend.legend_handles, [text.get_text() for text in legend.get_texts()]))
            legend.remove()
        else:
            pairs = list(zip(*axis.get_legend_handles_labels()))
        for handle, label in pairs:
            if not label.startswith("_"):  # matplotlib's mark of an artist kept out of legends
                entries.setdefault(label, handle)
    labels = sorted(entries) if sort else list(entries)
    if not labels:
        return
    # just right of the panels' outermost label or tick: panels of equal aspect (trajectories, discs) end well left
    # of the figure's edge, and a legend at the edge would float far from them
    renderer = figure.canvas.get_renderer()
    edges = [box.x1 for axis in figure.axes if axis.get_visible() and (box := axis.get_tightbbox(renderer))]
    right = figure.transFigure.inverted().transform((max(edges), 0))[0] if edges else 1.0
    figure.legend([entries[label] for label in labels], labels, title=title, fontsize=8, title_fontsize=8,
                  loc="center left", bbox_to_anchor=(right + 0.005, 0.5), frameon=False)


def empty_note(axis, text: str) -> None:
    axis.text(0.5, 0.5, text, ha="center", va="center")
    axis.set_axis_off()


def learning_curves(curves: pd.DataFrame, problems: dict, outputs: list[str], dpi: int, optimizers=(),
                    **tables) -> None:
    """Each problem's declared curve metric (Problem.curve) over its unit, mean over seeds, band min to max."""
    curves = study_only(curves)
    names = list(dict.fromkeys(curves.problem))
    figure, axes = facet_grid(len(names))
    parts = {problem: curves[(curves.problem == problem) & curves[problems[problem]["curve"]].notna()].assign(
        optimizer_label=optimizer_label) for problem in names}
    colors = optimizer_colors((label for part in parts.values() for label in part.optimizer_label), optimizers)
    for axis, problem in zip(axes, names):
        declared = problems[problem]
        metric = declared["curve"]
        part = parts[problem]
        sns.lineplot(data=part, x="epoch", y=metric, hue="optimizer_label", errorbar=("pi", 100), ax=axis,
                     palette=colors, hue_order=sorted(set(part.optimizer_label)))
        axis.set(title=problem, xlabel=declared["unit"])
        if metric in declared["log_scale"]:
            axis.set_yscale("log")
    figure.suptitle("Learning curves: mean over seeds, band from the lowest to the highest seed")
    figure.tight_layout()
    figure_legend(figure, axes, title="optimizer")
    save(figure, outputs, dpi)


def trajectories(curves: pd.DataFrame, problems: dict, outputs: list[str], dpi: int, optimizers=(),
                 **tables) -> None:
    """Paths of the parameters over the problem's landscape, for problems declaring "trajectories": they name the
    two coordinate columns (``trajectory``) and the Hessian of their quadratic landscape (``hessian``)."""
    curves = study_only(curves)
    names = problems_declaring(curves, problems, "trajectories")
    figure, axes = plt.subplots(1, max(1, len(names)), figsize=(6.5 * max(1, len(names)), 5), squeeze=False)
    labels = curves[curves.problem.isin(names)].assign(optimizer_label=optimizer_label).optimizer_label
    colors = optimizer_colors(labels, optimizers)
    for axis, problem in zip(axes.flat, names):
        declared = problems[problem]
        first, second = declared["trajectory"]
        part = curves[curves.problem == problem]
        # one seed: a full-batch problem's seeds all take one path
        part = part[part.seed == part.seed.min()].assign(optimizer_label=optimizer_label)
        start = part[part.epoch == 0]
        reach = 1.25 * float(np.nanmax(np.abs(start[[first, second]].to_numpy()))) if len(start) else 2.5
        grid = np.linspace(-reach, reach, 201)
        x1, x2 = np.meshgrid(grid, grid)
        values = landscape(declared["hessian"], x1, x2)
        axis.contour(x1, x2, values, levels=np.geomspace(values.max() * 1e-3, values.max(), 14), colors="0.75",
                     linewidths=0.7)
        for name, path in part.groupby("optimizer_label", sort=True):
            path = path.sort_values("epoch")
            inside = path[(path[first].abs() < reach) & (path[second].abs() < reach)]
            axis.plot(inside[first], inside[second], "-o", markersize=2.5, linewidth=1.2, color=colors[name],
                      label=name)
        axis.plot([0], [0], "k*", markersize=10)
        axis.set(title=f"{problem}: {int(part.epoch.max())} {declared['unit']}s", xlabel=first, ylabel=second,
                 xlim=(-reach, reach), ylim=(-reach, reach), aspect="equal")
    if not names:
        empty_note(axes.flat[0], "no problem of this study declares trajectories")
    figure.tight_layout()
    figure_legend(figure, axes.flat, title="optimizer")
    save(figure, outputs, dpi)


def final_metric(runs: pd.DataFrame, problems: dict, outputs: list[str], dpi: int, **tables) -> None:
    runs = study_only(runs)
    names = list(dict.fromkeys(runs.problem))
    figure, axes = facet_grid(len(names), width=5.0, height=3.6)
    for axis, problem in zip(axes, names):
        part = runs[runs.problem == problem].assign(optimizer_label=optimizer_label)
        order = part.groupby("optimizer_label").final_headline.mean().sort_values(
            ascending=part.headline_mode.iloc[0] == "min").index
        sns.boxplot(data=part, y="optimizer_label", x="final_headline", order=order, color="0.9", ax=axis, fliersize=0)
        # stripplot jitters its dots with numpy's global generator: seeded, the same runs draw the same bytes
        np.random.seed(0)
        sns.stripplot(data=part, y="optimizer_label", x="final_headline", order=order, hue="seed", palette="dark",
                      size=4, ax=axis, legend=False)
        metric = part.headline_metric.iloc[0]
        axis.set(title=problem, xlabel=f"final {metric}", ylabel="")
        if metric in problems[problem]["log_scale"]:
            # a run that reaches exactly 0 (linreg's training MSE in float32) has no place on a log axis and would
            # vanish from it: linear from 0 up to the smallest positive value, logarithmic above
            positive = part.final_headline[part.final_headline > 0]
            if (part.final_headline <= 0).any():
                linthresh = float(positive.min()) if len(positive) else 1.0
                axis.set_xscale("symlog", linthresh=linthresh)
                # 0 and a few decades (matplotlib's symlog ticks every decade, both signs: unreadable)
                low, high = int(np.floor(np.log10(linthresh))), int(np.ceil(np.log10(max(positive.max(), linthresh))))
                step = max(1, int(np.ceil((high - low) / 3)))
                axis.set_xticks([0.0] + [10.0**k for k in range(high, low - 1, -step)])
                axis.set_xlim(-0.5 * linthresh, 2 * 10.0**high)
            else:
                axis.set_xscale("log")
    figure.suptitle("Final headline metric per optimizer, one dot per seed")
    figure.tight_layout()
    save(figure, outputs, dpi)


def effective_lr(curves: pd.DataFrame, problems: dict, outputs: list[str], dpi: int, optimizers=(),
                 **tables) -> None:
    """Each optimizer's effective step sizes; an optimizer that does not report them (a packaged one: its
    eff_lr_* columns are empty) is named on its problem's axis, not left out silently."""
    curves = study_only(curves)
    if "eff_lr_median" not in curves:
        curves = curves.assign(eff_lr_median=np.nan)
    curves = curves.assign(optimizer_label=optimizer_label)
    reported = curves[curves.eff_lr_median.notna()]
    names = list(dict.fromkeys(curves.problem))
    figure, axes = facet_grid(len(names))
    parts = {problem: reported[reported.problem == problem] for problem in names}
    parts = {problem: part[part.seed == part.seed.min()] for problem, part in parts.items()}
    colors = optimizer_colors((label for part in parts.values() for label in part.optimizer_label), optimizers)
    for axis, problem in zip(axes, names):
        for name, run in parts[problem].groupby("optimizer_label", sort=True):
            axis.plot(run.epoch, run.eff_lr_median, color=colors[name], label=name)
            axis.fill_between(run.epoch, run.eff_lr_min, run.eff_lr_max, color=colors[name], alpha=0.12)
        silent = sorted(set(curves[curves.problem == problem].optimizer_label)
                        - set(reported[reported.problem == problem].optimizer_label))
        # under the axis, in its label, where tight_layout makes room for it: inside the panel it covered curves
        note = "\n" + textwrap.fill("step sizes not reported: " + ", ".join(silent), 44) if silent else ""
        axis.set(title=problem, xlabel=problems[problem]["unit"] + note, ylabel="effective step size",
                 yscale="log" if len(parts[problem]) else "linear")
    figure.suptitle("Effective per-coordinate step size: median, band from min to max over coordinates (first seed)")
    figure.tight_layout()
    figure_legend(figure, axes, title="optimizer")
    save(figure, outputs, dpi)


def feature_errors(runs: pd.DataFrame, problems: dict, outputs: list[str], dpi: int, **tables) -> None:
    """Final metrics set side by side per optimizer, for problems declaring "feature_errors": they map each
    metric to its label (``feature_errors``), e.g. the weight error on rare and on frequent features."""
    runs = study_only(runs)
    names = problems_declaring(runs, problems, "feature_errors")
    figure, axes = facet_grid(len(names), width=8, height=4)
    colors = optimizer_colors(label for problem in names for label in problems[problem]["feature_errors"].values())
    for axis, problem in zip(axes, names):
        labels = problems[problem]["feature_errors"]
        part = runs[runs.problem == problem].assign(optimizer_label=optimizer_label)
        tidy = part.melt(id_vars=["optimizer_label", "seed"], value_vars=[f"final_{m}" for m in labels],
                         var_name="metric", value_name="value")
        tidy["metric"] = tidy.metric.str.removeprefix("final_").map(labels)
        first = next(iter(labels.values()))
        order = tidy[tidy.metric == first].groupby("optimizer_label").value.mean().sort_values().index
        sns.barplot(data=tidy, y="optimizer_label", x="value", hue="metric", order=order, errorbar=("pi", 100),
                    ax=axis, palette=colors, hue_order=list(labels.values()))
        axis.set(ylabel="", xlabel="final value", title=problem)
    if not names:
        axes[0].set_visible(True)
        empty_note(axes[0], "no problem of this study declares feature errors")
    figure.tight_layout()
    figure_legend(figure, axes, sort=False)
    save(figure, outputs, dpi)


def gerschgorin(outputs: list[str], dpi: int, size: int = 6, seed: int = 0, **tables) -> None:
    """Exercises 3-4: a badly scaled SPD matrix before and after diag^-1/2 M diag^-1/2."""
    rng = np.random.default_rng(seed)
    scales = np.geomspace(0.2, 5.0, size)
    matrix = scales[:, None] * random_spd(size, rng, condition=4.0) * scales[None, :]
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    for axis, (name, m) in zip(axes, [("M", matrix), ("diag(M)^-1/2 M diag(M)^-1/2", diagonal_preconditioned(matrix))]):
        centers, radii = gerschgorin_discs(m)
        for center, radius in zip(centers, radii):
            axis.add_patch(plt.Circle((center, 0), radius, fill=True, alpha=0.12, edgecolor="C0"))
        eigenvalues = np.linalg.eigvalsh(m)
        axis.plot(eigenvalues, np.zeros_like(eigenvalues), "rx", markersize=9, label="eigenvalues")
        axis.plot(centers, np.zeros_like(centers), "k|", markersize=12, label="disc centres M_jj")
        pad = 0.05 * np.max(centers + radii)
        axis.set(xlim=(np.min(centers - radii) - pad, np.max(centers + radii) + pad),
                 ylim=(-np.max(radii) - pad, np.max(radii) + pad), aspect="equal",
                 title=f"{name}: condition number {condition_number(m):.1f}", xlabel="real axis")
    figure.suptitle("Gerschgorin discs and eigenvalues of a random SPD matrix, before and after diagonal preconditioning")
    figure.tight_layout()
    figure_legend(figure, axes, sort=False)
    save(figure, outputs, dpi)


def lr_sensitivity(sensitivity: pd.DataFrame, selection: pd.DataFrame, problems: dict, outputs: list[str], dpi: int,
                   optimizers=(), **tables) -> None:
    """Final validation metric against the learning rate, a line per optimizer, band over the grid seeds,
    the chosen point marked."""
    names = list(dict.fromkeys(sensitivity.problem))
    figure, axes = facet_grid(len(names))
    palette = optimizer_colors(sensitivity.optimizer, optimizers)
    for axis, problem in zip(axes, names):
        part = sensitivity[sensitivity.problem == problem].replace([np.inf, -np.inf], np.nan)
        for optimizer, line in part.groupby("optimizer", sort=True):
            axis.plot(line.lr, line["mean"], "-o", markersize=3, color=palette[optimizer], label=optimizer)
            axis.fill_between(line.lr, line.low, line.high, color=palette[optimizer], alpha=0.15)
            chosen = selection[(selection.problem == problem) & (selection.optimizer == optimizer)]
            axis.plot(chosen.lr, chosen.validation_score, "*", markersize=13, color=palette[optimizer],
                      markeredgecolor="black")
        axis.set(title=problem, xscale="log", xlabel="learning rate", ylabel=f"final {part.metric.iloc[0]}")
        if part.metric.iloc[0] in problems[problem]["log_scale"]:
            axis.set_yscale("log")
    figure.suptitle("Learning-rate sensitivity on the validation split (band: range over grid seeds; star: chosen)")
    figure.tight_layout()
    figure_legend(figure, axes, title="optimizer")
    save(figure, outputs, dpi)


def performance_profile(profile: pd.DataFrame, outputs: list[str], dpi: int, times: pd.DataFrame | None = None,
                        optimizers=(), **tables) -> None:
    """The profiles (protocols.profile), and under them the optimizers left out as not run on every problem, read
    from the time-to-target table ``times`` (which holds no copies)."""
    costs = list(dict.fromkeys(profile.cost))
    figure, axes = facet_grid(max(1, len(costs)), width=5.5)
    colors = optimizer_colors(profile.optimizer, optimizers)
    for axis, cost in zip(axes, costs):
        part = profile[profile.cost == cost].assign(optimizer=lambda frame: frame.optimizer.astype(str))
        sns.lineplot(data=part, x="tau", y="fraction", hue="optimizer", drawstyle="steps-post", ax=axis,
                     palette=colors, hue_order=sorted(set(part.optimizer)))
        axis.set(xscale="log", ylim=(-0.02, 1.02), xlabel=f"τ (multiple of the best optimizer's {cost} to target)",
                 ylabel="fraction of problems solved within τ", title=f"cost: {cost} to target")
    figure.suptitle("Performance profiles over problems, tuned protocol")
    figure.tight_layout()
    note = left_out_note(profile_left_out(times)) if times is not None else ""
    if note:
        # below the panels (the tight bounding box of the saved image takes it in), where it covers no curve
        figure.text(0.01, 0.0, note, ha="left", va="top", fontsize=8, wrap=True)
    figure_legend(figure, axes, title="optimizer")
    save(figure, outputs, dpi)


def time_to_target(times: pd.DataFrame, outputs: list[str], dpi: int, **tables) -> None:
    problems = list(dict.fromkeys(times.problem))
    figure, axes = facet_grid(max(1, len(problems)), width=5.5)
    colors = optimizer_colors(times.protocol)
    for axis, problem in zip(axes, problems):
        part = times[times.problem == problem].replace([np.inf], np.nan).assign(
            protocol=lambda frame: frame.protocol.astype(str))
        sns.barplot(data=part, y="label", x="median_epochs", hue="protocol", ax=axis, palette=colors,
                    hue_order=sorted(set(part.protocol)))
        for container in axis.containers:
            axis.bar_label(container, fmt="%.0f", fontsize=6)
        reached = "≥" if part["mode"].iloc[0] == "max" else "≤"
        axis.set(title=f"{problem}: {part.metric.iloc[0]} {reached} {part.target.iloc[0]:g}",
                 xlabel="median epochs (steps) to target (missing: not reached)", ylabel="")
    figure.suptitle("Time to target, reference protocol and tuned protocol")
    figure.tight_layout()
    figure_legend(figure, axes, title="protocol")
    save(figure, outputs, dpi)


def tuning_budget(budget: pd.DataFrame, stability: pd.DataFrame, problems: dict, outputs: list[str], dpi: int,
                  optimizers=(), **tables) -> None:
    """Per tuned problem (a column): above, the expected best validation score after trying k grid rates drawn at
    random, one line per optimizer (Dodge et al. 2019; adabench.analysis.budget); below, how often each optimizer's
    chosen rate is chosen again when the grid seeds are resampled ("does not train": how often no rate trains, where
    the selection chooses none). One legend for the figure, outside the panels."""
    names = list(dict.fromkeys(budget.problem))
    shown = sorted(set(budget.optimizer.astype(str)))
    palette = optimizer_colors(shown, optimizers)
    columns = max(1, len(names))
    figure, axes = plt.subplots(2, columns, figsize=(4.5 * columns, 3.4 * 2), squeeze=False,
                                gridspec_kw={"height_ratios": [1.15, 1]})
    for column, problem in enumerate(names):
        curves, bars = axes[0, column], axes[1, column]
        part = budget[budget.problem == problem].assign(optimizer=lambda f: f.optimizer.astype(str))
        metric = str(part.metric.iloc[0])
        sns.lineplot(data=part, x="k", y="expected_best", hue="optimizer", palette=palette, hue_order=shown,
                     marker="o", markersize=4, errorbar=None, legend=False, ax=curves)
        curves.set(title=problem, xlabel="learning rates tried (k)", ylabel=f"expected best {metric}",
                   xticks=sorted(set(part.k)))
        if metric in problems.get(problem, {}).get("log_scale", []):
            curves.set_yscale("log")
        chosen = stability[(stability.problem == problem) & stability.chosen.astype(bool)].assign(
            optimizer=lambda f: f.optimizer.astype(str)).sort_values("optimizer")
        sns.barplot(data=chosen, y="optimizer", x="wins", hue="optimizer", palette=palette, order=shown,
                    hue_order=shown, errorbar=None, legend=False, ax=bars)
        for row in chosen.itertuples():
            label = "does not train" if np.isnan(row.lr) else f"lr {row.lr:.3g}"
            bars.text(min(row.wins, 1.0) + 0.02, shown.index(row.optimizer), label, va="center", fontsize=7)
        bars.set(xlim=(0, 1.3), xticks=[0, 0.25, 0.5, 0.75, 1], ylabel="", xlabel="chosen lr: fraction of wins")
        if column:  # the same optimizers in the same order as the first column's
            bars.set_yticklabels([])
    if not names:
        empty_note(axes[0, 0], "no tuned problem in this study")
        axes[1, 0].set_visible(False)
    resamples = int(stability.resamples.iloc[0]) if len(stability) else 0
    figure.suptitle("Above: expected best selection metric (validation where held out) after trying k learning rates "
                    "drawn at random from those tried (Dodge et al. 2019).\nBelow: how often the chosen learning rate "
                    f"is chosen again over {resamples} resamples of the grid seeds")
    figure.tight_layout()
    if shown:
        handles = [Line2D([], [], color=palette[name], marker="o", markersize=4) for name in shown]
        figure.legend(handles, shown, title="optimizer", fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    save(figure, outputs, dpi)
