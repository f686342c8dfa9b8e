"""A study on a real one-node SLURM cluster, through the project's SLURM profile.

`scripts/slurm_cluster.sh up` starts munged, slurmctld and slurmd with a private state directory; Snakemake
runs the quick study cut to three problems (SLURM_STUDY) with `--workflow-profile profiles/slurm` in a private copy
of the workflow; every job but the local rules (the download, the plan, the MLflow store, the search's rounds and
choice: seconds each) must go through sbatch, run to COMPLETED in SLURM, and the tables' rows must equal those
of the same problems in the local run of the whole quick study (the `quick` fixture) but for their wall-clock
columns. The cluster is stopped afterwards, also on failure.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import yaml
from workflow_helpers import REPO_ROOT, comparable, copy_workflow, snakemake_command, write_config

SCRIPT = REPO_ROOT / "scripts" / "slurm_cluster.sh"
# the daemons live in sbin, which a non-login PATH may lack
SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin"])
MISSING = [name for name in ("slurmctld", "munged") if shutil.which(name, path=SEARCH_PATH) is None]
pytestmark = pytest.mark.skipif(
    bool(MISSING), reason=f"no {' or '.join(MISSING)} for a test SLURM cluster (apt-get install slurm-wlm munge)"
)

# The test cluster (see the top of scripts/slurm_cluster.sh). It advertises 8 CPUs, more than a CI machine
# has, so that SLURM starts the jobs Snakemake submits together at once and the OS shares the cores among
# them: a job on the critical path (mlflow_store, search_ended) never queues behind a training job. Memory
# stays real (RealMemory from `slurmd -C` against the profile's mem_mb) and still limits the training jobs.
# MinJobAge: squeue still lists every job of the run when the test asks, not only those of the last 300 s.
CLUSTER_SETTINGS = {"ADABENCH_SLURM_CPUS": "8", "ADABENCH_SLURM_MIN_JOB_AGE": "3600", "ADABENCH_SLURM_TIMEOUT": "120"}
# Test-only options on the command line; the profile's own values suit a real cluster.
#  --slurm-keep-successful-logs: the plugin deletes the SLURM log of every successful job otherwise.
#  status checks: the first one a second after a submission (profile: 5 s) and, while nothing finishes,
#  every 1, 11, 21, ... s (the plugin adds the 10 s steps itself; no option changes them).
#  --groups: the rules after training (tables, figures, the page, the MLflow sync and its check) go to SLURM as one
#  job (each job costs two Snakemake start-ups of CPU time, and each stage waits for a status check). Every
#  training job is still a SLURM job of its own. --cores 2 caps how many jobs of a group run at once, hence the
#  CPUs and memory the group asks for; it limits nothing else on a cluster.
SNAKEMAKE_OPTIONS = [
    "--workflow-profile", "profiles/slurm", "--configfile", "config/quick.yaml", "slurm-study.yaml",
    "--slurm-keep-successful-logs",
    "--slurm-init-seconds-before-status-checks", "1", "--seconds-between-status-checks", "1",
    "--groups", *(f"{rule}=report" for rule in ("aggregate", "tables", "protocol_tables", "figure", "explorer",
                                                "mlflow_sync", "check_selection", "tuning_budget")), "--cores", "2",
]
# Every stage of a study, with fewer jobs (each SLURM job costs Snakemake start-ups and status checks): a LeNet
# (data fetched on the submitting node, prepared in a job), linreg, and sparse_logreg's tuning grid and reruns.
SLURM_STUDY = {
    "problems": {name: {"optimizers": []} for name in ("quadratic", "quadratic_rotated", "lenet_sigmoid_fmnist")},
    "reference": {"problems": ["linreg", "lenet_relu_fmnist"]},
    "tuning": {"problems": ["sparse_logreg"]},
}
RUN_TIMEOUT_S = 720
TABLES = ["results/quick/tables/comparison.csv", "results/quick/tables/reproduction.csv"]
# What the run is asked for: the tables compared, the tuning's tables and the check of its choice against MLflow (so
# the MLflow sync). Not the figures and the page, drawn from the same tables by the same rules locally (tested with
# the quick study): on SLURM they would only add minutes of one group job.
TARGETS = [*TABLES, "results/quick/tables/protocols.csv", "results/quick/tuning/selection_check.json"]
SUBMITTED = re.compile(r"^Job (\S+) has been submitted with SLURM jobid (\d+) \(log: (.+)\)\.$", re.M)


def tail(text: str, lines: int = 60) -> str:
    return "\n".join(line[:300] for line in text.splitlines()[-lines:])


@pytest.fixture(scope="module")
def slurm_cluster(request, tmp_path_factory) -> dict:
    """A running one-node cluster; its environment (ADABENCH_SLURM_DIR etc.) for the commands of the tests."""
    state = tmp_path_factory.mktemp("slurm")
    env = {**os.environ, "PATH": SEARCH_PATH, "ADABENCH_SLURM_DIR": str(state), **CLUSTER_SETTINGS}

    def script(*arguments: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(SCRIPT), *arguments], env=env, capture_output=True, text=True,
                              timeout=180)

    def down():
        result = script("down")
        assert result.returncode == 0, f"slurm_cluster.sh down failed:\n{result.stdout}{result.stderr}"

    # registered first: a failed or half-done `up` is cleaned up as well
    request.addfinalizer(down)
    up = script("up")
    if up.returncode != 0:
        pytest.fail(f"slurm_cluster.sh up failed ({up.returncode}):\n{up.stdout}{up.stderr}")
    return env


@pytest.fixture(scope="module")
def slurm_quick(slurm_cluster, tmp_path_factory) -> tuple[Path, str]:
    """SLURM_STUDY run through SLURM in a private copy of the workflow: (its directory, Snakemake's log). It waits
    for no local build (the quick study is asked for by the test that compares with it, after this run): its
    minutes of status checks overlap the other test process's work (SCHEDULE_FIRST in conftest.py)."""
    workdir = copy_workflow(tmp_path_factory.mktemp("slurm_quick"))
    write_config(workdir, SLURM_STUDY, "slurm-study.yaml")
    log_path = workdir / "snakemake-slurm.log"
    command = snakemake_command(workdir, *TARGETS, *SNAKEMAKE_OPTIONS)
    with log_path.open("w") as log:
        process = subprocess.Popen(command, cwd=workdir, env=slurm_cluster, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        try:
            returncode = process.wait(timeout=RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGTERM)  # Snakemake scancels its jobs; `down` cancels the rest
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            pytest.fail(f"the SLURM run took more than {RUN_TIMEOUT_S} s; its log ends:\n"
                        f"{tail(log_path.read_text())}\n{squeue(slurm_cluster)}")
    output = log_path.read_text()
    if returncode != 0:
        errors = "\n".join(re.findall(r"^Error in rule .*\n\s+message: .*$", output, flags=re.M))
        pytest.fail(f"snakemake --workflow-profile profiles/slurm failed ({returncode}):\n{tail(output, 30)}\n"
                    f"{errors}{failed_job_logs(output)}")
    return workdir, output


def squeue(env: dict, *arguments: str) -> str:
    return subprocess.run(["squeue", *arguments], env=env, capture_output=True, text=True, timeout=30).stdout


def failed_job_logs(output: str) -> str:
    """The end of each failed job's SLURM log, which holds the job's own error."""
    paths = sorted(set(re.findall(r"(/\S+/results/slurm-logs/\S+\.log) \(check log", output)))
    return "".join(f"\n--- {path}:\n{tail(Path(path).read_text(errors='replace'), 25)}"
                   for path in paths[:3] if Path(path).is_file())


def job_stats(output: str) -> dict[str, int]:
    """Snakemake's 'Job stats' table at the start of the run: rule -> number of jobs."""
    table = output.split("Job stats:", 1)[1].split("\n\n", 1)[0]
    return {rule: int(count) for rule, count in re.findall(r"^(\w+)\s+(\d+)$", table, flags=re.M)
            if rule != "total"}


def test_every_job_of_the_study_went_through_sbatch(slurm_quick, slurm_cluster):
    workdir, output = slurm_quick
    stats = job_stats(output)
    local = set(re.findall(r"^local(?:rule|checkpoint) (\w+):$", output, flags=re.M))
    assert "train" in stats and "train" not in local, local
    assert "fetch_fashion_mnist" in local  # a localrule: downloads stay on the submitting node
    # the records are read once, where Snakemake plans (this run starts with none: the plan is made in it)
    assert re.search(r"^adabench: study 'quick': 0 of \d+ planned runs complete", output, flags=re.M), output[:2000]

    submitted = {}  # SLURM job id -> its log, relative to the SLURM log directory
    executed = Counter()  # rule -> jobs that ran inside a SLURM job
    for _, slurm_id, log in SUBMITTED.findall(output):
        log = Path(log)
        submitted[slurm_id] = log.relative_to(workdir / "results/slurm-logs")
        # kept by --slurm-keep-successful-logs: what the job step (the Snakemake inside the job) printed
        text = log.read_text(errors="replace")
        executed.update(re.findall(r"^local(?:rule|checkpoint) (\w+):$", text, flags=re.M))
        assert "steps (100%) done" in text, log
        assert "planned runs complete" not in text, log  # a cluster job's Snakemake reads no records
    # every job that was not local ran in a SLURM job of its own rule: those planned at the start, and the training
    # jobs the search's rounds (checkpoints, run locally) added later
    by_rule = Counter(log.parts[0].removeprefix("rule_") for log in submitted.values()
                      if log.parts[0].startswith("rule_"))  # a group's job logs under the group's name
    assert all(executed[rule] == count for rule, count in by_rule.items()), (executed, by_rule)
    assert {rule for rule in stats if rule not in local} <= set(executed)
    assert {"plan", "mlflow_store", "search_round", "search_ended", "select_tuned"} <= local
    trains = {slurm_id for slurm_id, log in submitted.items() if log.parts[0] == "rule_train"}
    assert len(trains) == executed["train"] >= stats["train"] > 0  # one SLURM job per population

    # SLURM's view: every one of those jobs ran to the end; the training jobs with the profile's resources
    run_id = re.search(r"^SLURM run ID: (\S+)$", output, flags=re.M).group(1)
    listed = squeue(slurm_cluster, "--states=all", "--noheader", "--name", run_id, "--format=%i|%T|%m|%C|%b|%k")
    jobs = {fields[0]: fields[1:] for fields in (line.split("|") for line in listed.splitlines())}
    assert set(jobs) == set(submitted), listed
    assert {state for state, *_ in jobs.values()} == {"COMPLETED"}, listed
    profile = yaml.safe_load((workdir / "profiles/slurm/config.yaml").read_text())
    memory = f"{profile['set-resources']['train']['mem_mb']}M"
    # quick.yaml pins every problem to the CPU: `gpu: 0`, so no GPU (gres N/A), and threads: 1
    assert {tuple(jobs[slurm_id][1:4]) for slurm_id in trains} == {(memory, "1", "N/A")}, listed
    assert all(jobs[slurm_id][4].startswith("rule_train_wildcards_") for slurm_id in trains), listed


@pytest.mark.parametrize("table", TABLES)
def test_slurm_run_reproduces_the_local_tables(slurm_quick, quick, table):
    workdir, _ = slurm_quick
    local, cluster = (pd.read_csv(directory / table) for directory in (quick, workdir))
    assert list(cluster.columns) == list(local.columns)
    assert set(cluster.problem) == {"linreg", "lenet_relu_fmnist", "sparse_logreg"} & set(local.problem)
    local = local[local.problem.isin(set(cluster.problem))].reset_index(drop=True)
    # everything but what says how the runs were trained (seconds, commit), to rounding
    pd.testing.assert_frame_equal(comparable(cluster), comparable(local), check_exact=False, rtol=1e-9, atol=1e-12)
