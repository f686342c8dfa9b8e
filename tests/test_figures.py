"""Figures are drawn again on a fresh clone (their inputs' file times change): the same runs must give the same
bytes, or a rebuild of the published study would change tracked files."""
import json

import pytest

import adabench
from adabench.analysis.figures import final_metric

from conftest import REPO_ROOT

PUBLISHED = REPO_ROOT / "results/default"


def test_the_final_metric_figure_is_the_same_bytes_when_drawn_again(tmp_path):
    runs, _ = adabench.load_study(PUBLISHED)
    runs = runs[runs.problem.isin(["sparse_logreg", "quadratic"])]
    problems = json.loads((PUBLISHED / "problems.json").read_text())
    drawn = []
    for attempt in ("first", "second"):
        outputs = [str(tmp_path / f"{attempt}.png"), str(tmp_path / f"{attempt}.pdf")]
        final_metric(runs, problems, outputs, dpi=60)
        drawn.append([(tmp_path / f"{attempt}.{kind}").read_bytes() for kind in ("png", "pdf")])
    assert drawn[0] == drawn[1]


# --- one legend per figure, beside the panels, never over the data ------------------------------------------------

OPTIMIZERS = {"p1": ["adagrad", "adam"], "p2": ["adam", "sgd"]}  # one optimizer in both panels, one in each alone


def small_tables() -> dict:
    """Tables of two problems whose curves fill their panels, so that a legend inside a panel would cover data."""
    import numpy as np
    import pandas as pd

    curves, runs, sensitivity, selection, times, budget, stability = [], [], [], [], [], [], []
    for problem, optimizers in OPTIMIZERS.items():
        for index, optimizer in enumerate(optimizers):
            for seed in (0, 1):
                for epoch in range(0, 11):
                    value = 1.0 - epoch / 10 * (index + 1) / 2 + 0.01 * seed
                    curves.append({"problem": problem, "optimizer": optimizer, "setting": "lr=0.1", "seed": seed,
                                   "epoch": epoch, "in_study": True, "loss": value, "eff_lr_min": 0.01,
                                   "eff_lr_median": 0.1 * (index + 1), "eff_lr_max": 1.0,
                                   "x1": 2 * (1 - epoch / 10) * np.cos(epoch + index),
                                   "x2": 2 * (1 - epoch / 10) * np.sin(epoch + index)})
                runs.append({"problem": problem, "optimizer": optimizer, "setting": "lr=0.1", "seed": seed,
                             "in_study": True, "final_headline": 0.5 + 0.1 * index, "headline_metric": "loss",
                             "headline_mode": "min", "final_rare": 0.3 + 0.1 * index, "final_frequent": 0.2})
            for lr in (0.001, 0.01, 0.1, 1.0):
                sensitivity.append({"problem": problem, "optimizer": optimizer, "lr": lr, "metric": "loss",
                                    "mean": 1.0 - lr * (index + 1) / 2, "low": 0.0, "high": 1.0})
            selection.append({"problem": problem, "optimizer": optimizer, "lr": 0.1, "validation_score": 0.9})
            for protocol in ("reference protocol", "tuned protocol"):
                times.append({"problem": problem, "protocol": protocol, "optimizer": optimizer, "label": optimizer,
                              "median_epochs": 5 + index, "mode": "min", "metric": "loss", "target": 0.5})
            budget += [{"problem": problem, "optimizer": optimizer, "k": k, "expected_best": 1.0 - 0.1 * k * index,
                        "metric": "loss"} for k in (1, 2, 3)]
            stability.append({"problem": problem, "optimizer": optimizer, "chosen": True, "lr": 0.1, "wins": 0.8,
                              "resamples": 100})
    profile = [{"cost": cost, "optimizer": optimizer, "tau": tau, "fraction": min(1.0, tau / (index + 2))}
               for cost in ("epochs", "seconds") for index, optimizer in enumerate(["adagrad", "adam", "sgd"])
               for tau in (1.0, 2.0, 4.0)]
    declared = {"curve": "loss", "unit": "epoch", "log_scale": [], "figures": ["trajectories", "feature_errors"],
                "trajectory": ["x1", "x2"], "hessian": [[1.0, 0.0], [0.0, 4.0]],
                "feature_errors": {"rare": "rare features", "frequent": "frequent features"}}
    frame = pd.DataFrame
    return {"curves": frame(curves), "runs": frame(runs), "sensitivity": frame(sensitivity),
            "selection": frame(selection), "times": frame(times), "profile": frame(profile), "budget": frame(budget),
            "stability": frame(stability), "problems": {problem: declared for problem in OPTIMIZERS}}


