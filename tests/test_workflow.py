"""The real Snakemake DAG: the default study's jobs, the quick study end to end, reruns and bad configs."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from adabench.run import RunSpec
from adabench.study import problem_settings, shards, study_runs, tuned_jobs, tuning_grid_runs
from adabench.tracking import RUN_KEY_TAG, sqlite_uri
from workflow_helpers import REPO_ROOT, quick_config, snakemake, write_config

TABLE_FILES = [f"results/tables/{name}.{ext}" for name in ("comparison", "seed_vs_pipeline", "protocols",
                                                             "paired_tests", "time_to_target") for ext in ("md", "tex", "csv")]
FIGURE_NAMES = ["learning_curves", "quadratic_trajectories", "final_metric", "effective_lr", "sparse_features",
                "gerschgorin", "lr_sensitivity", "performance_profile", "time_to_target"]


def test_default_study_dry_run_lists_every_training_job(tmp_path):
    config = yaml.safe_load((REPO_ROOT / "config.yaml").read_text())
    expected = shards(config, study_runs(config) + tuning_grid_runs(config))
    result = snakemake(tmp_path, "-n", snakefile=REPO_ROOT / "Snakefile")
    listed = set(re.findall(r"output: (results/shards/\S+)\.json", result.stdout))
    assert listed == {f"results/shards/{shard}" for shard in expected}
    # every LeNet run is its own job; the analytic problems are grouped per optimizer
    assert "results/shards/lenet_sigmoid_fmnist/adagrad/lr=0.01+eps=1e-08/seed=4" in listed  # no comma: see shard_id
    assert "results/shards/quadratic/adagrad" in listed
    stats = dict(re.findall(r"^(\w+)\s+(\d+)$", result.stdout, flags=re.M))
    assert int(stats["train"]) == len(expected)
    assert int(stats["train_tuned"]) == len(tuned_jobs(config)) == 2 * 8 * 5 + 2 * 8  # LeNets: a job per seed; others grouped
    assert int(stats["fetch_fashion_mnist"]) == 4


def test_lint_is_clean(tmp_path):
    result = snakemake(tmp_path, "--lint", snakefile=REPO_ROOT / "Snakefile", check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Congratulations" in result.stdout + result.stderr


def test_quick_study_builds_every_table_figure_and_the_report(quick):
    for path in TABLE_FILES + [f"results/figures/{name}.{ext}" for name in FIGURE_NAMES for ext in ("png", "pdf")]:
        assert (quick / path).stat().st_size > 0, path
    report = (quick / "report.html").read_text(errors="replace")
    assert "seed_vs_pipeline.csv" in report and "learning_curves.png" in report

    config = quick_config()
    runs = pd.read_csv(quick / "results/tables/runs.csv")
    assert sorted(runs.run_key) == sorted(all_run_keys(quick, config))
    assert sorted(runs[runs.in_study].run_key) == sorted(spec.key for spec in study_runs(config))
    assert set(runs.status) == {"finished"}
    comparison = pd.read_csv(quick / "results/tables/comparison.csv")
    assert set(comparison.problem) == set(config["problems"])

    versus_seed = pd.read_csv(quick / "results/tables/seed_vs_pipeline.csv")
    quadratic = versus_seed[versus_seed.problem.str.startswith("quadratic")]
    # the deterministic exercise reproduces the seed's printed trajectory end points exactly
    assert len(quadratic) == 6 and set(quadratic.in_ci) == {"equal"}


def test_quick_study_logs_one_mlflow_run_per_training_run(quick):
    config = quick_config()
    client = MlflowClient(sqlite_uri(quick / "results/mlflow/mlflow.db"))
    experiment = client.get_experiment_by_name(config["mlflow"]["experiment"])
    mlflow_runs = client.search_runs([experiment.experiment_id], max_results=1000)
    keys = [run.data.tags[RUN_KEY_TAG] for run in mlflow_runs]
    assert sorted(keys) == sorted(all_run_keys(quick, config))
    expected = study_runs(config)

    by_key = {run.data.tags[RUN_KEY_TAG]: run for run in mlflow_runs}
    lenet = next(spec for spec in expected if spec.problem == "lenet_relu_fmnist")
    run = by_key[lenet.key]
    assert run.data.params["optimizer"] == lenet.optimizer and run.data.params["seed"] == str(lenet.seed)
    assert run.data.params["hp.lr"] == str(lenet.hyperparameters["lr"])
    assert {"git_commit", "config_hash", "env.device", "env.torch"} <= set(run.data.tags)
    history = client.get_metric_history(run.info.run_id, "test_acc")
    assert sorted(m.step for m in history) == [1, 2]
    records = pd.read_csv(quick / "results/runs" / lenet.key / "metrics.csv")
    assert [m.value for m in sorted(history, key=lambda m: m.step)] == pytest.approx(records.test_acc.tolist())
    artifacts = [item.path for item in client.list_artifacts(run.info.run_id)]
    assert "metrics.csv" in artifacts

    quadratic = next(spec for spec in expected if spec.problem == "quadratic")
    steps = sorted(m.step for m in client.get_metric_history(by_key[quadratic.key].info.run_id, "loss"))
    assert steps == list(range(21))  # the start point, then each of the 20 steps, each once


def tuned_runs(workdir, config) -> list[RunSpec]:
    selection = pd.read_csv(workdir / "results/tuning/selection.csv")
    return [RunSpec(row.problem, row.optimizer, {"lr": row.lr}, seed, problem_settings(config, row.problem))
            for row in selection.itertuples() for seed in config["seeds"]]


def all_run_keys(workdir, config) -> set[str]:
    """Every run the quick study makes: its own, the tuning grid's and the tuned reruns (shared runs once)."""
    return {spec.key for spec in study_runs(config) + tuning_grid_runs(config) + tuned_runs(workdir, config)}


