"""The study cost planner (adabench.cost, benchmarks/study_cost.py): counts by hand, measured seconds from
run summaries, and the plan of the quick study against the runs the quick study really trained."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd

from adabench.config import validate_config
from adabench.cost import cost_table, measured_epoch_seconds, planned_runs
from workflow_helpers import REPO_ROOT, quick_config, write_config

SCRIPT = REPO_ROOT / "benchmarks" / "study_cost.py"
LENET_OPTIONS = {"epochs": 4, "batch_size": 128, "validation_size": 500}


def small_config() -> dict:
    """Hand-countable: linreg grouped in one job per optimizer, the LeNet one job per run, a tuning grid on both."""
    return validate_config({
        "seeds": [0, 1],
        "mlflow": {"experiment": "cost"},
        "data": quick_config()["data"],
        "problems": {
            "linreg": {"options": {"epochs": 10}, "group_runs": True,
                       "optimizers": {"adagrad": {"lr": 0.1}, "sgd": [{"lr": 0.01}, {"lr": 0.1}]}},
            "lenet_sigmoid_fmnist": {"options": LENET_OPTIONS, "seeds": [0, 1, 2],
                                     "optimizers": {"adam": {"lr": 0.01}}},
        },
        # grid lrs 0.01 and 0.1 with seeds 0 and 1: linreg's sgd grid runs are study runs already
        "tuning": {"problems": ["linreg", "lenet_sigmoid_fmnist"], "optimizers": ["sgd", "adam"],
                   "lr_grid": {"low": 0.01, "high": 0.1, "points": 2}, "grid_seeds": [0, 1]},
    })


def by_stage_and_problem(table: pd.DataFrame) -> dict:
    return {(row.stage, row.problem): (row.jobs, row.runs, row.epochs) for row in table.itertuples()}


def test_the_plan_counts_each_run_once_and_its_jobs():
    table = cost_table(planned_runs(small_config()), measured_epoch_seconds([]))

    assert by_stage_and_problem(table) == {
        # linreg: adagrad and sgd at two lrs, 2 seeds each, in 2 jobs; lenet: 3 seeds, a job each
        ("study", "linreg"): (2, 6, 60), ("study", "lenet_sigmoid_fmnist"): (3, 3, 12),
        # grid: linreg adam at 2 lrs x 2 seeds (sgd's are study runs) in one job; lenet sgd and adam at 2 lrs
        # x 2 seeds, less adam lr=0.01 seeds 0 and 1 (study runs)
        ("grid", "linreg"): (1, 4, 40), ("grid", "lenet_sigmoid_fmnist"): (6, 6, 24),
        # reruns with the study's seeds: linreg one job per optimizer, the LeNet one per seed
        ("tuned", "linreg"): (2, 4, 40), ("tuned", "lenet_sigmoid_fmnist"): (6, 6, 24),
    }
    assert table.s_per_epoch.isna().all() and table.serial_s.isna().all()  # nothing measured, nothing assumed


def write_summary(root: Path, key: str, problem: str, options: dict, wall_time_s: float, epochs: int,
                  status: str = "finished", resumed_from: int = 0) -> None:
    directory = root / key
    directory.mkdir(parents=True)
    summary = {"spec": {"problem": problem, "optimizer": "adam", "hyperparameters": {"lr": 0.01}, "seed": 0,
                        "problem_options": {**options, "data_file": f"{root}/data.pt"}},
               "status": status, "epochs_completed": epochs, "wall_time_s": wall_time_s,
               "resumed_from": resumed_from, "device": "cuda", "device_name": "Test GPU", "threads": 2}
    (directory / "summary.json").write_text(json.dumps(summary))


def test_measured_seconds_come_from_finished_runs_with_the_same_per_epoch_options(tmp_path):
    options = dict(LENET_OPTIONS)
    write_summary(tmp_path, "a", "lenet_sigmoid_fmnist", {**options, "epochs": 20}, 20.0, 20)  # 1 s/epoch
    write_summary(tmp_path, "b", "lenet_sigmoid_fmnist", options, 12.0, 4)  # 3 s/epoch
    write_summary(tmp_path, "c", "lenet_sigmoid_fmnist", options, 8.0, 4)  # 2 s/epoch
    # not counted: another batch size, a diverged run, a resumed run (its wall time covers only the end)
    write_summary(tmp_path, "d", "lenet_sigmoid_fmnist", {**options, "batch_size": 256}, 400.0, 4)
    write_summary(tmp_path, "e", "lenet_sigmoid_fmnist", options, 400.0, 2, status="diverged")
    write_summary(tmp_path, "f", "lenet_sigmoid_fmnist", options, 400.0, 4, resumed_from=3)

    table = cost_table(planned_runs(small_config()), measured_epoch_seconds([tmp_path])).set_index(["stage", "problem"])

    lenet = table.loc[("grid", "lenet_sigmoid_fmnist")]
    assert (lenet.s_per_epoch, lenet.measured_runs, lenet.measured_on) == (2.0, 3, "Test GPU")  # median of 1, 2, 3
    assert lenet.serial_s == 24 * 2.0
    linreg = table.loc[("study", "linreg")]
    assert linreg.measured_runs == 0 and math.isnan(linreg.serial_s)


def test_the_quick_plan_names_every_run_the_quick_study_trained(quick):
    plan = planned_runs(validate_config(quick_config()))
    trained = {str(path.parent.relative_to(quick / "results/runs"))
               for path in (quick / "results/runs").rglob("summary.json")}

    planned_keys = set(plan.run_key.dropna())
    assert planned_keys <= trained
    # the rest are tuned reruns: at most one per planned rerun (fewer where a chosen setting is a study run)
    assert 0 < len(trained - planned_keys) <= (plan.stage == "tuned").sum()


def test_the_script_prints_the_default_study_and_rejects_a_missing_directory(tmp_path):
    done = subprocess.run([sys.executable, str(SCRIPT), "--measured", str(tmp_path), "--csv", str(tmp_path / "c.csv")],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    table = pd.read_csv(tmp_path / "c.csv")
    assert set(table.stage) == {"study", "grid", "tuned"}
    assert f"config.yaml: {table.runs.sum()} runs, {table.epochs.sum()} epochs" in done.stdout
    assert "unmeasured: lenet_relu_fmnist, lenet_sigmoid_fmnist" in done.stdout

    missing = subprocess.run([sys.executable, str(SCRIPT), "--measured", str(tmp_path / "nowhere")], cwd=REPO_ROOT,
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode != 0 and "no such directory" in missing.stderr


def test_the_script_rejects_a_bad_config_naming_the_field(tmp_path):
    config = quick_config()
    config["tuning"]["lr_grid"]["low"] = -1.0
    path = write_config(tmp_path, config)
    done = subprocess.run([sys.executable, str(SCRIPT), "--config", str(path), "--measured", str(tmp_path)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "config error at tuning.lr_grid.low" in done.stderr
