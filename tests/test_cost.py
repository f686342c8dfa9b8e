"""The study cost planner (adabench.study.cost, benchmarks/study_cost.py): populations counted by hand, measured seconds
from run summaries, and the plan of the quick study against the runs the quick study really trained."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
from workflow_helpers import REPO_ROOT

from adabench.study.config import load_study_config, merge, validate_config
from adabench.study.cost import cost_table, measured_epoch_seconds, planned_jobs, slot_estimate
from adabench.study.plan import read_plan
from adabench.study.design import Study, StudyProblems

SCRIPT = REPO_ROOT / "benchmarks" / "study_cost.py"
LENET_OPTIONS = {"epochs": 4, "batch_size": 128, "validation_size": 500}


def small_config() -> dict:
    """Hand-countable: linreg in one population, the LeNet in populations of 2, a tuning grid on both."""
    base = load_study_config(defaults=REPO_ROOT / "config.yaml")
    problems = {name: {"optimizers": []} for name in base["problems"]}
    problems["linreg"] = {"options": {"epochs": 10}, "optimizers": ["adagrad", "sgd"], "population_size": 64,
                          "settings": {"adagrad": {"lr": 0.1}, "sgd": [{"lr": 0.01}, {"lr": 0.1}]}}
    problems["lenet_sigmoid_fmnist"] = {"options": LENET_OPTIONS, "seeds": [0, 1, 2, 3], "optimizers": ["adam"],
                                        "population_size": 2, "settings": {"adam": {"lr": 0.01}}}
    return validate_config(merge(base, {
        "study": "cost", "seeds": [0, 1], "problems": problems, "reference": {"problems": []}, "defaults_protocol": None,
        # grid lrs 0.01 and 0.1 with seeds 0 and 1: linreg's sgd grid runs are study runs already
        "tuning": {"problems": ["linreg", "lenet_sigmoid_fmnist"], "optimizers": ["sgd", "adam"],
                   "lr_grid": {"low": 0.01, "high": 0.1, "points": 2}, "grid_seeds": [0, 1]}}))


def planned_jobs_of(config: dict) -> pd.DataFrame:
    """The jobs of ``config``'s plan, made as the plan rule makes it (what benchmarks/study_cost.py prices)."""
    study = Study(config)
    return planned_jobs(study.plan(), study)


def by_stage_and_problem(table: pd.DataFrame) -> dict:
    return {(row.stage, row.problem): (row.jobs, row.runs, row.epochs) for row in table.itertuples()}


def test_the_plan_counts_each_run_once_and_its_populations():
    jobs = planned_jobs_of(small_config())
    table = cost_table(jobs, measured_epoch_seconds([]))
    assert by_stage_and_problem(table) == {
        # linreg: adagrad and sgd at two lrs, 2 seeds each; the LeNet: 4 seeds, in 2 populations of 2
        ("study", "linreg"): (1, 6, 60), ("study", "lenet_sigmoid_fmnist"): (2, 4, 16),
        # grid: each problem searches the tuned optimizers it runs (linreg sgd, the LeNet adam). linreg's sgd at the
        # grid's 2 lrs x 2 seeds are study runs already: no grid row. The LeNet's adam at 2 lrs x 2 seeds, on a
        # held-out validation split (so none is a study run), in 2 more populations
        ("grid", "lenet_sigmoid_fmnist"): (2, 4, 16),
        # the search adds at least two rates per optimizer (1 optimizer x 2 rates x 2 grid seeds); reruns with the
        # study's seeds, in populations: linreg's 2 in one, the LeNet's 4 in 2 populations of 2
        ("search", "linreg"): (1, 4, 40), ("search", "lenet_sigmoid_fmnist"): (2, 4, 16),
        ("tuned", "linreg"): (1, 2, 20), ("tuned", "lenet_sigmoid_fmnist"): (2, 4, 16),
    }
    # linreg's 6 known runs are one job; the LeNet's 4 study and 4 grid runs are 4 populations of 2; the tuning's
    # estimate: one job more for linreg's search, one for its reruns; 2 + 2 more populations for the LeNet
    assert jobs.groupby("problem").job.nunique().to_dict() == {"linreg": 3, "lenet_sigmoid_fmnist": 8}
    assert set(jobs[jobs.problem == "lenet_sigmoid_fmnist"].population) == {2}
    assert table.s_per_member_epoch.isna().all() and table.serial_s.isna().all()  # nothing measured, nothing assumed


def write_summary(root: Path, key: str, problem: str, options: dict, wall_time_s: float, epochs: int,
                  status: str = "finished", resumed_from: int = 0, population_size: int = 2) -> None:
    directory = root / key
    directory.mkdir(parents=True)
    summary = {"spec": {"problem": problem, "optimizer": "adam", "hyperparameters": {"lr": 0.01}, "seed": 0,
                        "problem_options": {**options, "data_file": f"{root}/data.pt"}},
               "status": status, "epochs_completed": epochs, "wall_time_s": wall_time_s,
               "resumed_from": resumed_from, "population_size": population_size,
               "environment": {"device": "cuda", "device_name": "Test GPU", "threads": 2}}
    (directory / "summary.json").write_text(json.dumps(summary))


