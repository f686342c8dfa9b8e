"""A study's results page: one self-contained HTML file that works offline (``results/<study>/explorer.html``).

Every table is an interactive DataTables table (itables, its JavaScript bundled into the page), sortable and
filterable, numbers rounded as in the Markdown tables; the plots are plotly figures (plotly.js bundled once):
learning curves per problem (mean over seeds, a band from the lowest to the highest seed, each seed's value on
hover, traces toggled from the legend), learning-rate sensitivity, the tuning budget (expected best validation
score against the number of rates tried, adabench.analysis.budget), time to target and performance profiles. A
header says which study, config, code, machines and date the page shows. No torch: the page reads the study's
tables and what its problems declare (problems.json).
"""
from __future__ import annotations

import hashlib
import html
import re
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.colors
import plotly.graph_objects as go
import plotly.io as pio
from itables import to_html_datatable
from itables.javascript import generate_init_offline_itables_html
from itables.options import dt_bundle
from plotly.subplots import make_subplots

from ..core.atomic import read_json
from .colors import optimizer_colors
from .export import load_study
from .protocols import left_out_note, profile_left_out, protocol_runs
from .tables import fmt

# the tables of a study, in the order the page shows them: (file under the study, title)
TABLES = [("tables/comparison.csv", "Every optimizer, the study's settings"),
          ("tables/reproduction.csv", "The reference report against this pipeline"),
          ("tables/protocols.csv", "The protocols side by side: reference, defaults, tuned"),
          ("tables/paired_tests.csv", "Paired tests against AdaGrad"),
          ("tables/gap_share.csv", "The share of each gap to AdaGrad that tuning removes"),
          ("tables/implementation_checks.csv", "Implementation checks: a copy against its original, run for run"),
          ("tables/time_to_target.csv", "Time to target"),
          ("tuning/selection.csv", "Tuned learning rates (chosen on validation)"),
          ("tuning/search.csv", "The learning-rate search, round by round"),
          ("tuning/tuning_budget.csv", "Tuning budget: expected best validation score after k random grid rates"),
          ("tuning/choice_stability.csv", "Tuning variance: how often each rate is chosen when the grid seeds are "
                                          "resampled"),
          ("tables/optimizer_overhead.csv", "Optimizer overhead per step"),
          ("tables/compute.csv", "What the study cost, per machine")]
TABLE_LAYOUT = {"topStart": None, "topEnd": "search", "bottomStart": "info", "bottomEnd": None}
SAFE_ID = re.compile(r"[A-Za-z0-9_-]+")


def element_id(prefix: str, name) -> str:
    """The HTML id of a figure of ``name`` (a problem's: a plug-in chooses it, and ``x"><script>`` is a valid one).
    A name of letters, digits, '_' and '-' is kept as it is (the built-in problems: readable, stable links); any
    other becomes a slug of it and a digest of the whole name, so that none of its characters reach the markup and
    two names that slug alike still get two ids."""
    name = str(name)
    if SAFE_ID.fullmatch(name):
        return f"{prefix}-{name}"
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-")[:40]
    return f"{prefix}-{slug}-{hashlib.sha256(name.encode()).hexdigest()[:12]}"


def text(name) -> str:
    """A name as plotly text: plotly.js renders tags in titles, trace names and tick labels (<a href>, <br>, ...)
    and shows entities as their characters, so an escaped name is shown exactly as it is written, never as markup."""
    return html.escape(str(name), quote=False)


def table_html(name: str, frame: pd.DataFrame) -> str:
    """A sortable, filterable table: numbers shown as the Markdown tables show them (adabench.analysis.tables.fmt,
    through pandas' float format, which itables applies), sorted by their full values."""
    with pd.option_context("display.float_format", fmt):
        return to_html_datatable(frame, connected=False, layout=TABLE_LAYOUT, paging=False,
                                 classes="display compact", showIndex=False, format_floats_in_python=True,
                                 text_in_header_can_be_selected=False)  # a click anywhere on a header sorts


def seed_hover(seeds: list) -> str:
    lines = [f"seed {seed}: %{{customdata[{i}]:.4g}}" for i, seed in enumerate(seeds)]
    return "%{fullData.name}<br>%{x}: mean %{y:.4g}<br>" + "<br>".join(lines) + "<extra></extra>"


