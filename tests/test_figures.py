"""Figures are drawn again on a fresh clone (their inputs' file times change): the same runs must give the same
bytes, or a rebuild of the published study would change tracked files."""
import json

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
