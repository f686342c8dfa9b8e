"""Where a study lives: its folder under ``results/`` and its MLflow store, from the config alone.

Light (no torch, no problem classes): the MLflow jobs and the selection check need where things are, not the runs a
study plans. adabench.study.design builds on it: StudyProblems (what each problem runs), Study (the plan).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..core.spec import RunSpec

RESULTS_ROOT = Path("results")


def sqlite_uri(path: Path) -> str:
    """The MLflow tracking URI of a SQLite store at ``path``."""
    return f"sqlite:///{Path(path).resolve()}"


class StudyLayout:
    def __init__(self, config: dict):
        self.config = config
        self.name = config["study"]
        self.root = RESULTS_ROOT / self.name

    def path(self, *parts: str) -> str:
        return str(self.root.joinpath(*parts))

    def run_dir(self, spec: RunSpec) -> Path:
        """The run's directory, checked to lie inside the study's runs (nothing in a key may escape it)."""
        runs = self.root / "runs"
        directory = runs / spec.key
        if not directory.resolve().is_relative_to(runs.resolve()):
            raise ValueError(f"run key {spec.key!r} would leave {runs}")
        return directory

    def job_marker(self, job_id: str) -> str:
        """A training job's declared output (temporary: gone once the analysis has read its runs). Not the runs'
        records: Snakemake deletes a job's outputs before it runs, and records sealed before a kill must survive."""
        return self.path("jobs", f"{job_id}.json")

    def progress_file(self, job_id: str) -> str:
        """Where a training job says, after every epoch, how far it is (read by `adabench status`)."""
        return self.path("progress", f"{job_id}.json")

    @property
    def experiment(self) -> str:
        return self.config["mlflow"]["experiment"] or f"adabench-{self.name}"

    def tracking_uri(self) -> str:
        """MLFLOW_TRACKING_URI (a shared server on a cluster) wins over the config; default a SQLite file of the
        study's. Not a param of any rule: where MLflow lives changes nothing a job computes."""
        return self.configured_uri() or sqlite_uri(self.root / "mlflow" / "mlflow.db")

    def configured_uri(self) -> str | None:
        return os.environ.get("MLFLOW_TRACKING_URI") or self.config["mlflow"]["tracking_uri"]

    def default_store(self) -> bool:
        """Whether MLflow is the study's own SQLite store (results/<study>/mlflow/mlflow.db)."""
        return not self.configured_uri()