def curve_labels(runs: pd.DataFrame, checks: dict[str, str] | None = None) -> pd.DataFrame:
    """One row per run and protocol it belongs to, with the label of its trace: the optimizer (and its setting
    where the protocol runs several of that optimizer); under the tuned and the defaults protocols, the protocol and
    the setting too (a run of two protocols, such as RMSprop at 0.01, the report's rate and torch's default, is
    drawn twice: its two legend entries would otherwise read alike)."""
    labelled = protocol_runs(runs, list(dict.fromkeys(runs.problem.astype(str))), checks)
    for protocol, word in (("tuned protocol", "tuned"), ("defaults protocol", "defaults")):
        rows = labelled.protocol == protocol
        labelled.loc[rows, "label"] = (labelled.optimizer.astype(str) + f" ({word}, "
                                       + labelled.setting.astype(str) + ")")
    return labelled[["run_key", "problem", "optimizer", "seed", "label", "protocol"]]


def translucent(color: str, alpha: float = 0.18) -> str:
    red, green, blue = plotly.colors.hex_to_rgb(color)
    return f"rgba({red},{green},{blue},{alpha})"


def learning_curves(runs: pd.DataFrame, curves: pd.DataFrame, problem: str, declared: dict,
                    checks: dict[str, str] | None = None, study=()) -> go.Figure:
    """The problem's declared curve metric: per optimizer (and setting, and protocol) the mean over seeds, a band
    from the lowest to the highest seed, and each seed's value on hover. An optimizer has one color under every
    protocol (its tuned trace dashed, its defaults trace dotted), and in every plot of the page and every figure of
    the study (``study``: the study's optimizers)."""
    metric = declared["curve"]
    labelled = curve_labels(runs[runs.problem == problem], checks).merge(
        curves[curves.problem == problem][["run_key", "epoch", metric]], on="run_key")
    figure = go.Figure()
    colors = optimizer_colors(labelled.optimizer, study)
    for (protocol, label), part in labelled.groupby(["protocol", "label"], sort=True):
        table = part.pivot_table(index="epoch", columns="seed", values=metric, aggfunc="first").sort_index()
        epochs, seeds = table.index.to_numpy(), list(table.columns)
        mean, low, high = table.mean(axis=1), table.min(axis=1), table.max(axis=1)
        dash = {"tuned protocol": "dash", "defaults protocol": "dot"}.get(protocol, "solid")
        color = colors[str(part.optimizer.iloc[0])]
        figure.add_trace(go.Scatter(x=np.concatenate([epochs, epochs[::-1]]),
                                    y=np.concatenate([high.to_numpy(), low.to_numpy()[::-1]]), mode="lines",
                                    fill="toself",
                                    fillcolor=translucent(color), line={"width": 0}, hoverinfo="skip",
                                    showlegend=False, legendgroup=label, name=text(f"{label} band")))
        figure.add_trace(go.Scatter(x=epochs, y=mean.to_numpy(), mode="lines", name=text(label), legendgroup=label,
                                    line={"dash": dash, "color": color}, customdata=table.to_numpy(),
                                    hovertemplate=seed_hover(seeds),
                                    meta={"optimizer": str(part.optimizer.iloc[0]), "protocol": protocol}))
    figure.update_layout(title=text(f"{problem}: {metric} (mean over seeds; band: lowest to highest seed; dashed: "
                                    "tuned; dotted: defaults)"),
                         xaxis_title=text(declared["unit"]), yaxis_title=text(metric), height=460,
                         legend={"font": {"size": 10}},
                         yaxis_type="log" if metric in declared["log_scale"] else "linear")
    return figure


def lr_sensitivity(sensitivity: pd.DataFrame, selection: pd.DataFrame, problem: str, declared: dict,
                   study=()) -> go.Figure:
    part = sensitivity[sensitivity.problem == problem].replace([np.inf, -np.inf], np.nan)
    colors = optimizer_colors(part.optimizer, study)
    figure = go.Figure()
    for optimizer, line in part.groupby("optimizer", sort=True):
        color = colors[str(optimizer)]
        figure.add_trace(go.Scatter(x=line.lr, y=line["mean"], mode="lines+markers", name=text(optimizer),
                                    error_y={"type": "data", "symmetric": False, "array": line.high - line["mean"],
                                             "arrayminus": line["mean"] - line.low}, legendgroup=str(optimizer),
                                    line={"color": color}))
        chosen = selection[(selection.problem == problem) & (selection.optimizer == optimizer)]
        figure.add_trace(go.Scatter(x=chosen.lr, y=chosen.validation_score, mode="markers", showlegend=False,
                                    marker={"symbol": "star", "size": 14, "line": {"width": 1}, "color": color},
                                    legendgroup=str(optimizer), name=text(f"{optimizer}: chosen")))
    metric = part.metric.iloc[0] if len(part) else ""
    figure.update_layout(title=text(f"{problem}: final {metric} on the validation split against the learning rate "
                                    "(bars: range over grid seeds; star: chosen)"), xaxis_type="log",
                         xaxis_title="learning rate", yaxis_title=text(metric), height=420,
                         yaxis_type="log" if metric in declared["log_scale"] else "linear")
    return figure


