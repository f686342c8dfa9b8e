"""environment.yml (conda) and requirements.txt (pip) must name the same packages with the same versions."""
from __future__ import annotations

import re

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
