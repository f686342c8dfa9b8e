"""One pinned environment: requirements.txt (the direct dependencies, with ranges), requirements.lock (every package
at one exact version with its hashes: what `make` installs) and environment.yml (conda: the lock's pins) agree, the
installed packages are the lock's, and each run names the versions of the packages that computed it."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from workflow_helpers import REPO_ROOT

REQUIREMENT = re.compile(r"^([A-Za-z0-9_.-]+)\s*(.*)$")
LOCK = REPO_ROOT / "requirements.lock"
REFRESH = "run `make lock` (see docs/development.md, the environment) and commit requirements.lock and environment.yml"


def parse(lines) -> dict[str, str]:
    found = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line:
            name, spec = REQUIREMENT.match(line).groups()
            found[canonicalize_name(name)] = spec.replace(" ", "")
    return found


def locked() -> dict[str, tuple[str, int]]:
    """The lock's pins: package -> (version, how many hashes follow it)."""
    pins, current = {}, None
    for line in LOCK.read_text().splitlines():
        if match := re.match(r"^([A-Za-z0-9_.-]+)==(\S+?)\s*\\?$", line):
            current = canonicalize_name(match[1])
            pins[current] = (match[2], 0)
        elif line.strip().startswith("--hash=sha256:") and current:
            pins[current] = (pins[current][0], pins[current][1] + 1)
    return pins


def conda_pip_section() -> list[str]:
    environment = yaml.safe_load((REPO_ROOT / "environment.yml").read_text())
    assert "python=3.11" in environment["dependencies"]
    return next(item["pip"] for item in environment["dependencies"] if isinstance(item, dict))


def test_requirements_the_lock_and_the_conda_environment_agree():
    """Every direct dependency is locked at a version its range allows, every locked package has its hashes (pip's
    --require-hashes refuses the lock otherwise), and environment.yml pins exactly what the lock pins."""
    direct = {canonicalize_name(Requirement(line).name): Requirement(line).specifier
              for line in (REPO_ROOT / "requirements.txt").read_text().splitlines()
              if line.split("#", 1)[0].strip()}
    pins = locked()
    unlocked = sorted(name for name in direct if name not in pins)
    assert unlocked == [], f"requirements.txt names {unlocked}, which requirements.lock lacks: {REFRESH}"
    outside = {name: pins[name][0] for name, allowed in direct.items() if pins[name][0] not in allowed}
    assert outside == {}, f"requirements.lock pins {outside} outside requirements.txt's ranges: {REFRESH}"
    assert [name for name, (_, hashes) in pins.items() if hashes == 0] == []
    conda = parse(conda_pip_section())
    assert conda == {name: f"=={version}" for name, (version, _) in pins.items()}, \
        f"environment.yml's pip section pins other versions than requirements.lock: {REFRESH}"
    # the versions this project is built and tested with
    assert pins["torch"][0] == "2.14.1" and pins["snakemake"][0].startswith("9.")


def test_the_installed_packages_are_the_locked_ones():
    """What this environment runs is what the lock pins (`make` installs the lock; after `make lock` it installs
    again, its stamp older than the lock): the figures it draws are the committed ones.

    Asked of a fresh interpreter, as a run would ask it (adabench.core.provenance: the first distribution on sys.path):
    once anything imports setuptools, its vendored copies (setuptools/_vendor: packaging, zipp, ...) join sys.path
    of the test process and metadata.distributions() lists them too."""
    names = sorted(locked())
    asked = subprocess.run(
        [sys.executable, "-c", "import json, sys; from importlib import metadata\n"
         "def version(name):\n"
         "    try: return metadata.version(name)\n"
         "    except metadata.PackageNotFoundError: return None\n"
         "print(json.dumps({name: version(name) for name in sys.argv[1:]}))", *names],
        capture_output=True, text=True, timeout=120, check=True).stdout
    installed = json.loads(asked)
    differ = {name: (version, installed[name]) for name, (version, _) in locked().items()
              if installed[name] != version}
    assert differ == {}, f"(locked, installed) differ: run `make` (or pip install --require-hashes -r {LOCK.name})"