def test_tuned_choice_uses_validation_only_and_matches_an_independent_recomputation(quick):
    config = quick_config()
    selection = pd.read_csv(quick / "results/tuning/selection.csv")
    assert json.loads((quick / "results/tuning/selection_check.json").read_text())["identical"] is True
    # recomputed here from the grid runs' own records, by a different path: mean final val_acc per grid lr
    for row in selection.itertuples():
        means = {}
        for lr in sorted({spec.hyperparameters["lr"] for spec in tuning_grid_runs(config)}):
            finals = [pd.read_csv(quick / "results/runs" / RunSpec(row.problem, row.optimizer, {"lr": lr}, seed).key
                                  / "metrics.csv").val_acc.iloc[-1]
                      for seed in config["tuning"]["grid_seeds"]]
            means[lr] = sum(finals) / len(finals)
        assert row.lr == max(sorted(means), key=lambda lr: means[lr])
    # the tuned reruns use the chosen learning rate with the study's seeds, paired with the other optimizers
    runs = pd.read_csv(quick / "results/tables/runs.csv")
    tuned = runs[runs.in_tuned]
    assert sorted(tuned.run_key) == sorted(spec.key for spec in tuned_runs(quick, config))
    protocols = pd.read_csv(quick / "results/tables/protocols.csv")
    assert set(protocols.protocol) == {"seed protocol", "tuned protocol"}
    paired = pd.read_csv(quick / "results/tables/paired_tests.csv")
    assert set(paired.optimizer_b) == {"adagrad"} and paired.p_holm.between(0, 1).all()


def test_editing_training_code_reruns_training_and_figure_settings_do_not(quick):
    assert "Nothing to be done" in snakemake(quick, "-n", "--configfile", "config/quick.yaml").stdout

    settings = quick / "config/figure-dpi.yaml"
    config = quick_config()
    config["figures"]["dpi"] = 60
    write_config(quick / "config", config, settings.name)
    plan = snakemake(quick, "-n", "--configfile", str(settings)).stdout
    assert re.search(r"^figure\s+\d+$", plan, flags=re.M) and not re.search(r"^train\s+\d+$", plan, flags=re.M)

    source = quick / "adabench/optim.py"
    stat = source.stat()
    try:
        source.write_text(source.read_text() + "\n# an edit\n")
        plan = snakemake(quick, "-n", "--configfile", "config/quick.yaml").stdout
        trains = int(re.search(r"^train\s+(\d+)$", plan, flags=re.M).group(1))
        assert trains == len(shards(config, study_runs(config) + tuning_grid_runs(config)))
    finally:
        source.write_text(source.read_text().removesuffix("\n# an edit\n"))
        os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def small_config(**linreg_options) -> dict:
    """Only linreg, one job per run: a long run to interrupt and a run that diverges."""
    config = quick_config()
    config["problems"] = {"linreg": {
        "options": {"epochs": 12, "n_samples": 20000, "batch_size": 32, **linreg_options},
        "device": "cpu",
        "optimizers": {"adagrad": {"lr": 0.1, "eps": 1.0e-8}, "sgd": {"lr": 1.0e6}},
    }}
    config["seeds"] = [0]
    config["seed_reference"] = []
    del config["tuning"]
    config["mlflow"]["experiment"] = "small"
    return config