def drawn(name: str, out, **arguments):
    """The figure ``name`` of adabench.analysis.figures drawn into ``out`` from ``arguments``, kept (beside its files)
    for a look."""
    from adabench.analysis import figures

    kept, real_save = [], figures.save
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(figures, "save", lambda figure, outputs, dpi: (kept.append(figure),
                                                                     real_save(figure, outputs, dpi)))
        getattr(figures, name)(**arguments, outputs=[str(out / f"{name}.png")], dpi=50)
    return kept[0]


@pytest.fixture(scope="module")
def drawn_figures(tmp_path_factory) -> dict:
    """Every figure of the module drawn from the small tables."""
    out, tables = tmp_path_factory.mktemp("figures"), small_tables()
    return {name: drawn(name, out, **tables) for name in (
        "learning_curves", "trajectories", "effective_lr", "feature_errors", "gerschgorin", "lr_sensitivity",
        "performance_profile", "time_to_target", "tuning_budget")}


def test_each_figure_has_one_legend_outside_its_panels(drawn_figures):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    for name, figure in drawn_figures.items():
        legends = list(figure.legends) + [axis.get_legend() for axis in figure.axes if axis.get_legend()]
        assert len(legends) == 1, (name, len(legends))
        canvas = FigureCanvasAgg(figure)  # closed by save: drawn again on a canvas of its own
        canvas.draw()
        renderer = canvas.get_renderer()
        box = legends[0].get_window_extent(renderer)
        for axis in figure.axes:
            if axis.get_visible() and axis.has_data():
                assert not box.overlaps(axis.get_window_extent(renderer)), (name, axis.get_title())


def test_the_one_legend_holds_for_every_panel(drawn_figures):
    """An optimizer in two panels has one color in both, the color its legend entry shows."""
    from matplotlib.colors import to_hex

    figure = drawn_figures["lr_sensitivity"]
    legend = figure.legends[0]
    shown = {text.get_text(): to_hex(handle.get_color()) for text, handle in zip(legend.get_texts(),
                                                                                  legend.legend_handles)}
    assert sorted(shown) == ["adagrad", "adam", "sgd"]
    for axis in figure.axes:
        for line in axis.get_lines():
            if not line.get_label().startswith("_"):
                assert to_hex(line.get_color()) == shown[line.get_label()], (axis.get_title(), line.get_label())


def test_an_optimizer_that_reports_no_step_sizes_is_named_not_left_out(tmp_path):
    """A packaged optimizer has no effective step sizes (empty eff_lr_* columns): its problem's panel names it."""
    def notes(tables) -> dict:
        figure = drawn("effective_lr", tmp_path, **tables)
        return {axis.get_title(): axis.get_xlabel() for axis in figure.axes if axis.get_title()}

    tables = small_tables()
    curves, columns = tables["curves"], ["eff_lr_min", "eff_lr_median", "eff_lr_max"]
    curves.loc[(curves.problem == "p2") & (curves.optimizer == "sgd"), columns] = float("nan")
    # under the panel's axis (inside it, the note covered curves), not over the data
    assert notes(tables) == {"p1": "epoch", "p2": "epoch\nstep sizes not reported: sgd"}
    # a problem none of whose optimizers reports keeps its panel, with the note
    curves.loc[curves.problem == "p2", columns] = float("nan")
    assert notes(tables) == {"p1": "epoch", "p2": "epoch\nstep sizes not reported: adam, sgd"}