def test_make_installs_the_lock_with_its_hashes(tmp_path):
    """The stamp's recipe, as `make -n` prints it for a venv to come: the lock, every file checked by its hash."""
    printed = subprocess.run(["make", "-n", f"VENV={tmp_path / 'venv'}", str(tmp_path / "venv" / ".installed")],
                             cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=True).stdout
    installs = [line for line in printed.splitlines() if " install " in line]
    assert any("--require-hashes -r requirements.lock" in line for line in installs), printed
    assert not any("requirements.txt" in line for line in installs), printed


def test_each_run_names_the_versions_that_computed_it(tmp_path):
    """The record's environment and the MLflow params (version.<package>) name the installed versions of the
    packages that compute or draw; a record written before they were recorded (only torch and numpy) still syncs."""
    import shutil
    from importlib import metadata

    from mlflow.tracking import MlflowClient

    from adabench.core.provenance import PACKAGES
    from adabench.core.records import read_run
    from adabench.core.spec import RunSpec
    from adabench.workflow.tracking import MLflowTracker, run_params, sync_runs
    from adabench.study.layout import sqlite_uri
    from adabench.workflow.store import ensure_experiment
    from adabench.core.trainer import train_run

    assert set(PACKAGES) >= {"torch", "numpy", "pandas", "scipy", "matplotlib", "seaborn", "contourpy", "mlflow",
                             "snakemake"}
    store = sqlite_uri(tmp_path / "mlflow.db")
    ensure_experiment(store, "versions", tmp_path / "artifacts")
    spec = RunSpec("quadratic", "adagrad", {"lr": 0.4}, seed=0, problem_options={"steps": 3})
    summary = train_run(spec, tmp_path / "run", device="cpu", tracker=MLflowTracker(store, "versions", flush_seconds=0))
    for name in PACKAGES:
        assert summary["environment"][name].startswith(metadata.version(name)), name  # torch's: 2.14.1+cu130
    client = MlflowClient(store)
    [run] = client.search_runs([client.get_experiment_by_name("versions").experiment_id])
    assert {name: run.data.params[f"version.{name}"] for name in PACKAGES} == \
           {name: summary["environment"][name] for name in PACKAGES}

    # a record as written before: its environment without the new names, read and synced as it is
    old = sorted((REPO_ROOT / "results/default/runs").glob("quadratic@*/adagrad/*/seed=0/summary.json"))[0].parent
    shutil.copytree(old, tmp_path / "old")
    old_summary, metrics = read_run(tmp_path / "old")
    assert "pandas" not in old_summary["environment"]
    assert {name for name in run_params(old_summary["run_key"], old_summary["identity"], old_summary["environment"])
            if name.startswith("version.")} == {"version.torch", "version.numpy"}
    assert sync_runs(store, "versions", [(tmp_path / "old", old_summary, metrics)], lambda line: None)["updated"] == 1
    [synced] = [found for found in client.search_runs([client.get_experiment_by_name("versions").experiment_id])
                if found.info.run_id != run.info.run_id]
    assert {name for name in synced.data.params if name.startswith("version.")} == {"version.torch", "version.numpy"}


def test_the_package_is_installed_with_its_console_script():
    """`make` installs the checkout with `pip install -e .`: the package imports from it and `adabench` runs."""
    import adabench

    assert Path(adabench.__file__).resolve().is_relative_to(REPO_ROOT)
    script = Path(sys.executable).with_name("adabench")
    listed = subprocess.run([str(script), "list"], capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
    assert "problem lenet_sigmoid_fmnist:" in listed.stdout and "optimizer adagrad: lr=0.01" in listed.stdout


def test_the_package_declares_what_it_imports_and_requirements_pin_it():
    import tomllib

    declared = {name.lower() for name in tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]}
    assert declared <= set(parse((REPO_ROOT / "requirements.txt").read_text().splitlines()))


def test_no_code_reaches_for_the_checkout_through_sys_path():
    tracked = subprocess.run(["git", "ls-files", "*.py", "*.smk", "Snakefile"], cwd=REPO_ROOT, capture_output=True,
                             text=True).stdout.split()
    needle = "sys.path." + "insert"
    assert [name for name in tracked if needle in (REPO_ROOT / name).read_text()] == []
