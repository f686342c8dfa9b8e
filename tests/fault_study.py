"""The fault study: a small study (quadratics, linreg, sparse logistic regression, a tiny LeNet, a tuning grid) that
the fault and kill tests run once without faults (the ``uninterrupted`` fixture of conftest.py), then break in
copies of it; and what they compare a repaired copy with.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import pandas as pd
from mlflow.tracking import MlflowClient
from workflow_helpers import comparable, copy_workflow, snakemake, write_config

from adabench.study.plan import read_plan
from adabench.workflow.tracking import RUN_KEY_TAG
from adabench.study.layout import sqlite_uri

STUDY = "faults"
ROOT = Path("results") / STUDY
LENET = {"epochs": 2, "validation_size": 300, "train_subset": 600, "test_subset": 300}
CONFIG = {
    "study": STUDY, "device": "cpu", "threads": 1, "seeds": [0, 1], "optimizers": ["adagrad", "adam"],
    "reference": {"problems": ["quadratic", "linreg"]},
    "problems": {
        "quadratic_rotated": {"optimizers": []},
        "linreg": {"options": {"epochs": 6, "n_samples": 256}},
        "sparse_logreg": {"options": {"epochs": 2, "n_features": 500, "n_train": 4000, "n_validation": 500,
                                      "n_test": 500}},
        "lenet_sigmoid_fmnist": {"options": LENET, "optimizers": ["adam"]},
        "lenet_relu_fmnist": {"optimizers": []},
    },
    "defaults_protocol": None,
    "tuning": {"problems": ["sparse_logreg"], "optimizers": ["adagrad", "adam"],
               "lr_grid": {"low": 1.0e-2, "high": 1.0e-1, "points": 2}, "grid_seeds": [100, 101],
               "lr_limits": {"low": 1.0e-2, "high": 1.0}, "targets": {"sparse_logreg": 0.6}},
}
TARGETS = [str(ROOT / "tables" / f"{name}.csv") for name in ("comparison", "reproduction", "protocols",
                                                              "paired_tests", "time_to_target")]
TARGETS += [str(ROOT / "tuning/selection_check.json"), str(ROOT / "mlflow/synced.json")]
COMMAND = [*TARGETS, "--cores", "2", "--configfile", "faults.yaml"]


def run_study(workdir: Path, check: bool = True, **popen) -> subprocess.CompletedProcess:
    return snakemake(workdir, *COMMAND, check=check, **popen)


def build_fault_study(workdir: Path) -> None:
    copy_workflow(workdir)
    write_config(workdir, CONFIG, "faults.yaml")
    run_study(workdir)


def tables(workdir: Path) -> dict[str, pd.DataFrame]:
    found = {Path(target).stem: pd.read_csv(workdir / target) for target in TARGETS if target.endswith(".csv")}
    found["runs"] = pd.read_csv(workdir / ROOT / "tables/runs.csv")
    return {name: comparable(table) for name, table in found.items()}


def assert_same_tables(workdir: Path, uninterrupted: Path) -> dict[str, pd.DataFrame]:
    """The tables equal the uninterrupted run's (what says how runs were trained aside); returns them."""
    mine, reference = tables(workdir), tables(uninterrupted)
    for name in reference:
        pd.testing.assert_frame_equal(mine[name], reference[name], check_exact=False, rtol=1e-6, atol=1e-12,
                                      obj=name)
    return mine


def assert_recovered(workdir: Path, uninterrupted: Path) -> None:
    """The tables equal the uninterrupted run's; MLflow holds one run per run key, each step once."""
    runs = assert_same_tables(workdir, uninterrupted)["runs"]
    client = MlflowClient(sqlite_uri(workdir / ROOT / "mlflow/mlflow.db"))
    experiment = client.get_experiment_by_name(f"adabench-{STUDY}")
    by_key: dict[str, list] = {}
    for run in client.search_runs([experiment.experiment_id], max_results=5000):
        by_key.setdefault(run.data.tags[RUN_KEY_TAG], []).append(run)
    assert sorted(by_key) == sorted(runs.run_key)
    assert {key: len(found) for key, found in by_key.items() if len(found) > 1} == {}
    for key, (run,) in by_key.items():
        steps = pd.read_csv(workdir / ROOT / "runs" / key / "metrics.csv").iloc[:, 0].tolist()
        logged = [m.step for m in client.get_metric_history(run.info.run_id, "time_s")]
        assert sorted(logged) == steps, key


def known_runs(workdir: Path) -> list[Path]:
    plan = read_plan(workdir / ROOT / "plan.csv")
    return [workdir / directory for directory in plan[plan.key != ""].sort_values("key").run_dir]


def lenet_run(workdir: Path) -> Path:
    plan = read_plan(workdir / ROOT / "plan.csv")
    return workdir / plan[plan.problem == "lenet_sigmoid_fmnist"].run_dir.iloc[0]
