"""The real Snakemake DAG: the default study's jobs, the quick study end to end, studies kept apart, reruns."""
from __future__ import annotations

import json
import os
import re
import subprocess
import time

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from workflow_helpers import REPO_ROOT, quick_config, snakemake, snakemake_command, write_config

from adabench.study.config import load_study_config
from adabench.study.plan import read_plan
from adabench.core.records import TIME_COLUMNS, read_summary
from adabench.core.spec import RunSpec
from adabench.study.state import chosen_rates, tuned_plan
from adabench.study.design import Study
from adabench.workflow.tracking import RUN_KEY_TAG
from adabench.study.layout import sqlite_uri

TABLES = [f"{name}.{ext}" for name in ("comparison", "reproduction", "optimizer_overhead", "compute", "protocols",
                                       "paired_tests", "time_to_target", "gap_share", "implementation_checks")
          for ext in ("md", "tex", "csv")]
FIGURES = ["learning_curves", "trajectories", "final_metric", "effective_lr", "feature_errors", "gerschgorin",
           "lr_sensitivity", "performance_profile", "time_to_target", "tuning_budget"]


def test_default_study_dry_run_lists_population_jobs(tmp_path):
    study = Study(load_study_config(defaults=REPO_ROOT / "config.yaml"))
    result = snakemake(tmp_path, "-n", snakefile=REPO_ROOT / "Snakefile")
    listed = set(re.findall(r"output: results/default/jobs/(\S+)\.json", result.stdout))
    assert listed == set(study.jobs)
    stats = dict(re.findall(r"^(\w+)\s+(\d+)$", result.stdout, flags=re.M))
    assert int(stats["train"]) == len(study.jobs)
    # per LeNet, on a CPU: 110 study runs (11 optimizers, 3 of them packaged, x 10 seeds), 70 more at the optimizers'
    # defaults (4 of the 11 defaults are the study's settings: those runs are shared) and the search's first round,
    # 210 grid runs (10 optimizers x 7 rates x 3 grid seeds, on their own held-out split), in populations of at most 8
    # (runs finish every ~20 minutes): 23 + 27 jobs, not 390. The search's later rounds and the tuned reruns come
    # from its checkpoints, after the grid has trained.
    lenet_jobs = [job for job in study.jobs.values() if job.problem.startswith("lenet")]
    assert len(lenet_jobs) == 2 * (23 + 27)
    assert sum(len(job.runs) for job in lenet_jobs) == 2 * 390
    assert all(len(job.runs) <= 8 for job in lenet_jobs)
    assert int(stats["search_round"]) == len(study.tuning["problems"])
    assert int(stats["fetch_fashion_mnist"]) == 4