def test_the_profile_names_the_optimizers_it_leaves_out_below_its_panels(drawn_figures):
    """adagrad and sgd ran on one problem of two (small_tables): the profile's figure names them under its panels,
    clear of every panel, and names no optimizer that ran on both."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    figure = drawn_figures["performance_profile"]
    notes = [text for text in figure.texts if text.get_text().startswith("Left out")]
    assert [text.get_text() for text in notes] == [
        "Left out, not run on every problem: adagrad (run on p1); sgd (run on p2)"]
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    box = notes[0].get_window_extent(canvas.get_renderer())
    assert not any(box.overlaps(axis.get_window_extent(canvas.get_renderer())) for axis in figure.axes
                   if axis.get_visible())


def test_an_optimizer_has_one_color_in_every_figure_and_on_the_page(tmp_path):
    """Each plot that shows a subset of the study's optimizers (here p2's adam and sgd, of adagrad, adam and sgd)
    draws each in the color the study gives it, in every figure and in the page's plots alike: colored by what a
    plot shows, adam took adagrad's color wherever adagrad was absent."""
    from matplotlib.colors import to_hex

    from adabench.analysis import explorer
    from adabench.analysis.colors import optimizer_colors

    study = ["adagrad", "adam", "sgd"]
    expected = optimizer_colors((), study)
    assert len(set(expected.values())) == 3
    tables = small_tables()
    p2 = {name: frame[frame.problem == "p2"] if "problem" in frame else frame[frame.optimizer.isin(OPTIMIZERS["p2"])]
          for name, frame in tables.items() if name != "problems"}
    for name in ("learning_curves", "trajectories", "effective_lr", "lr_sensitivity", "performance_profile",
                 "tuning_budget"):
        legend = drawn(name, tmp_path, **p2, problems=tables["problems"], optimizers=study).legends[0]
        shown = {text.get_text(): to_hex(handle.get_color()) for text, handle in zip(legend.get_texts(),
                                                                                      legend.legend_handles)}
        assert shown == {name: expected[name] for name in ("adam", "sgd")}, name
    declared = tables["problems"]["p2"]
    pages = [explorer.lr_sensitivity(p2["sensitivity"], p2["selection"], "p2", declared, study),
             explorer.tuning_budget(p2["budget"].assign(grid_best=0.1, p_all_diverged=0.0), p2["stability"], "p2",
                                    declared, study),
             explorer.performance_profiles(p2["profile"], study)]
    for page in pages:
        colored = {trace.meta["optimizer"] if trace.meta else trace.name: trace.line.color for trace in page.data
                   if trace.line.color}
        assert colored == {name: expected[name] for name in ("adam", "sgd")}, page.layout.title.text


def test_each_optimizer_has_a_color_of_its_own():
    """Eleven optimizers (the default study's ten competitors on the LeNets and one of a user's) get eleven colors
    (seaborn's ten would repeat one), and so on past 24; a label outside the study takes a color no optimizer of the
    study has."""
    from adabench.analysis.colors import optimizer_colors

    for count in (3, 10, 11, 24, 30):
        colors = optimizer_colors([f"optimizer-{index:02d}" for index in range(count)] * 2)
        assert len(colors) == count and len(set(colors.values())) == count, count
    study = [f"optimizer-{index:02d}" for index in range(11)]
    colors = optimizer_colors(["optimizer-03", "adam (lr=0.1)"], study)
    assert colors["optimizer-03"] == optimizer_colors(study)["optimizer-03"]
    assert colors["adam (lr=0.1)"] not in [colors[name] for name in study]


def test_a_run_that_reaches_zero_keeps_its_dot_on_a_log_scale(tmp_path):
    """linreg's training MSE reaches exactly 0.0 for some optimizers: on a log axis their dots vanished, as if they
    had not run. The panel keeps them (linear near 0, logarithmic above)."""
    tables = small_tables()
    runs = tables["runs"]
    runs.loc[(runs.problem == "p1") & (runs.optimizer == "adam"), "final_headline"] = 0.0
    problems = {name: {**declared, "log_scale": ["loss"]} for name, declared in tables["problems"].items()}
    figure = drawn("final_metric", tmp_path, runs=runs, problems=problems)
    panels = {axis.get_title(): axis for axis in figure.axes if axis.get_title()}
    assert panels["p1"].get_xscale() == "symlog" and panels["p2"].get_xscale() == "log"
    low, high = panels["p1"].get_xlim()
    dots = [x for collection in panels["p1"].collections for x, _ in collection.get_offsets()]
    assert 0.0 in dots and low <= 0.0 <= high