def test_measured_seconds_are_per_member_and_epoch_from_runs_with_the_same_options(tmp_path):
    options = {**LENET_OPTIONS, "validation_size": 5000}  # the grid's runs: the LeNet's held-out split
    # populations of 2: wall time / epochs / 2 members
    write_summary(tmp_path, "a", "lenet_sigmoid_fmnist", {**options, "epochs": 20}, 40.0, 20)  # 1 s
    write_summary(tmp_path, "b", "lenet_sigmoid_fmnist", options, 24.0, 4)  # 3 s
    write_summary(tmp_path, "c", "lenet_sigmoid_fmnist", options, 16.0, 4)  # 2 s
    # a population of another size is used only where no run of the job's size was measured
    write_summary(tmp_path, "g", "lenet_sigmoid_fmnist", options, 4.0, 4, population_size=8)
    # not counted: another batch size, a diverged run, a resumed run (its wall time covers only the end)
    write_summary(tmp_path, "d", "lenet_sigmoid_fmnist", {**options, "batch_size": 256}, 400.0, 4)
    write_summary(tmp_path, "e", "lenet_sigmoid_fmnist", options, 400.0, 2, status="diverged")
    write_summary(tmp_path, "f", "lenet_sigmoid_fmnist", options, 400.0, 4, resumed_from=3)

    jobs = planned_jobs_of(small_config())
    table = cost_table(jobs, measured_epoch_seconds([tmp_path])).set_index(["stage", "problem"])

    lenet = table.loc[("grid", "lenet_sigmoid_fmnist")]
    assert (lenet.s_per_member_epoch, lenet.measured_runs, lenet.measured_on) == (2.0, 3, "Test GPU")  # 1, 2, 3
    assert lenet.serial_s == 16 * 2.0  # 4 runs of 4 epochs
    # a population of 8, as measured: a rate of 0.125 s
    eight = cost_table(jobs.assign(population=8), measured_epoch_seconds([tmp_path])).set_index(["stage", "problem"])
    assert eight.loc[("grid", "lenet_sigmoid_fmnist")].s_per_member_epoch == 0.125
    linreg = table.loc[("study", "linreg")]
    assert linreg.measured_runs == 0 and math.isnan(linreg.serial_s)


def test_the_slot_estimate_spreads_the_work_over_parallel_jobs():
    jobs = pd.DataFrame({"job": ["a", "b", "c", "d"]})
    table = pd.DataFrame({"serial_s": [600.0, 200.0]})
    assert slot_estimate(table, jobs, parallel_jobs=4, startup_s=10) == 800 / 4 + 10 * 4 / 4


def test_the_quick_plan_names_every_run_the_quick_study_trained(quick):
    config = load_study_config(REPO_ROOT / "config/quick.yaml", defaults=REPO_ROOT / "config.yaml")
    plan = read_plan(quick / "results/quick/plan.csv")
    jobs = planned_jobs(plan, StudyProblems(config))
    # what the script prices before a study is planned is what the plan rule wrote (rows in another order: the
    # workflow's config lists the problems in another order)
    computed = planned_jobs_of(config)
    pd.testing.assert_frame_equal(*(table.sort_values(["job", "stage"]).reset_index(drop=True)
                                    for table in (computed, jobs)))
    trained = {str(path.parent.relative_to(quick / "results/quick/runs"))
               for path in (quick / "results/quick/runs").rglob("summary.json")}
    known = set(plan.key) - {""}
    assert known <= trained
    # the rest are the runs the tuning added: the search's later rounds and the tuned reruns (at most one per
    # planned rerun: fewer where a chosen setting is a planned run, none where nothing trains)
    added = {name: set(read_plan(quick / f"results/quick/tuning/{name}.csv").key) - known
             for name in ("search_runs", "tuned_runs")}
    assert trained - known == added["search_runs"] | added["tuned_runs"] and added["search_runs"]
    assert 0 < len(added["tuned_runs"]) <= jobs[jobs.stage == "tuned"].runs.sum()


def test_the_script_prints_the_default_study_and_rejects_a_missing_directory(tmp_path):
    done = subprocess.run([sys.executable, str(SCRIPT), "--measured", str(tmp_path), "--csv", str(tmp_path / "c.csv")],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    table = pd.read_csv(tmp_path / "c.csv")
    assert set(table.stage) == {"study", "grid", "search", "tuned"}
    assert f"study default: {planned_jobs_of(load_study_config(defaults=REPO_ROOT / 'config.yaml')).job.nunique()} training jobs, {table.runs.sum()} runs, {table.epochs.sum()} run-epochs" in done.stdout
    assert "unmeasured: lenet_relu_fmnist, lenet_sigmoid_fmnist, linreg" in done.stdout

    missing = subprocess.run([sys.executable, str(SCRIPT), "--measured", str(tmp_path / "nowhere")], cwd=REPO_ROOT,
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode != 0 and "no such directory" in missing.stderr