def test_lint_is_clean(tmp_path):
    result = snakemake(tmp_path, "--lint", snakefile=REPO_ROOT / "Snakefile", check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Congratulations" in result.stdout + result.stderr


def test_quick_study_builds_every_table_figure_and_the_report(quick):
    root = quick / "results/quick"
    for path in [f"tables/{name}" for name in TABLES] + [f"figures/{name}.{ext}" for name in FIGURES
                                                         for ext in ("png", "pdf")]:
        assert (root / path).stat().st_size > 0, path
    report = (quick / "report.html").read_text(errors="replace")
    assert "reproduction.csv" in report and "learning_curves.png" in report

    config = quick_config()
    plan = read_plan(root / "plan.csv")
    runs = pd.read_csv(root / "tables/runs.csv")
    assert set(plan[plan.key != ""].key) <= set(runs.run_key)
    assert set(runs[runs.in_study].run_key) == {spec.key for spec in Study(config).runs("study")}
    assert set(runs.status) == {"finished"}
    assert set(pd.read_csv(root / "tables/comparison.csv").problem) == set(config["problems"])

    reproduction = pd.read_csv(root / "tables/reproduction.csv")
    quadratic = reproduction[reproduction.problem.str.startswith("quadratic")]
    # the deterministic exercise reproduces the report's printed trajectory end points exactly
    assert len(quadratic) == 6 and set(quadratic.in_ci) == {"equal"}


def test_the_plan_has_a_row_per_run_and_tuned_rows_wait_for_the_selection(quick):
    plan = read_plan(quick / "results/quick/plan.csv")
    study = Study(quick_config())
    known = plan[plan.key != ""]
    assert sorted(known.key) == sorted(spec.key for spec in study.runs())
    assert set(plan.job) == set(study.jobs)
    assert not plan.roles.str.contains("tuned").any()  # the tuned reruns are known once the search has ended
    grid = known[known.roles.str.contains("grid")]
    assert len(grid) == 2 * 2 * 3 * 2 and set(grid.unit) == {"epoch"}
    # the search's later rounds and the tuned reruns: tables of their own, in the plan's columns
    search = read_plan(quick / "results/quick/tuning/search_runs.csv")
    tuned = read_plan(quick / "results/quick/tuning/tuned_runs.csv")
    assert set(search.roles) == {"grid"} and not set(search.key) & set(known.key)
    assert set(tuned.roles) == {"tuned"} and set(tuned.problem) == {"sparse_logreg"}  # the LeNet does not train
    assert set(known[known.problem == "quadratic"].unit) == {"step"}
    # the command line (adabench status, records, cost) reads a study file as Snakemake merges it, key order
    # included: its plan is the one Snakemake wrote, byte for byte (config/quick.yaml orders its problems otherwise
    # than config.yaml, and Snakemake puts a --configfile's keys first)
    assert list(study.config["problems"])[:2] == ["linreg", "sparse_logreg"]
    assert (quick / "results/quick/plan.csv").read_bytes() == study.plan().to_csv(index=False).encode()


def tuned_run_keys(workdir, study: Study) -> set[str]:
    selection = pd.read_csv(workdir / "results/quick/tuning/selection.csv")
    return set(tuned_plan(study, chosen_rates(selection)).key)


def all_run_keys(workdir, study: Study) -> set[str]:
    """Every run the quick study makes: its own, the search's and the tuned reruns (shared runs once)."""
    search = set(read_plan(workdir / "results/quick/tuning/search_runs.csv").key)
    return {spec.key for spec in study.runs()} | search | tuned_run_keys(workdir, study)


def test_quick_study_logs_one_mlflow_run_per_training_run(quick):
    study = Study(quick_config())
    client = MlflowClient(sqlite_uri(quick / "results/quick/mlflow/mlflow.db"))
    experiment = client.get_experiment_by_name(study.experiment)
    mlflow_runs = client.search_runs([experiment.experiment_id], max_results=1000)
    keys = [run.data.tags[RUN_KEY_TAG] for run in mlflow_runs]
    assert sorted(keys) == sorted(all_run_keys(quick, study))

    by_key = {run.data.tags[RUN_KEY_TAG]: run for run in mlflow_runs}
    lenet = next(spec for spec in study.runs("study") if spec.problem == "lenet_relu_fmnist")
    run = by_key[lenet.key]
    assert run.data.params["optimizer"] == lenet.optimizer and run.data.params["seed"] == str(lenet.seed)
    assert run.data.params["hp.lr"] == str(lenet.hyperparameters["lr"])
    assert run.data.params["problem.train_subset"] == "2000" and run.data.params["options_id"] == lenet.options_id
    assert {"git_commit", "env.device", "env.torch", "adabench.records_sha256"} <= set(run.data.tags)
    history = client.get_metric_history(run.info.run_id, "test_acc")
    assert sorted(m.step for m in history) == [1, 2]
    records = pd.read_csv(quick / study.run_dir(lenet) / "metrics.csv")
    assert [m.value for m in sorted(history, key=lambda m: m.step)] == pytest.approx(records.test_acc.tolist())
    assert "metrics.csv" in [item.path for item in client.list_artifacts(run.info.run_id)]

    quadratic = next(spec for spec in study.runs("study") if spec.problem == "quadratic")
    steps = sorted(m.step for m in client.get_metric_history(by_key[quadratic.key].info.run_id, "loss"))
    assert steps == list(range(21))  # the start point, then each of the 20 steps, each once


def test_tuned_choice_uses_validation_only_and_matches_an_independent_recomputation(quick):
    study = Study(quick_config())
    selection = pd.read_csv(quick / "results/quick/tuning/selection.csv")
    assert json.loads((quick / "results/quick/tuning/selection_check.json").read_text())["identical"] is True
    # recomputed here from the grid runs' own records, by a different path: mean final val_acc per rate tried
    grid = study.runs("grid") + [study.search_spec(row.problem, row.optimizer, float(row.lr), int(row.seed))
                                 for row in read_plan(quick / "results/quick/tuning/search_runs.csv").itertuples()]
    assert not selection[selection.problem == "lenet_sigmoid_fmnist"].trains.any()  # at chance at every rate
    for row in selection[selection.trains].itertuples():
        means = {}
        for lr in sorted({spec.hyperparameters["lr"] for spec in grid}):
            finals = [pd.read_csv(quick / study.run_dir(spec) / "metrics.csv").val_acc.iloc[-1] for spec in grid
                      if (spec.problem, spec.optimizer, spec.hyperparameters["lr"]) == (row.problem, row.optimizer, lr)]
            if finals:  # a rate this optimizer's search tried
                means[lr] = sum(finals) / len(finals)
        assert row.lr == max(sorted(means), key=lambda lr: means[lr])
    # the tuned reruns use the chosen learning rate with the study's seeds, paired with the other optimizers
    runs = pd.read_csv(quick / "results/quick/tables/runs.csv")
    assert sorted(runs[runs.in_tuned].run_key) == sorted(tuned_run_keys(quick, study))
    protocols = pd.read_csv(quick / "results/quick/tables/protocols.csv")
    assert set(protocols.protocol) == {"reference protocol", "defaults protocol", "tuned protocol"}
    paired = pd.read_csv(quick / "results/quick/tables/paired_tests.csv")
    assert set(paired.optimizer_b) == {"adagrad"} and paired.p_holm.between(0, 1).all()


def test_the_quick_study_writes_only_ignored_files(quick):
    """`make quick` leaves `git status` clean: everything the study writes is ignored by the checkout's .gitignore."""
    written = [str(path.relative_to(quick)) for path in (quick / "results").rglob("*") if path.is_file()]
    written += [str(path.relative_to(quick)) for path in (quick / ".snakemake").rglob("*") if path.is_file()][:50]
    assert any(path.startswith("results/quick/") for path in written)
    checked = subprocess.run(["git", "check-ignore", "--no-index", "--stdin"], cwd=REPO_ROOT, input="\n".join(written),
                             capture_output=True, text=True)
    assert sorted(checked.stdout.split()) == sorted(written), set(written) - set(checked.stdout.split())


def test_source_edits_start_no_training_and_figure_settings_only_redraw(quick):
    """No job depends on source files: editing the package or the training script (a docstring, a comment)
    starts none. To retrain runs after a change of what they compute, delete their directories (docs/studies.md,
    "Running part of a study")."""
    assert "Nothing to be done" in snakemake(quick, "-n", "--configfile", "config/quick.yaml").stdout
    source = REPO_ROOT / "adabench/core/optim.py"
    stat = source.stat()
    script = quick / "scripts/train.py"
    original = script.read_text()
    try:
        os.utime(source, ns=(stat.st_atime_ns, time.time_ns()))
        script.write_text(original.replace('"""', '"""An edited docstring. ', 1))
        assert "Nothing to be done" in snakemake(quick, "-n", "--configfile", "config/quick.yaml").stdout
    finally:
        os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        script.write_text(original)

    settings = write_config(quick / "config", {"figures": {"dpi": 60}}, "figure-dpi.yaml")
    plan = snakemake(quick, "-n", "--configfile", "config/quick.yaml", str(settings)).stdout
    assert re.search(r"^figure\s+\d+$", plan, flags=re.M) and not re.search(r"^train\s+\d+$", plan, flags=re.M)


def test_studies_keep_their_own_runs_and_tables(quick, tmp_path):
    """A study with other LeNet options writes under its own root: its runs have other keys, the quick study's
    runs, tables and MLflow experiment stay as they were."""
    before = {path: path.stat().st_mtime_ns for path in (quick / "results/quick").rglob("*") if path.is_file()}
    # one run: the LeNet names its own optimizers (config.yaml's LeNets may name theirs, which a top-level list
    # does not override)
    lenet = {"optimizers": ["adagrad"], "seeds": [0],
             "options": {"epochs": 1, "validation_size": 500, "train_subset": 2000, "test_subset": 1000}}
    other = write_config(quick / "config", {"study": "other", "device": "cpu", "threads": 1, "seeds": [0],
                                            "optimizers": ["adagrad"], "tuning": None, "defaults_protocol": None,
                                            "reference": {"problems": []},
                                            "problems": {name: {"optimizers": []} for name in quick_config()["problems"]
                                                         if name != "lenet_sigmoid_fmnist"}
                                            | {"lenet_sigmoid_fmnist": lenet}}, "other.yaml")
    # its tables (the figures, page and sync are made by the same rules from them, at paths of the same study root)
    snakemake(quick, "results/other/tables/comparison.csv", "--cores", "2", "--configfile", str(other))
    assert before == {path: path.stat().st_mtime_ns for path in (quick / "results/quick").rglob("*") if path.is_file()}
    quick_keys = {spec.key for spec in Study(quick_config()).runs()}
    other_runs = pd.read_csv(quick / "results/other/tables/runs.csv")
    assert len(other_runs) == 1 and not set(other_runs.run_key) & quick_keys
    client = MlflowClient(sqlite_uri(quick / "results/other/mlflow/mlflow.db"))
    assert client.get_experiment_by_name("adabench-other") is not None


def small_config(**linreg_options) -> dict:
    """Only linreg: a long run to interrupt and a run that diverges."""
    return {"study": "small", "device": "cpu", "threads": 1, "seeds": [0], "tuning": None,
            "reference": {"problems": []},
            "problems": {name: {"optimizers": []} for name in quick_config()["problems"]}
            | {"linreg": {"options": {"epochs": 12, "n_samples": 20000, "batch_size": 32, **linreg_options},
                          "optimizers": ["adagrad", "sgd"],
                          "settings": {"adagrad": {"lr": 0.1, "eps": 1.0e-8}, "sgd": {"lr": 1.0e6}}}}}


def test_killed_training_job_resumes_from_its_checkpoint(tmp_path):
    from adabench.core.trainer import train_run

    config = small_config(epochs=20)
    write_config(tmp_path, config)
    spec = RunSpec("linreg", "adagrad", {"lr": 0.1, "eps": 1.0e-8}, 0, config["problems"]["linreg"]["options"])
    run_dir = tmp_path / "results/small/runs" / spec.key
    arguments = ["results/small/tables/comparison.csv", "--cores", "1", "--configfile", "test-config.yaml"]
    job = subprocess.Popen(snakemake_command(tmp_path, *arguments, snakefile=REPO_ROOT / "Snakefile"),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while not ((run_dir / "checkpoint.pt").exists() and epochs_recorded(run_dir) >= 5):
            assert job.poll() is None, "the workflow ended before it could be interrupted"
            assert time.monotonic() < deadline, "the run never reached epoch 5"
            time.sleep(0.2)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, 9)  # the whole job, as a node failure would
        job.wait()
    interrupted_at = epochs_recorded(run_dir)
    assert 5 <= interrupted_at < 20 and not (run_dir / "summary.json").exists()

    snakemake(tmp_path, "--unlock", snakefile=REPO_ROOT / "Snakefile")
    snakemake(tmp_path, *arguments, snakefile=REPO_ROOT / "Snakefile")
    summary = read_summary(run_dir)
    assert summary["status"] == "finished" and summary["resumed_from"] >= 5

    uninterrupted = tmp_path / "uninterrupted"
    train_run(spec, uninterrupted, device="cpu", log=lambda line: None)
    resumed = pd.read_csv(run_dir / "metrics.csv").drop(columns=TIME_COLUMNS)
    pd.testing.assert_frame_equal(resumed, pd.read_csv(uninterrupted / "metrics.csv").drop(columns=TIME_COLUMNS))

    # the diverging run of the same study is a result in the table, and did not stop the others
    comparison = pd.read_csv(tmp_path / "results/small/tables/comparison.csv")
    row = comparison.set_index("optimizer").loc["sgd"]
    assert row.diverged == 1 and row.seeds == 1
    assert comparison.set_index("optimizer").loc["adagrad"].diverged == 0


def epochs_recorded(run_dir) -> int:
    try:
        return len(pd.read_csv(run_dir / "metrics.csv"))
    except (FileNotFoundError, pd.errors.EmptyDataError):
        return 0


def test_a_bad_config_stops_the_workflow_before_any_job_naming_the_field(tmp_path):
    config = small_config()
    config["problems"]["linreg"]["settings"]["adagrad"]["learning_rate"] = 0.1
    write_config(tmp_path, config)
    result = snakemake(tmp_path, "--cores", "1", "--configfile", "test-config.yaml", snakefile=REPO_ROOT / "Snakefile",
                       check=False)
    assert result.returncode != 0
    assert "config error at problems.linreg.settings.adagrad.learning_rate: unknown hyperparameter" in result.stderr
    assert not (tmp_path / "results").exists()  # nothing ran


TOY_PROBLEM = '''
"""A problem from outside the package: estimate the mean of noisy samples with one parameter."""
import torch
from torch import nn

from adabench.core.problems.base import PROBLEMS, Problem


class Mean(nn.Module):
    def __init__(self):
        super().__init__()
        self.m = nn.Parameter(torch.zeros(1))

    def forward(self):
        return self.m


@PROBLEMS.register("toy_mean")
class ToyMean(Problem):
    headline = ("error", "min")
    selection = ("error", "min")
    log_scale = frozenset({"error"})

    def __init__(self, device, epochs: int = 4, n: int = 64, batch_size: int = 16, data_seed: int = 0):
        super().__init__(device, epochs)
        generator = torch.Generator().manual_seed(data_seed)
        self.samples = (3.0 + torch.randn(n, generator=generator)).to(device)
        self.train_size, self.batch_size = n, batch_size

    def build_model(self):
        return Mean().to(self.device)

    def loss(self, model, indices):
        return (self.samples[indices] - model()).pow(2).mean()

    def evaluate_member(self, model):
        return {"error": (model() - 3.0).abs().squeeze()}
'''


def test_a_new_problem_is_one_class_and_one_config_entry(tmp_path):
    """A problem registered by a plug-in module gets its runs, tables, curves and figures with no other edit."""
    (tmp_path / "toy_problem.py").write_text(TOY_PROBLEM)
    problems = {name: {"optimizers": []} for name in quick_config()["problems"]}
    config = {"study": "toy", "device": "cpu", "threads": 1, "seeds": [0, 1], "plugins": ["toy_problem"],
              "reference": {"problems": []}, "tuning": None,
              "problems": {**problems, "toy_mean": {"optimizers": ["adagrad", "sgd"],
                                                    "settings": {"adagrad": {"lr": 0.5}, "sgd": {"lr": 0.1}}}}}
    write_config(tmp_path, config)
    snakemake(tmp_path, "--cores", "2", "--configfile", "test-config.yaml", snakefile=REPO_ROOT / "Snakefile",
              env={**os.environ, "PYTHONPATH": str(tmp_path)})
    root = tmp_path / "results/toy"
    comparison = pd.read_csv(root / "tables/comparison.csv")
    assert set(comparison.problem) == {"toy_mean"} and set(comparison.metric) == {"error"}
    assert set(comparison.optimizer) == {"adagrad", "sgd"} and (comparison.seeds == 2).all()
    curves = pd.read_csv(root / "tables/curves.csv.gz")
    assert sorted(set(curves.epoch)) == [1, 2, 3, 4] and curves.error.notna().all()
    for figure in ("learning_curves", "final_metric", "effective_lr"):
        assert (root / "figures" / f"{figure}.png").stat().st_size > 0


def test_the_quick_studys_populations_agree_with_runs_trained_alone(quick, tmp_path):
    """The tables of the quick study come from populations; its LeNet and sparse_logreg runs trained one at a time
    (populations of one) end at the same final metrics: on a CPU, bit for bit."""
    from adabench.core.trainer import train_run

    study = Study(quick_config())
    runs = pd.read_csv(quick / "results/quick/tables/runs.csv").set_index("run_key")
    chosen = [spec for spec in study.runs("study") if spec.problem in ("lenet_relu_fmnist", "sparse_logreg")]
    assert len(chosen) == 16 and (runs.loc[[spec.key for spec in chosen], "population_size"] > 1).all()
    for spec in chosen:
        options = dict(spec.problem_options)
        if "data_file" in options:  # the quick study's own copy of the data (a path is not part of a run's identity)
            options["data_file"] = str(quick / options["data_file"])
        spec = RunSpec(spec.problem, spec.optimizer, spec.hyperparameters, spec.seed, options)
        alone = train_run(spec, tmp_path / spec.key, device="cpu", log=lambda line: None)["final"]
        for metric in ("train_loss", "test_loss", "test_acc"):
            assert alone[metric] == runs.loc[spec.key, f"final_{metric}"], (spec.key, metric)
