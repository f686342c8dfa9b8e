"""MLflow as a view of the runs: one MLflow run per run key, updated (never duplicated) on reruns.

Metrics go in batches (``log_batch``, at most 1000 a call): a single ``log_metric`` costs about 3 ms on
SQLite and 50 ms over HTTP. A rerun finds its MLflow run by the run-key tag and logs only the steps
that run does not hold yet, so retries and resumed jobs neither duplicate runs nor steps. An MLflow run that
holds steps the training no longer has (a run retrained from scratch, or an attempt that logged past its last
checkpoint) is replaced, so that MLflow always shows the run's own records.
"""
from __future__ import annotations

import hashlib
import json
import math
import subprocess
import time
from pathlib import Path

from .run import RunSpec

RUN_KEY_TAG = "adabench.run_key"
MAX_BATCH = 1000
DEFAULT_EXPERIMENT = "adagrad-benchmark"


def sqlite_uri(path: Path) -> str:
    return f"sqlite:///{Path(path).resolve()}"


def git_commit(start: Path | None = None) -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=start, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def config_hash(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def ensure_experiment(tracking_uri: str, experiment: str, artifact_root: Path | None) -> str:
    """Create the store (and its tables) and the experiment once, before any training job runs.

    Concurrent first opens of a fresh SQLite store corrupt it (MLflow creates its tables without a lock),
    so the workflow runs this in one job that every training job depends on.
    """
    from mlflow.tracking import MlflowClient

    from mlflow.exceptions import MlflowException

    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is not None:
        return found.experiment_id
    location = Path(artifact_root).resolve().as_uri() if artifact_root else None
    try:
        return client.create_experiment(experiment, artifact_location=location)
    except MlflowException as error:
        # another process (CLI runs against a shared server) created it first
        if error.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        return client.get_experiment_by_name(experiment).experiment_id


class MLflowTracker:
    """Implements ``run.Tracker`` against an MLflow tracking URI (SQLite file or HTTP server)."""

    def __init__(self, tracking_uri: str, experiment: str, tags: dict | None = None, flush_seconds: float = 2.0):
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri)
        found = self.client.get_experiment_by_name(experiment)
        if found is None:
            raise RuntimeError(f"MLflow experiment {experiment!r} does not exist at {tracking_uri}; "
                               "create it first (the workflow's mlflow_store rule)")
        self.experiment_id = found.experiment_id
        self.extra_tags = tags or {}
        self.flush_seconds = flush_seconds
        self.run_id: str | None = None
        self.unit = "epoch"
        self.logged_up_to = -1
        self.pending: list = []
        self.last_flush = 0.0

    def runs_with_key(self, key: str) -> list:
        return self.client.search_runs([self.experiment_id], filter_string=f"tags.`{RUN_KEY_TAG}` = '{key}'",
                                       order_by=["attributes.start_time ASC"], max_results=100)

    def find_run(self, key: str):
        runs = self.runs_with_key(key)
        return runs[0] if runs else None

    def create_run(self, key: str) -> str:
        """Create the run of ``key``; if the HTTP client's retry of a create that had gone through made a
        second one, keep the first and delete the rest, so one key stays one run."""
        self.client.create_run(self.experiment_id, run_name=key, tags={RUN_KEY_TAG: key})
        first, *duplicates = self.runs_with_key(key)
        for duplicate in duplicates:
            self.client.delete_run(duplicate.info.run_id)
        return first.info.run_id

    def start(self, spec: RunSpec, unit: str, environment: dict, recorded_up_to: int) -> None:
        from mlflow.entities import Param, RunTag

        self.unit = unit
        existing = self.find_run(spec.key)
        logged = self.last_logged_step(existing) if existing is not None else -1
        if logged > recorded_up_to:
            self.client.delete_run(existing.info.run_id)  # its later steps belong to another training
            existing, logged = None, -1
        if existing is None:
            self.run_id = self.create_run(spec.key)
            params = {"problem": spec.problem, "optimizer": spec.optimizer, "seed": spec.seed,
                      "setting": spec.setting, "device": environment["device"]}
            params.update({f"hp.{k}": v for k, v in spec.hyperparameters.items()})
            params.update({f"problem.{k}": v for k, v in spec.problem_options.items()})
            self.client.log_batch(self.run_id, params=[Param(k, str(v)[:6000]) for k, v in params.items()])
        else:
            self.run_id = existing.info.run_id
            self.client.update_run(self.run_id, status="RUNNING")
            self.logged_up_to = logged
        tags = {**{f"env.{k}": v for k, v in environment.items()}, **self.extra_tags, "status": "running"}
        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def last_logged_step(self, run) -> int:
        keys = list(run.data.metrics)
        if not keys:
            return -1
        # every row logs its time_s, so its history covers every logged step
        history = self.client.get_metric_history(run.info.run_id, "time_s" if "time_s" in keys else keys[0])
        return max((m.step for m in history), default=-1)

    def log(self, rows: list[dict]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        for row in rows:
            step = int(row[self.unit])
            if step <= self.logged_up_to:
                continue
            self.pending.extend(
                Metric(name, float(value), now, step) for name, value in row.items()
                if name != self.unit and isinstance(value, (int, float)) and not isinstance(value, bool)
                and math.isfinite(float(value))
            )
            self.logged_up_to = step
        if time.monotonic() - self.last_flush >= self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        for start in range(0, len(self.pending), MAX_BATCH):
            self.client.log_batch(self.run_id, metrics=self.pending[start:start + MAX_BATCH])
        self.pending = []
        self.last_flush = time.monotonic()

    def finish(self, summary: dict, artifacts: list[Path]) -> None:
        from mlflow.entities import RunTag

        self.flush()
        tags = {"status": summary["status"], f"{summary['unit']}s_completed": summary["epochs_completed"],
                "train_time_s": f"{summary['train_time_s']:.3f}"}
        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])
        for path in artifacts:
            self.client.log_artifact(self.run_id, str(path))
        self.client.log_dict(self.run_id, summary, "summary.json")
        self.client.set_terminated(self.run_id, status="FINISHED" if summary["status"] == "finished" else "FAILED")


def grid_runs_from_mlflow(tracking_uri: str, experiment: str, keys: list[str]):
    """The tuning grid's runs as MLflow holds them (params, status tag and the last logged value of each
    metric), in the columns ``analysis.tuning.select`` reads: an independent path to the same choice."""
    import pandas as pd
    from mlflow.tracking import MlflowClient

    from .problems import PROBLEMS

    client = MlflowClient(tracking_uri)
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    wanted = set(keys)
    rows = []
    for run in client.search_runs([experiment_id], max_results=50_000):
        key = run.data.tags.get(RUN_KEY_TAG)
        if key not in wanted:
            continue
        params = run.data.params
        metric, mode = PROBLEMS.get(params["problem"]).selection
        rows.append({"problem": params["problem"], "optimizer": params["optimizer"], "lr": float(params["hp.lr"]),
                     "seed": int(params["seed"]), "status": run.data.tags.get("status"), "in_grid": True,
                     "selection_metric": metric, "selection_mode": mode,
                     f"final_{metric}": run.data.metrics.get(metric)})
    missing = wanted - {RunSpec(r["problem"], r["optimizer"], {"lr": r["lr"]}, r["seed"]).key for r in rows}
    if missing:
        raise RuntimeError(f"{len(missing)} grid runs are not in MLflow, e.g. {sorted(missing)[:3]}")
    return pd.DataFrame(rows)
