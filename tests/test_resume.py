"""Long studies resume on any machine from their records alone, show where they stand, stop within an epoch, and
take a new optimizer without training a complete run again."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from workflow_helpers import comparable, copy_workflow, quick_config, snakemake, snakemake_command, write_config

from adabench.study.config import load_study_config
from adabench.study.state import read_state
from adabench.study.cost import per_epoch_options
from adabench.study.progress import remaining_seconds, report, running_jobs, write_progress
from adabench.study.design import Study

# what a published study keeps in git (.gitignore): its plan, the declarations of its problems, tables, tuning tables,
# figures and the records of complete runs
PUBLISHED = ["plan.csv", "problems.json", "tables", "tuning", "figures"]
RECORD_FILES = ("summary.json", "metrics.csv")


def clone_with_records(source: Path, destination: Path, study: str, keep=lambda run_dir: True) -> Path:
    """A fresh copy of the workflow holding what git holds of ``study``: its published files and the records of the
    complete runs ``keep`` accepts (never checkpoints, MLflow stores, logs or Snakemake's metadata)."""
    copy_workflow(destination)
    root = source / "results" / study
    (destination / "results" / study).mkdir(parents=True)
    for name in PUBLISHED:
        if (root / name).is_dir():
            shutil.copytree(root / name, destination / "results" / study / name)
        elif (root / name).exists():
            shutil.copy2(root / name, destination / "results" / study / name)
    for summary in (root / "runs").rglob("summary.json"):
        run_dir = summary.parent
        if keep(run_dir):
            target = destination / "results" / study / run_dir.relative_to(root)
            target.mkdir(parents=True, exist_ok=True)
            for name in RECORD_FILES:
                shutil.copy2(run_dir / name, target / name)
    return destination


def planned_jobs(dry_run: str) -> dict[str, int]:
    """Rule -> job count, from the job stats table of a dry run."""
    return {rule: int(count) for rule, count in re.findall(r"^(\w+)\s+(\d+)$", dry_run, flags=re.M)
            if rule != "total"}


def training_jobs(dry_run: str) -> set[str]:
    return set(re.findall(r"wildcards: job=([\w.-]+)", dry_run))


COMPARED = ("comparison", "reproduction", "protocols", "paired_tests", "runs")
COMPARED_TABLES = [f"results/quick/tables/{name}.csv" for name in COMPARED]


def assert_same_tables(a: Path, b: Path) -> None:
    for name in COMPARED:
        pd.testing.assert_frame_equal(comparable(pd.read_csv(a / f"{name}.csv")),
                                      comparable(pd.read_csv(b / f"{name}.csv")), check_exact=False, rtol=1e-12)


def test_a_clone_with_part_of_the_records_trains_only_the_rest_and_ends_as_an_uninterrupted_study(quick, tmp_path):
    """The quick study stopped after some of its runs: a fresh clone with their records (and nothing else of the
    machine that trained them) plans only the runs without a complete record, and finishes with the tables of the
    study that ran through."""
    config = quick_config()
    study = Study(config)
    missing = {spec.key for spec in study.runs() if spec.problem == "linreg"
               or (spec.problem == "sparse_logreg" and spec.optimizer == "adam")}
    clone = clone_with_records(quick, tmp_path / "clone", "quick",
                               keep=lambda run_dir: str(run_dir.relative_to(quick / "results/quick/runs")) not in missing)
    dry = snakemake(clone, "-n", "--cores", "2", "--configfile", "config/quick.yaml").stdout
    expected = {job.id for job in study.jobs.values() if any(spec.key in missing for spec in job.runs)}
    # the search's later rounds and the tuned reruns of a problem whose grid lacks runs wait for its rounds
    # (checkpoints): a dry run lists the plan's jobs only
    assert training_jobs(dry) == expected
    assert "would remove" in dry  # tables made from records the clone no longer has all of: reported, kept
    assert (clone / "results/quick/tables/runs.csv").exists()

    # the tables compared (figures, the page and MLflow are drawn from them, and tested on the quick study itself)
    snakemake(clone, *COMPARED_TABLES, "--cores", "2", "--configfile", "config/quick.yaml")
    assert_same_tables(clone / "results/quick/tables", quick / "results/quick/tables")
    assert "Nothing to be done" in snakemake(clone, *COMPARED_TABLES, "-n", "--configfile", "config/quick.yaml").stdout


def test_a_clone_of_a_complete_study_trains_nothing_and_keeps_its_published_files(quick, tmp_path):
    clone = clone_with_records(quick, tmp_path / "clone", "quick")
    before = {path: path.read_bytes() for path in (clone / "results/quick").rglob("*") if path.is_file()}
    # file times say nothing in a clone: make the plan and the tuned plan newer than the records' tables
    for path in sorted((clone / "results/quick").rglob("*"), reverse=True):
        os.utime(path, (time.time() - 3600 + len(str(path)), time.time() - 3600 + len(str(path))))
    dry = snakemake(clone, "-n", "--cores", "2", "--configfile", "config/quick.yaml").stdout
    assert not training_jobs(dry) and "train" not in planned_jobs(dry)
    # the records are not gathered again nor the plan remade; a table or figure whose input looks newer may be drawn
    # again from the same tables (byte for byte the same, below); MLflow and the results page, which git does not
    # hold, are built
    assert not set(planned_jobs(dry)) & {"plan", "select_tuned", "aggregate"}
    assert {"mlflow_sync", "explorer"} <= set(planned_jobs(dry))
    snakemake(clone, "--cores", "2", "--configfile", "config/quick.yaml")
    after = {path: path.read_bytes() for path in before}
    assert after == before


def test_a_problem_whose_search_has_ended_trains_its_tuned_reruns_while_another_is_still_searched(quick, tmp_path):
    """Each problem's tuned reruns start from its own choice: with sparse_logreg's search ended and its tuned reruns
    left to train, and the sigmoid LeNet's search not yet begun (part of its grid untrained), both are in the first
    DAG, so neither waits for the other (one choice over every problem would hold sparse_logreg's reruns back until
    the slowest search had ended)."""
    study = Study(quick_config())
    tuned = pd.read_csv(quick / "results/quick/tuning/tuned_runs.csv")
    # the reruns trained by tuned jobs (a tuned run equal to a planned run is trained by the plan's job)
    untrained = set(tuned[(tuned.problem == "sparse_logreg") & tuned.job.str.contains("-tuned-")].key)
    grid_job = next(job for job in study.jobs.values() if job.problem == "lenet_sigmoid_fmnist"
                    and any("grid" in study.roles(spec) for spec in job.runs))
    untrained |= {spec.key for spec in grid_job.runs}
    assert any(key.startswith("sparse_logreg") for key in untrained)
    runs = quick / "results/quick/runs"
    clone = clone_with_records(quick, tmp_path / "clone", "quick",
                               keep=lambda run_dir: str(run_dir.relative_to(runs)) not in untrained)
    shutil.rmtree(clone / "results/quick/tuning/search/lenet_sigmoid_fmnist")  # what its search had made
    dry = snakemake(clone, "-n", "--cores", "2", "--configfile", "config/quick.yaml").stdout
    jobs = training_jobs(dry)
    assert grid_job.id in jobs and {job for job in jobs if job.startswith("sparse_logreg-tuned-")}, jobs
    assert not any(job.startswith("lenet_sigmoid_fmnist-tuned-") for job in jobs)  # it has not chosen yet


def test_a_changed_record_of_a_search_run_makes_its_problem_choose_again(quick, tmp_path, monkeypatch, capsys):
    """A grid run's record resealed with another content (retrained elsewhere, brought in by git): its problem's
    rounds, its choice (the tuned reruns' source) and the tuning's tables no longer hold and are removed, so that
    the search goes on from there; the other problem's choice stays. adabench status, before that run, already
    counts the problem's search as not chosen. A round without its sidecar is made again, saying why."""
    from adabench.cli import main
    from adabench.core.records import read_summary, seal
    from adabench.workflow.housekeeping import stale_outputs

    clone = clone_with_records(quick, tmp_path / "clone", "quick")
    monkeypatch.chdir(clone)
    study = Study(quick_config())
    spec = next(spec for spec in study.grid_runs() if spec.problem == "sparse_logreg")
    summary = read_summary(study.run_dir(spec))
    (study.run_dir(spec) / "summary.json").write_text(json.dumps(seal({**summary, "train_time_s": 1e6})))
    stale = {str(path) for path, _ in stale_outputs(read_state(study), {})}
    search = "results/quick/tuning/search"
    assert {f"{search}/sparse_logreg/round-0.csv", f"{search}/sparse_logreg/rounds.csv",
            f"{search}/sparse_logreg/choice.csv", "results/quick/tuning/selection.csv"} <= stale, stale
    assert not {path for path in stale if path.startswith(f"{search}/lenet_sigmoid_fmnist")}
    assert main(["status", "config/quick.yaml"]) == 0
    status = capsys.readouterr().out
    # the sigmoid LeNet's choice holds: it is not named
    assert "the learning-rate search has not chosen yet on sparse_logreg (0 rounds made): the rates" in status, status
    assert re.search(r"^tuned\s+sparse_logreg\s+0/", status, flags=re.M), status  # its old choice's reruns: not counted
    # the choice's own sidecar says it too, where the rounds it came from are gone (deleted by hand, not in a copy)
    for path in Path(f"{search}/sparse_logreg").glob("round-*"):
        path.unlink()
    assert f"{search}/sparse_logreg/choice.csv" in {str(path) for path, _ in stale_outputs(read_state(study), {})}
    # a round without its sidecar cannot say which records it scored: made again, and the reason says so
    Path(f"{search}/lenet_sigmoid_fmnist/round-0.sources.json").unlink()
    reasons = {str(path): why for path, why in stale_outputs(read_state(study), {})}
    assert reasons[f"{search}/lenet_sigmoid_fmnist/round-0.csv"] == (
        "a round of the search without the sidecar that says which records it scored (missing or damaged), or a "
        "round after it"), reasons


TOY_OPTIMIZER = '''
"""An optimizer from outside the package: SGD with its step scaled by a constant, registered like the built-ins."""
import torch

from adabench.core.optim import OPTIMIZERS, CoordinateWiseOptimizer


@OPTIMIZERS.register("toy_sgd")
class ToySGD(CoordinateWiseOptimizer):
    def __init__(self, params, lr: float = 0.05, scale: float = 1.0):
        super().__init__(params, {"lr": lr, "scale": scale})

    def _init_state(self, group, p):
        return {"step": 0}

    def _update(self, group, p):
        self.state[p]["step"] += 1
        p.add_(p.grad, alpha=-group["lr"] * group["scale"])

    def _coordinate_steps(self, group, state):
        return torch.tensor([group["lr"] * group["scale"]])
'''


# packaged optimizers named by reference, no Python written: elementwise, global statistic, train/eval modes, sign;
# not on the LeNets (CI's time: tests/test_packaged_population.py trains each of them on LeNets)
PACKAGED = ["torch.optim:NAdam", "prodigyopt:Prodigy", "schedulefree:AdamWScheduleFree", "pytorch_optimizer:Lion"]
LENETS = ["lenet_sigmoid_fmnist", "lenet_relu_fmnist"]
# what the test asks for: the tables it reads (the figures, the page and the MLflow sync are made by the same rules
# from the same tables, which the quick study's own tests check)
TABLE_TARGETS = [f"results/quick/tables/{name}.csv" for name in ("comparison", "runs", "paired_tests")]


def test_a_new_optimizer_trains_only_its_own_runs_against_the_published_ones(quick, tmp_path, monkeypatch):
    """A user registers an optimizer in a plug-in module and names it in a study file that keeps the study: only
    jobs holding its runs train (its runs of the report's protocol, its grid and its tuned reruns); no complete
    run is trained again; every table then holds it, paired with the published runs on the same seeds. It runs on
    every problem but the sigmoid LeNet, the quick study's tuned LeNet, so its search runs on sparse_logreg alone
    (tuning.optimizers meets each problem's own list; a LeNet search's rounds, one after the other, are what
    made this test the suite's longest). The same study file names four packaged optimizers by reference
    (module:Class): they train on every problem but the LeNets."""
    clone = clone_with_records(quick, tmp_path / "clone", "quick")
    (clone / "toy_optimizer.py").write_text(TOY_OPTIMIZER)
    base = quick_config()
    mine = write_config(clone / "config", {
        "plugins": ["toy_optimizer"],
        "optimizers": [*base["optimizers"], "toy_sgd", *PACKAGED],
        "problems": {"lenet_relu_fmnist": {"optimizers": [*base["optimizers"], "toy_sgd"]},
                     "lenet_sigmoid_fmnist": {"optimizers": base["optimizers"]}},
        "tuning": {"optimizers": [*base["tuning"]["optimizers"], "toy_sgd"]}}, "mine.yaml")
    arguments = ["--cores", "2", "--configfile", "config/quick.yaml", str(mine)]
    environment = {**os.environ, "PYTHONPATH": f"{clone}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    before = {path: path.stat().st_mtime_ns for path in (clone / "results/quick/runs").rglob("summary.json")}

    dry = snakemake(clone, "-n", *arguments, env=environment).stdout
    monkeypatch.syspath_prepend(str(clone))
    monkeypatch.chdir(clone)
    config = load_study_config(clone / "config/quick.yaml", mine, defaults=clone / "config.yaml")
    pending = read_state(Study(config)).pending_jobs()
    assert training_jobs(dry) == set(pending) and pending
    for job in pending.values():
        assert {spec.optimizer for spec in job.runs} <= {"toy_sgd", *PACKAGED}

    # the run asks for the tables it reads (a dry run of them alone would list no training: the published tables
    # exist, and only the run's removal of the plan, which the config changes, makes them again)
    snakemake(clone, *TABLE_TARGETS, *arguments, env=environment)
    assert before == {path: path.stat().st_mtime_ns for path in before}  # no complete run trained again
    root = clone / "results/quick/tables"
    comparison = pd.read_csv(root / "comparison.csv")
    assert set(comparison[comparison.optimizer == "toy_sgd"].problem) == set(base["problems"]) - {"lenet_sigmoid_fmnist"}
    for optimizer in PACKAGED:
        expected = set(base["problems"]) - set(LENETS)
        assert set(comparison[comparison.optimizer == optimizer].problem) == expected, optimizer
    runs = pd.read_csv(root / "runs.csv")
    packaged = runs[runs.optimizer.isin(PACKAGED)]
    assert set(packaged.status) == {"finished"} and set(packaged.seed) == set(base["seeds"])
    paired = pd.read_csv(root / "paired_tests.csv")
    assert "toy_sgd" in set(paired.optimizer_a) and set(paired.optimizer_b) == {"adagrad"}
    toy = runs[(runs.optimizer == "toy_sgd") & runs.in_tuned]
    assert set(toy.problem) == {"sparse_logreg"}  # searched where it runs, not on the sigmoid LeNet
    assert sorted(set(toy.seed)) == sorted(base["seeds"])  # paired with the published runs' seeds


def test_status_says_the_search_has_not_chosen_and_what_it_does_not_count_yet(tmp_path, monkeypatch):
    """Before a problem's search has chosen, its later rounds are unknown: status says so, naming the problems
    searched; a problem that has chosen counts its tuned reruns as its choice makes them."""
    study = Study(quick_config())  # reads the reference report's numbers from the checkout
    monkeypatch.chdir(tmp_path)  # a study with no run trained yet
    text = report(read_state(study))
    assert ("the learning-rate search has not chosen yet on lenet_sigmoid_fmnist (0 rounds made), "
            "sparse_logreg (0 rounds made): the rates its next rounds add are not counted yet") in text
    chosen = Path(study.path("tuning", "search", "sparse_logreg", "choice.csv"))
    chosen.parent.mkdir(parents=True)
    chosen.write_text("problem,optimizer,lr\nsparse_logreg,adagrad,0.0215\nsparse_logreg,adam,\n")  # adam: no rate trains
    text = report(read_state(study))
    assert "not chosen yet on lenet_sigmoid_fmnist (0 rounds made): the rates" in text
    seeds = len(study.seeds("sparse_logreg"))
    assert re.search(rf"^tuned\s+sparse_logreg\s+0/{seeds}\s", text, flags=re.M), text


def test_status_counts_runs_and_epochs_and_names_a_stalled_job(quick, tmp_path, monkeypatch):
    monkeypatch.chdir(quick)
    study = Study(quick_config())
    text = report(read_state(study))
    search = pd.read_csv("results/quick/tuning/search_runs.csv")
    total = len({spec.key for spec in study.runs()} | set(search.key)
                | set(pd.read_csv("results/quick/tuning/tuned_runs.csv").key))
    assert f"{total} of {total} runs complete" in text and "every run is complete" in text
    assert "search has not chosen" not in text
    grid = 12 + (search.problem == "sparse_logreg").sum()  # the grid's 2 x 3 x 2 runs, then what the search added
    assert re.search(rf"^grid\s+sparse_logreg\s+{grid}/{grid}\s+{2 * grid}/{2 * grid}$", text, flags=re.M)

    # a job that reported 100 s ago, with 10 s epochs: stalled; one whose process is gone: not listed at all
    progress = Path(study.progress_file("sparse_logreg-9"))
    write_progress(progress, "sparse_logreg-9", "sparse_logreg",
                   {"unit": "epoch", "epoch": 1, "epochs": 2, "active": 3, "size": 3, "seconds_per_epoch": 10.0,
                    "eta_s": 10.0})
    gone = Path(study.progress_file("linreg-9"))
    gone.write_text(json.dumps({**json.loads(progress.read_text()), "job": "linreg-9", "pid": 2**22 + 1}))
    # "now" 100 s after the job's own report (not after the clock: reading the state takes seconds on a busy machine)
    later = json.loads(progress.read_text())["updated"] + 100
    try:
        jobs = running_jobs(study, now=later)
        assert [job.job for job in jobs] == ["sparse_logreg-9"] and jobs[0].stalled
        assert "sparse_logreg-9: STALLED, no progress for 1m40s" in report(read_state(study), now=later)
        assert not running_jobs(study)[0].stalled
    finally:
        progress.unlink()
        gone.unlink()


def test_the_eta_takes_the_pace_of_the_running_jobs_where_there_are_any(quick, monkeypatch):
    monkeypatch.chdir(quick)
    study = Study(quick_config())
    job = next(job for job in study.jobs.values() if job.problem == "sparse_logreg" and job.runs)
    options = per_epoch_options("sparse_logreg", job.runs[0].problem_options)
    # ten run-epochs of that job's kind left; its finished runs measured some rate, the running job another
    left = pd.DataFrame([{"stage": "study", "problem": "sparse_logreg", "complete": 0, "runs": 1, "done": 0,
                          "epochs": 10, "options": options}])
    finished_only, unmeasured = remaining_seconds(left, study)
    assert finished_only > 0 and unmeasured == []
    progress = Path(study.progress_file(job.id))
    write_progress(progress, job.id, "sparse_logreg",
                   {"unit": "epoch", "epoch": 1, "epochs": 3, "active": 4, "size": 4, "seconds_per_epoch": 1000.0,
                    "eta_s": 2000.0})
    try:
        jobs = running_jobs(study)
        assert remaining_seconds(left, study, jobs) == (10 * 1000.0 / 4, [])
        # a stalled job's pace is not this machine's pace
        stalled = running_jobs(study, now=time.time() + 10_000)
        assert remaining_seconds(left, study, stalled) == (finished_only, [])
    finally:
        progress.unlink()
    # a job the search added (not among the plan's jobs) gives the pace of runs on the grid's data (the LeNets' grid
    # holds out a validation split: other per-epoch options than the study's runs)
    lenet = "lenet_sigmoid_fmnist"
    grid = left.assign(stage="grid", problem=lenet, options=per_epoch_options(lenet, study.grid_options(lenet)))
    progress = Path(study.progress_file(f"{lenet}-search7-0"))
    write_progress(progress, f"{lenet}-search7-0", lenet,
                   {"unit": "epoch", "epoch": 1, "epochs": 3, "active": 2, "size": 2, "seconds_per_epoch": 600.0,
                    "eta_s": 1000.0})
    try:
        assert remaining_seconds(grid, study, running_jobs(study)) == (10 * 600.0 / 2, [])
    finally:
        progress.unlink()


def test_each_training_job_logs_one_progress_line_per_epoch(quick):
    log = (quick / "results/quick/logs/train/lenet_relu_fmnist-0.log").read_text()
    lines = re.findall(r"^epoch (\d+)/2: (\d+) of (\d+) runs active, [\d.]+ s/epoch, ETA \S+$", log, flags=re.M)
    assert [epoch for epoch, *_ in lines] == ["1", "2"]


def slow_study(directory: Path) -> Path:
    """A linreg study whose one job takes many short epochs: time to stop it part way."""
    problems = {name: {"optimizers": []} for name in quick_config()["problems"]}
    problems["linreg"] = {"options": {"epochs": 200, "n_samples": 4000}, "optimizers": ["adagrad", "adam"]}
    return write_config(directory, {"study": "slow", "device": "cpu", "threads": 1, "seeds": [0, 1], "tuning": None,
                                    "defaults_protocol": None, "reference": {"problems": []}, "problems": problems})


def test_adabench_stop_ends_a_study_within_one_epoch_and_a_plain_rerun_resumes_it(tmp_path):
    copy_workflow(tmp_path)
    config = slow_study(tmp_path)
    # the runs' table: training and what reads the records (not the figures, page and sync drawn from it after)
    arguments = ["results/slow/tables/runs.csv", "--cores", "2", "--configfile", str(config)]
    snakemake_run = subprocess.Popen(snakemake_command(tmp_path, *arguments), cwd=tmp_path, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    progress = tmp_path / "results/slow/progress/linreg-0.json"
    try:
        deadline = time.monotonic() + 600
        while not (progress.exists() and json.loads(progress.read_text()).get("epoch", 0) >= 3):
            assert snakemake_run.poll() is None, snakemake_run.stdout.read()
            assert time.monotonic() < deadline, "the training job never reached epoch 3"
            time.sleep(0.2)
        stopped = subprocess.run([sys.executable, "-m", "adabench", "stop", str(config), "--wait", "300"],
                                 cwd=tmp_path, capture_output=True, text=True, timeout=400)
        assert stopped.returncode == 0, stopped.stderr
        assert "Snakemake (pid" in stopped.stdout and "training job linreg-0 (pid" in stopped.stdout
        snakemake_run.wait(timeout=300)
    finally:
        if snakemake_run.poll() is None:
            os.killpg(snakemake_run.pid, signal.SIGKILL)
            snakemake_run.wait()
    log = (tmp_path / "results/slow/logs/train/linreg-0.log").read_text()
    assert "stop requested" in log
    checkpoints = list((tmp_path / "results/slow/runs").rglob("checkpoint.pt"))
    assert len(checkpoints) == 4 and not list((tmp_path / "results/slow/runs").rglob("summary.json"))
    assert not running_jobs(Study(load_study_config(config, defaults=tmp_path / "config.yaml")))

    snakemake(tmp_path, *arguments)
    summaries = [json.loads(path.read_text()) for path in (tmp_path / "results/slow/runs").rglob("summary.json")]
    assert len(summaries) == 4 and all(s["resumed_from"] >= 3 and s["epochs_completed"] == 200 for s in summaries)


# a process posing as a training job of the study: writes its progress file as a job does, says "ready", then
# answers "pong" to every line on its stdin. On SIGTERM: "ignore" ignores it (a plug-in sleeping in its step),
# "exit" exits, "nostart" dies (Python's default) and leaves the start time out of its progress file.
FAKE_JOB = """
import json, signal, sys
from pathlib import Path
from adabench.study.progress import write_progress
mode, path, job = sys.argv[1:4]
if mode == "ignore":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
elif mode == "exit":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
write_progress(Path(path), job, "linreg", {"unit": "epoch", "epoch": 1, "epochs": 200, "active": 2, "size": 2,
                                           "seconds_per_epoch": 1.0, "eta_s": 199.0})
if mode == "nostart":
    progress = json.loads(Path(path).read_text())
    del progress["start"]
    Path(path).write_text(json.dumps(progress))
print("ready", flush=True)
for line in sys.stdin:
    print("pong", flush=True)
"""


def fake_job(study_root: Path, job: str, mode: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", FAKE_JOB, mode, str(study_root / "progress" / f"{job}.json"), job],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def adabench_cli(workdir: Path, *arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "adabench", *arguments], cwd=workdir, capture_output=True, text=True,
                          timeout=300)


def test_stop_wait_names_what_is_still_alive_and_signals_a_pid_only_with_its_recorded_start(tmp_path):
    """`stop --wait` exits non-zero naming a job that outlived the wait (it ignores SIGTERM), not one that exited;
    a progress file without its process's start time gets its pid no signal (it may be another process now)."""
    copy_workflow(tmp_path)
    config = slow_study(tmp_path)
    root = tmp_path / "results/slow"
    children = [fake_job(root, "linreg-0", "ignore"), fake_job(root, "linreg-1", "exit"),
                fake_job(root, "linreg-2", "nostart")]
    ignores, exits, unrelated = children
    try:
        assert [child.stdout.readline() for child in children] == ["ready\n"] * 3  # their progress files are written
        stopped = adabench_cli(tmp_path, "stop", str(config), "--wait", "10")
        assert stopped.returncode == 1, stopped
        assert stopped.stderr.startswith(f"adabench stop: not seen to end within 10 s: training job linreg-0 (pid "
                                         f"{ignores.pid}). Fix:"), stopped.stderr
        assert f"training job linreg-1 (pid {exits.pid}): asked to stop" in stopped.stdout
        assert exits.wait(timeout=60) == 0 and ignores.poll() is None
        assert "linreg-2.json: damaged" in stopped.stdout and "records no process start time" in stopped.stdout
        for child in (ignores, unrelated):  # alive and well: a process SIGTERM killed answers nothing
            child.stdin.write("ping\n")
            child.stdin.flush()
            assert child.stdout.readline() == "pong\n"
    finally:
        for child in children:
            child.kill()
            child.wait()


def test_status_and_stop_word_file_errors_in_one_line_and_the_eta_is_unknown_before_any_measurement(tmp_path):
    copy_workflow(tmp_path)
    config = slow_study(tmp_path)
    status = adabench_cli(tmp_path, "status", str(config))
    assert status.returncode == 0, status.stderr
    assert "left: 800 run-epochs, nothing measured yet (linreg); ETA unknown" in status.stdout
    assert "0m00s" not in status.stdout
    # a file the study cannot read where a folder belongs (permissions would do the same for a user who is not root)
    root = tmp_path / "results/slow"
    root.mkdir(parents=True)
    (root / "runs").write_text("")
    status = adabench_cli(tmp_path, "status", str(config))
    assert status.returncode == 1 and "Traceback" not in status.stderr and len(status.stderr.splitlines()) == 1
    assert status.stderr.startswith("adabench status: results/slow/runs/") and ": Not a directory. Fix:" in \
        status.stderr, status.stderr
    (root / "snakemake.lock").mkdir()
    stopped = adabench_cli(tmp_path, "stop", str(config))
    assert stopped.returncode == 1 and "Traceback" not in stopped.stderr + stopped.stdout
    assert stopped.stdout.splitlines() == ["WARNING: results/slow/snakemake.lock: cannot probe whether Snakemake "
                                           "holds it (Is a directory); Snakemake not stopped"]
    assert len(stopped.stderr.splitlines()) == 1 and "snakemake.lock: Is a directory" in stopped.stderr


@pytest.mark.parametrize("flag", [["-n"], ["--report", "report.html"], ["--summary"]])
def test_a_run_that_trains_nothing_changes_nothing(quick, tmp_path, flag):
    """A dry run, a report or a summary over a study with a damaged record only reports what a run would redo."""
    clone = clone_with_records(quick, tmp_path / "clone", "quick")
    run_dir = next((clone / "results/quick/runs").glob("linreg*/adam/*/seed=0"))
    (run_dir / "summary.json").write_text((run_dir / "summary.json").read_text().replace('"finished"', '"finishe"'))
    before = {path: path.read_bytes() for path in (clone / "results").rglob("*") if path.is_file()}
    snakemake(clone, *flag, "--configfile", "config/quick.yaml", check=False)
    after = {path: path.read_bytes() for path in (clone / "results").rglob("*") if path.is_file()}
    assert after == before