def tuning_budget(budget: pd.DataFrame, stability: pd.DataFrame, problem: str, declared: dict,
                  study=()) -> go.Figure:
    """The expected best validation score after k grid rates drawn at random, one line per optimizer (Dodge et al.
    2019); the legend says each optimizer's chosen rate and how often it is chosen again over the seed resamples."""
    part = budget[budget.problem == problem]
    chosen = stability[(stability.problem == problem) & stability.chosen.astype(bool)].set_index("optimizer")
    colors = optimizer_colors(part.optimizer, study)
    figure = go.Figure()
    for optimizer, line in part.groupby("optimizer", sort=True):
        name = str(optimizer)
        if name in chosen.index:
            row = chosen.loc[name]
            what = "does not train" if np.isnan(row.lr) else f"lr {row.lr:.3g}"
            name = f"{optimizer} ({what}: in {row.wins:.0%} of seed resamples)"
        figure.add_trace(go.Scatter(x=line.k, y=line.expected_best, mode="lines+markers", name=text(name),
                                    line={"color": colors[str(optimizer)]},
                                    customdata=np.stack([line.grid_best, line.p_all_diverged], axis=1),
                                    hovertemplate="%{fullData.name}<br>%{x} rates tried: expected best %{y:.4g}<br>"
                                                  "grid's best rate %{customdata[0]:.4g}; P(all k diverged) "
                                                  "%{customdata[1]:.2g}<extra></extra>",
                                    meta={"optimizer": str(optimizer)}))
    metric = str(part.metric.iloc[0]) if len(part) else ""
    figure.update_layout(title=text(f"{problem}: expected best {metric} (the selection metric) after trying k "
                                    "learning rates drawn at random from those tried"),
                         xaxis_title="learning rates tried (k)",
                         yaxis_title=text(f"expected best {metric}"), height=420, xaxis={"dtick": 1},
                         yaxis_type="log" if metric in declared["log_scale"] else "linear")
    return figure


def time_to_target(times: pd.DataFrame) -> go.Figure:
    problems = list(dict.fromkeys(times.problem))
    figure = make_subplots(rows=1, cols=max(1, len(problems)), subplot_titles=[text(p) for p in problems])
    for column, problem in enumerate(problems, start=1):
        part = times[times.problem == problem].replace([np.inf], np.nan)
        for protocol, bars in part.groupby("protocol", sort=True):
            figure.add_trace(go.Bar(y=bars.label.map(text), x=bars.median_epochs, orientation="h",
                                    name=text(protocol),
                                    legendgroup=str(protocol), showlegend=column == 1,
                                    customdata=np.stack([bars.median_seconds, bars.reached, bars.seeds], axis=1),
                                    hovertemplate="%{y}: %{x} epochs, %{customdata[0]:.1f} s; reached on "
                                                  "%{customdata[1]} of %{customdata[2]} seeds<extra></extra>"),
                             row=1, col=column)
    figure.update_layout(title="Median epochs (steps) to the target, hover for seconds (missing: not reached)",
                         barmode="group", height=460)
    return figure


def performance_profiles(profile: pd.DataFrame, study=()) -> go.Figure:
    costs = list(dict.fromkeys(profile.cost))
    colors = optimizer_colors(profile.optimizer, study)
    figure = make_subplots(rows=1, cols=max(1, len(costs)),
                           subplot_titles=[text(f"cost: {c} to target") for c in costs])
    for column, cost in enumerate(costs, start=1):
        for optimizer, line in profile[profile.cost == cost].groupby("optimizer", sort=True):
            figure.add_trace(go.Scatter(x=line.tau, y=line.fraction, mode="lines", line={"shape": "hv"},
                                        name=text(optimizer), legendgroup=str(optimizer), showlegend=column == 1,
                                        line_color=colors[str(optimizer)]),
                             row=1, col=column)
        figure.update_xaxes(type="log", title_text="τ (multiple of the best optimizer's cost)", row=1, col=column)
    figure.update_yaxes(range=[-0.02, 1.02], title_text="fraction of problems solved within τ", row=1, col=1)
    figure.update_layout(title="Performance profiles over problems, tuned protocol", height=420)
    return figure