def test_killed_training_job_resumes_from_its_checkpoint(tmp_path):
    from adabench.run import RunSpec, train_run

    config = small_config(epochs=40)
    write_config(tmp_path, config)
    spec = RunSpec("linreg", "adagrad", {"lr": 0.1, "eps": 1.0e-8}, 0, config["problems"]["linreg"]["options"])
    run_dir = tmp_path / "results/runs" / spec.key
    arguments = ["results/tables/comparison.csv", "--cores", "1", "--configfile", "test-config.yaml"]
    job = subprocess.Popen(
        [sys.executable, "-m", "snakemake", "-s", str(REPO_ROOT / "Snakefile"), "-d", str(tmp_path),
         *arguments], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        cwd=tmp_path, start_new_session=True)
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
    assert 5 <= interrupted_at < 40 and not (run_dir / "summary.json").exists()

    snakemake(tmp_path, "--unlock", snakefile=REPO_ROOT / "Snakefile")
    snakemake(tmp_path, *arguments, "--rerun-incomplete", snakefile=REPO_ROOT / "Snakefile")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["resumed_from"] >= 5

    uninterrupted = tmp_path / "uninterrupted"
    train_run(spec, uninterrupted, device="cpu", log=lambda line: None)
    resumed = pd.read_csv(run_dir / "metrics.csv").drop(columns="time_s")
    pd.testing.assert_frame_equal(resumed, pd.read_csv(uninterrupted / "metrics.csv").drop(columns="time_s"))

    client = MlflowClient(sqlite_uri(tmp_path / "results/mlflow/mlflow.db"))
    experiment = client.get_experiment_by_name("small")
    runs = client.search_runs([experiment.experiment_id], filter_string=f"tags.`{RUN_KEY_TAG}` = '{spec.key}'")
    assert len(runs) == 1
    steps = [m.step for m in client.get_metric_history(runs[0].info.run_id, "train_mse")]
    assert sorted(steps) == list(range(1, 41))  # every epoch once, none twice

    # the diverging run of the same study is a result in the table, and did not stop the others
    comparison = pd.read_csv(tmp_path / "results/tables/comparison.csv")
    row = comparison.set_index("optimizer").loc["sgd"]
    assert row.diverged == 1 and row.seeds == 1
    assert comparison.set_index("optimizer").loc["adagrad"].diverged == 0


def epochs_recorded(run_dir) -> int:
    try:
        return len(pd.read_csv(run_dir / "metrics.csv"))
    except (FileNotFoundError, pd.errors.EmptyDataError):
        return 0


BAD_CONFIGS = {
    "unknown problem": (lambda c: c["problems"].update(lenet_sigmod_fmnist=c["problems"].pop("linreg")),
                        "problems", "lenet_sigmod_fmnist"),
    "unknown optimizer": (lambda c: c["problems"]["linreg"]["optimizers"].update(adagard={"lr": 0.1}),
                          "problems.linreg.optimizers", "adagard"),
    "typo in a key": (lambda c: c["problems"]["linreg"].update(optimiser={}), "problems.linreg", "optimiser"),
    "typo in a hyperparameter": (lambda c: c["problems"]["linreg"]["optimizers"]["adagrad"].update(learning_rate=0.1),
                                 "problems.linreg.optimizers.adagrad.learning_rate", "unknown hyperparameter"),
    "zero lr": (lambda c: c["problems"]["linreg"]["optimizers"]["adagrad"].update(lr=0),
                "problems.linreg.optimizers.adagrad.lr", "minimum"),
    "negative lr": (lambda c: c["problems"]["linreg"]["optimizers"]["adagrad"].update(lr=-0.1),
                    "problems.linreg.optimizers.adagrad.lr", "minimum"),
    "nan lr": (lambda c: c["problems"]["linreg"]["optimizers"]["adagrad"].update(lr=float("nan")),
               "problems.linreg.optimizers.adagrad.lr", "not a finite number"),
    "infinite lr": (lambda c: c["problems"]["linreg"]["optimizers"]["adagrad"].update(lr=float("inf")),
                    "problems.linreg.optimizers.adagrad.lr", "not a finite number"),
    "empty seed list": (lambda c: c.update(seeds=[]), "seeds", "non-empty"),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_config_fails_before_any_job_naming_the_field(tmp_path, case):
    mutate, field, words = BAD_CONFIGS[case]
    config = small_config()
    mutate(config)
    write_config(tmp_path, config)
    result = snakemake(tmp_path, "--cores", "1", "--configfile", "test-config.yaml", snakefile=REPO_ROOT / "Snakefile",
                       check=False)
    assert result.returncode != 0
    assert f"config error at {field}:" in result.stderr and words in result.stderr, result.stderr[-3000:]
    assert not (tmp_path / "results").exists()  # nothing ran
