"""environment.yml (conda) and requirements.txt (pip) must name the same packages with the same versions."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml
from workflow_helpers import REPO_ROOT

REQUIREMENT = re.compile(r"^([A-Za-z0-9_.-]+)\s*(.*)$")


def parse(lines) -> dict[str, str]:
    found = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line:
            name, spec = REQUIREMENT.match(line).groups()
            found[name.lower().replace("_", "-")] = spec.replace(" ", "")
    return found


def test_conda_environment_and_pip_requirements_agree():
    pip = parse((REPO_ROOT / "requirements.txt").read_text().splitlines())
    environment = yaml.safe_load((REPO_ROOT / "environment.yml").read_text())
    pip_section = next(item["pip"] for item in environment["dependencies"] if isinstance(item, dict))
    assert parse(pip_section) == pip
    assert "python=3.11" in environment["dependencies"]
    # the versions this project is built and tested with
    assert pip["torch"] == "==2.14.1" and pip["snakemake"] == ">=9,<10"


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