def header_html(header: dict, runs: pd.DataFrame) -> str:
    machines = sorted({f"{row.device_name} ({row.device})" for row in runs[["device_name", "device"]].drop_duplicates()
                       .itertuples()}) if len(runs) else []
    commits = sorted(set(runs.git_commit.dropna().astype(str))) if "git_commit" in runs else []
    facts = {"config (plan digest)": header["plan_digest"], "page built from commit": header["commit"],
             "runs trained with commits": ", ".join(c[:12] for c in commits) or "–",
             "machines": "; ".join(machines) or "–", "runs": str(len(runs)), "built": header["date"]}
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in facts.items())
    return (f"<h1>adabench study <code>{html.escape(header['study'])}</code></h1>"
            f"<table class='facts'>{rows}</table>")


def figure_html(figure: go.Figure, div_id: str, first: bool) -> str:
    return pio.to_html(figure, full_html=False, include_plotlyjs=first, div_id=div_id,
                       config={"displaylogo": False, "responsive": True})


def build_page(root: str | Path, header: dict, checks: dict[str, str] | None = None, optimizers=()) -> str:
    """The page of the study in ``root`` (``results/<study>``), from its tables, tuning tables and problems.json;
    ``checks`` (config checks) are the copies of an optimizer, shown in their table, not as curves; ``optimizers``,
    every optimizer the study runs, gives each one color on the whole page and in the study's figures."""
    root = Path(root)
    runs, curves = load_study(root)
    problems = read_json(root / "problems.json")
    sections, first = [header_html(header, runs)], True
    sections.append("<h2>Tables</h2><p>Click a column to sort; type in a table's search box to filter its rows.</p>")
    for path, title in TABLES:
        if (root / path).exists():
            name = Path(path).stem
            sections.append(f"<h3>{html.escape(title)} <small>({path})</small></h3>"
                            f"<div class='table' id='table-{name}'>{table_html(name, pd.read_csv(root / path))}</div>")
    sections.append("<h2>Learning curves</h2><p>Click a legend entry to hide or show its trace; hover for each "
                    "seed's value.</p>")
    for problem in dict.fromkeys(runs.problem.astype(str)):
        figure = learning_curves(runs, curves, problem, problems[problem], checks, optimizers)
        sections.append(figure_html(figure, element_id("curves", problem), first))
        first = False
    sensitivity, selection = root / "tuning/lr_sensitivity.csv", root / "tuning/selection.csv"
    if sensitivity.exists() and selection.exists():
        sensitivity, selection = pd.read_csv(sensitivity), pd.read_csv(selection)
        sections.append("<h2>Learning-rate sensitivity</h2>")
        for problem in dict.fromkeys(sensitivity.problem):
            sections.append(figure_html(lr_sensitivity(sensitivity, selection, problem, problems[problem], optimizers),
                                        element_id("sensitivity", problem), first))
            first = False
    budget, stability = root / "tuning/tuning_budget.csv", root / "tuning/choice_stability.csv"
    if budget.exists() and stability.exists():
        budget, stability = pd.read_csv(budget), pd.read_csv(stability)
        sections.append("<h2>Tuning budget and variance</h2><p>The expected best score of the selection metric "
                        "(validation where the problem holds data out) after trying k learning rates drawn at random "
                        "from those tried (Dodge et al. 2019, with replacement; a diverged rate counts as the problem's "
                        "worst finite score); in the legend, each optimizer's chosen rate and how often it is chosen "
                        "again when the grid seeds are resampled.</p>")
        for problem in dict.fromkeys(budget.problem):
            sections.append(figure_html(tuning_budget(budget, stability, problem, problems[problem], optimizers),
                                        element_id("budget", problem), first))
            first = False
    times = root / "tables/time_to_target.csv"
    times = pd.read_csv(times) if times.exists() else None
    if times is not None:
        sections.append("<h2>Time to target</h2>")
        sections.append(figure_html(time_to_target(times), "time-to-target", first))
        first = False
    if (root / "tables/performance_profile.csv").exists():
        sections.append("<h2>Performance profiles</h2>")
        note = left_out_note(profile_left_out(times)) if times is not None else ""
        if note:
            sections.append(f"<p>{html.escape(note)}.</p>")
        sections.append(figure_html(performance_profiles(pd.read_csv(root / "tables/performance_profile.csv"),
                                                         optimizers),
                                    "performance-profiles", first))
    style = ("body{font-family:sans-serif;margin:1.5em;max-width:1400px} table.facts th{text-align:left;"
             "padding-right:1em} .table{margin-bottom:2em} h3 small{font-weight:normal;color:#666} .table{overflow-x:auto}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>adabench: {html.escape(header['study'])}"
            f"</title><style>{style}</style>{generate_init_offline_itables_html(dt_bundle)}</head><body>"
            + "\n".join(sections) + "</body></html>\n")
