"""The study as one DataFrame (load_study, adabench export, Parquet), and its results page as a person opens it: a
real headless Chromium on the quick study's explorer.html, offline."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from browser import CHROMIUM, in_browser
from workflow_helpers import REPO_ROOT, quick_config

import adabench
from adabench.analysis.tables import comparison_table

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"  # screenshots a run of the tests leaves for a person


def test_load_study_gives_typed_runs_and_curves_that_rebuild_the_comparison_table(quick):
    runs, curves = adabench.load_study(quick / "results/quick")
    assert runs.run_key.is_unique and str(runs.problem.dtype) == "category" and str(runs.seed.dtype) == "Int64"
    assert runs.in_study.dtype == bool and runs.final_headline.dtype == float
    assert set(curves.run_key) == set(runs.run_key) and str(curves.epoch.dtype) == "Int64"
    assert set(curves[curves.problem == "quadratic"].unit) == {"step"}
    # docs/results.md's example (load_study): one row of the comparison table, from the tidy runs
    study = runs[runs.in_study & (runs.problem == "sparse_logreg") & (runs.optimizer == "adam")]
    mean = study.final_headline.mean()
    table = pd.read_csv(quick / "results/quick/tables/comparison.csv")
    row = table[(table.problem == "sparse_logreg") & (table.optimizer == "adam")].iloc[0]
    assert mean == pytest.approx(row["mean"], rel=1e-12)
    declarations = json.loads((quick / "results/quick/problems.json").read_text())
    rebuilt = comparison_table(pd.read_csv(quick / "results/quick/tables/runs.csv"), declarations,
                               quick_config()["checks"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(rebuilt, table, check_exact=False, check_dtype=False)


def test_adabench_export_writes_the_same_tables(quick, tmp_path):
    done = subprocess.run([sys.executable, "-m", "adabench", "export", str(quick / "results/quick"), "--out",
                           str(tmp_path), "--format", "csv"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    runs = pd.read_csv(tmp_path / "runs.csv")
    assert len(runs) == len(pd.read_csv(quick / "results/quick/tables/runs.csv"))
    missing = subprocess.run([sys.executable, "-m", "adabench", "export", str(tmp_path / "nothing"), "--out",
                              str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert missing.returncode != 0 and "run snakemake for this study first" in missing.stderr


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium")
def test_the_results_page_loads_offline_sorts_filters_and_draws_a_curve_per_optimizer(quick, tmp_path):
    page_file = quick / "results/quick/explorer.html"
    assert "https://" not in page_file.read_text().split("<body>")[0].replace("https://itables.org", "")
    optimizers = quick_config()["optimizers"]
    found = {}

    async def steps(page):
        tables = len(list((quick / "results/quick/tables").glob("*.csv")))
        await page.wait_until("document.querySelectorAll('table.dataTable').length >= 6")
        await page.wait_until("document.querySelectorAll('.js-plotly-plot').length >= 4")
        comparison = "document.querySelector('#table-comparison table.dataTable')"
        first_cells = f"Array.from({comparison}.querySelectorAll('tbody tr td:nth-child(2)')).map(c => c.textContent)"
        before = await page.evaluate(first_cells)
        # sort by the optimizer column: a click on its header
        await page.evaluate(f"Array.from({comparison}.querySelectorAll('thead th'))"
                            ".find(th => th.textContent.trim().startsWith('optimizer')).click()")
        await page.wait_until(f"JSON.stringify({first_cells}) != JSON.stringify({before!r})")
        after = await page.evaluate(first_cells)
        # a filter: type a problem's name into the table's search box
        search = "document.querySelector('#table-comparison input[type=search]')"
        await page.evaluate(f"{search}.value = 'sparse_logreg'; {search}.dispatchEvent(new Event('input'))")
        rows = f"Array.from({comparison}.querySelectorAll('tbody tr')).map(r => r.textContent)"
        await page.wait_until(f"{rows}.length < {len(before)}")
        filtered = await page.evaluate(rows)
        traces = await page.evaluate("document.getElementById('curves-lenet_relu_fmnist').data"
                                     ".filter(t => t.showlegend !== false && t.meta && "
                                     "t.meta.protocol === 'reference protocol').map(t => t.meta.optimizer)")
        found.update(before=before, after=after, filtered=filtered, traces=traces, tables=tables,
                     errors=list(page.errors))
        ARTIFACTS.mkdir(exist_ok=True)
        await page.evaluate(f"{search}.value = ''; {search}.dispatchEvent(new Event('input'))")
        await page.screenshot(ARTIFACTS / "explorer-quick.png")

    in_browser(page_file.as_uri(), tmp_path / "profile", steps)
    assert found["errors"] == []
    assert sorted(found["after"]) == found["after"] != found["before"]
    assert found["filtered"] and all("sparse_logreg" in row for row in found["filtered"])
    assert sorted(found["traces"]) == sorted(optimizers)
    assert (ARTIFACTS / "explorer-quick.png").stat().st_size > 10_000


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium")
def test_the_readmes_pictures_of_a_page_are_taken_by_one_command(quick, tmp_path):
    result = subprocess.run([sys.executable, str(REPO_ROOT / "tests/screenshot.py"),
                             str(quick / "results/quick/explorer.html"), str(tmp_path / "pictures/quick")],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    top, curves = tmp_path / "pictures/quick.png", tmp_path / "pictures/quick-curves.png"
    assert result.stdout.split() == [str(top), str(curves)]
    for picture in (top, curves):
        assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and picture.stat().st_size > 10_000
    assert top.read_bytes() != curves.read_bytes()  # the second is scrolled to the curves


# --- names a plug-in chooses never become markup -----------------------------------------------------------------

HOSTILE = {"problem": 'p"><img src=x onerror=alert(1)>', "optimizer": "</script><svg onload=alert(2)>"}
PLAIN = {"problem": "plain_problem", "optimizer": "plain_optimizer"}


class Elements(HTMLParser):
    """Every element of a page as a browser's tokenizer sees it (a script's content is text up to its end tag)."""

    def __init__(self):
        super().__init__()
        self.elements: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))


def parsed(page: str) -> list[tuple[str, dict]]:
    parser = Elements()
    parser.feed(page)
    parser.close()
    return parser.elements


def small_study(root: Path, names: dict) -> Path:
    """The tables a study of one problem and one optimizer leaves, as small as the page reads them."""
    (root / "tables").mkdir(parents=True)
    (root / "tuning").mkdir()
    problem, optimizer = names["problem"], names["optimizer"]
    runs = pd.DataFrame([{"run_key": f"run-{seed}", **names, "setting": "lr=0.1", "seed": seed, "in_study": True,
                          "in_defaults": False, "in_tuned": False, "device": "cpu", "device_name": "CPU",
                          "git_commit": "abc"} for seed in (0, 1)])
    runs.to_csv(root / "tables/runs.csv", index=False)
    pd.DataFrame([{"run_key": f"run-{seed}", "problem": problem, "epoch": epoch, "loss": 1.0 / (epoch + seed)}
                  for seed in (0, 1) for epoch in (1, 2, 3)]).to_csv(root / "tables/curves.csv.gz", index=False)
    (root / "problems.json").write_text(json.dumps({problem: {"curve": "loss", "unit": "epoch", "log_scale": []}}))
    pd.DataFrame([{**names, "mean": 0.5}]).to_csv(root / "tables/comparison.csv", index=False)
    pd.DataFrame([{**names, "lr": lr, "mean": 0.5, "low": 0.4, "high": 0.6, "metric": "loss"}
                  for lr in (0.01, 0.1)]).to_csv(root / "tuning/lr_sensitivity.csv", index=False)
    pd.DataFrame([{**names, "lr": 0.1, "validation_score": 0.5}]).to_csv(root / "tuning/selection.csv", index=False)
    pd.DataFrame([{**names, "k": k, "expected_best": 0.5, "grid_best": 0.1, "p_all_diverged": 0.0, "metric": "loss"}
                  for k in (1, 2)]).to_csv(root / "tuning/tuning_budget.csv", index=False)
    pd.DataFrame([{**names, "lr": 0.1, "chosen": True, "wins": 1.0}]).to_csv(root / "tuning/choice_stability.csv",
                                                                              index=False)
    pd.DataFrame([{**names, "protocol": "reference protocol", "label": optimizer, "median_epochs": 2,
                   "median_seconds": 1.0, "reached": 2, "seeds": 2}]).to_csv(root / "tables/time_to_target.csv",
                                                                               index=False)
    pd.DataFrame([{"cost": "epochs", "optimizer": optimizer, "tau": tau, "fraction": 1.0}
                  for tau in (1.0, 2.0)]).to_csv(root / "tables/performance_profile.csv", index=False)
    return root


def test_the_page_puts_no_name_into_markup(tmp_path):
    """A plug-in's problem and optimizer named to break out of an attribute, a script and a tag give the page of
    the same elements as plain names do; the figures' ids are safe, and each figure's script finds its div."""
    from adabench.analysis.explorer import build_page

    pages = {}
    for label, names in (("plain", PLAIN), ("hostile", HOSTILE)):
        study = {"plain": "plain", "hostile": '<b>"study"</b>'}[label]
        header = {"study": study, "plan_digest": "d", "commit": "c", "date": "today"}
        pages[label] = build_page(small_study(tmp_path / label / "results/study", names), header)
    plain, hostile = parsed(pages["plain"]), parsed(pages["hostile"])
    # the same elements with the same attributes, in the same order: nothing injected, nothing cut short
    assert [(tag, sorted(attrs)) for tag, attrs in hostile] == [(tag, sorted(attrs)) for tag, attrs in plain]
    ids = [attrs["id"] for _, attrs in hostile if "id" in attrs]
    assert all(re.fullmatch(r"[A-Za-z0-9_-]+", value) for value in ids), ids
    figures = [value for value in ids if value.startswith(("curves-", "sensitivity-", "budget-"))]
    assert len(figures) == 3 and all(pages["hostile"].count(f'getElementById("{value}")') == 1 for value in figures)
    assert "curves-plain_problem" in [attrs.get("id") for _, attrs in plain]  # a plain name keeps its readable id
    assert "&lt;b&gt;&quot;study&quot;&lt;/b&gt;" in pages["hostile"]


def test_the_page_names_the_optimizers_the_profile_leaves_out(tmp_path):
    """An optimizer of the tuned protocol run on one problem of two is named under the profiles, its name escaped."""
    from adabench.analysis.explorer import build_page

    root = small_study(tmp_path / "results/study", HOSTILE)
    header = {"study": "s", "plan_digest": "d", "commit": "c", "date": "today"}
    assert "Left out" not in build_page(root, header)
    pd.DataFrame([{"problem": problem, "protocol": "tuned protocol", "optimizer": optimizer, "label": optimizer,
                   "median_epochs": 2, "median_seconds": 1.0, "reached": 2, "seeds": 2}
                  for problem, optimizer in (("p1", HOSTILE["optimizer"]), ("p1", "adam"), ("p2", "adam"))]
                 ).to_csv(root / "tables/time_to_target.csv", index=False)
    page = build_page(root, header)
    assert "<p>Left out, not run on every problem: &lt;/script&gt;&lt;svg onload=alert(2)&gt; (run on p1).</p>" in page


def test_a_run_of_two_protocols_has_two_legend_entries_that_say_which():
    """RMSprop at 0.01 is the report's rate and torch's default: one run, drawn under both protocols; the defaults
    trace says so (it read "rmsprop" twice, told apart only by its dots), as the tuned one does."""
    from adabench.analysis.explorer import curve_labels

    runs = pd.DataFrame([
        {"run_key": "a", "problem": "p", "optimizer": "rmsprop", "setting": "lr=0.01", "seed": 0, "in_study": True,
         "in_defaults": True, "in_tuned": False},
        {"run_key": "b", "problem": "p", "optimizer": "rmsprop", "setting": "lr=0.00215", "seed": 0,
         "in_study": False, "in_defaults": False, "in_tuned": True}])
    labels = curve_labels(runs).set_index("protocol").label.to_dict()
    assert labels == {"reference protocol": "rmsprop", "defaults protocol": "rmsprop (defaults, lr=0.01)",
                      "tuned protocol": "rmsprop (tuned, lr=0.00215)"}
