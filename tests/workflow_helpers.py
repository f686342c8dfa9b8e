"""Running the real Snakemake workflow of this checkout in a temporary directory."""
from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

from adabench.study.config import load_study_config

REPO_ROOT = Path(__file__).resolve().parents[1]
# the columns of the tables that say how and with which code runs were trained, not what they computed: measured
# times (and ratios of them), population sizes, the git commit (a rerun after a commit records the new one); the
# only ones in which two trainings of a study may differ
HOW_TRAINED_COLUMNS = re.compile(r"(^|_)(seconds|time_s|train_s|ms|ratio)$|^(population_size|git_commit)$")
# the workflow itself; the adabench package is installed (pip install -e .)
WORKFLOW_FILES = ["Snakefile", "workflow", "scripts", "config", "config.yaml", "environment.yml", "profiles"]


def copy_workflow(destination: Path) -> Path:
    """A private copy of the workflow, so that a test may run and edit it without touching the checkout."""
    destination.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_FILES:
        source = REPO_ROOT / name
        if source.is_dir():
            shutil.copytree(source, destination / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, destination / name)
    return destination


def write_config(directory: Path, config: dict, name: str = "test-config.yaml") -> Path:
    path = directory / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def quick_config() -> dict:
    """The quick study as the workflow sees it: config.yaml with config/quick.yaml merged over it, checked."""
    return load_study_config(REPO_ROOT / "config" / "quick.yaml", defaults=REPO_ROOT / "config.yaml")


def snakemake_command(workdir: Path, *arguments: str, snakefile: Path | None = None) -> list[str]:
    """Snakemake on the workflow in ``workdir`` (or ``snakefile``); run it with cwd=workdir, as relative paths
    (--configfile, targets) are taken from the working directory."""
    return [sys.executable, "-m", "snakemake", "-s", str(snakefile or workdir / "Snakefile"), "-d", str(workdir),
            *arguments]


def snakemake(workdir: Path, *arguments: str, snakefile: Path | None = None, check: bool = True,
              timeout: float = 900, **popen) -> subprocess.CompletedProcess:
    result = subprocess.run(snakemake_command(workdir, *arguments, snakefile=snakefile), capture_output=True,
                            text=True, timeout=timeout, cwd=workdir, **popen)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(arguments)} failed ({result.returncode}):\n{result.stderr[-6000:]}")
    return result


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def comparable(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` without the columns that say how its runs were trained: what two trainings of a study computed."""
    return table.drop(columns=[column for column in table.columns if HOW_TRAINED_COLUMNS.search(column)])
