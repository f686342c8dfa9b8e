"""MLflow as a view of the runs: one MLflow run per run key, updated (never duplicated) on reruns.

Metrics go in batches (``log_batch``, at most 1000 a call): a single ``log_metric`` costs about 3 ms on
SQLite and 50 ms over HTTP. A rerun finds its MLflow run by the run-key tag and logs only the steps
that run does not hold yet, so retries and resumed jobs neither duplicate runs nor steps. An MLflow run that
holds steps the training no longer has (a run retrained from scratch, or an attempt that logged past its last
checkpoint) is replaced, so that MLflow always shows the run's own records.
"""
from __future__ import annotations

# mlflow is imported inside the functions that use it: it takes seconds to import, and the jobs that import this
# module to train without MLflow, or to read no store, should not wait for it.

import math
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.identity import identity_params
from ..core.provenance import PACKAGES, git_commit
from ..core.records import METRICS
from .store import configure_timeouts

if TYPE_CHECKING:
    from ..core.spec import RunSpec

RUN_KEY_TAG = "adabench.run_key"
RECORDS_TAG = "adabench.records_sha256"  # set when a run's records are complete in MLflow
SUMMARY_TAG = "adabench.summary_sha256"  # and its summary: a record resealed with other content is synced again
MAX_BATCH = 1000


def mlflow_trackers(tracking_uri: str, experiment: str, timeout_s: float, log):
    """A factory of trackers for a training job, or None per run once MLflow has failed once in this job (every
    later call would only wait for its own time-out). Training never depends on it: see GuardedTracker."""
    configure_timeouts(timeout_s)
    tags = {"git_commit": git_commit(Path(__file__).parent)}
    down = []

    def make(spec: RunSpec):
        if down:
            return None
        try:
            return MLflowTracker(tracking_uri, experiment, tags=tags)
        except Exception as error:  # noqa: BLE001 - any failure means: train without MLflow, sync later
            down.append(error)
            log(f"WARNING: MLflow at {tracking_uri} is unavailable ({type(error).__name__}: {str(error)[:300]}); "
                "training goes on, and mlflow_sync catches MLflow up from the run records")
            return None

    return make


def run_params(key: str, identity: dict, environment: dict) -> dict:
    """A run's MLflow params: what it is (adabench.core.identity.identity_params: problem, optimizer, seed,
    setting, each hyperparameter and option, a packaged optimizer's package), the device, and the versions of the
    packages that computed it (version.torch, ...)."""
    params = {**identity_params(identity, key), "device": environment["device"]}
    # the versions its record names (an older record names torch and numpy only)
    params.update({f"version.{name}": environment[name] for name in PACKAGES if name in environment})
    return params


def key_filter(key: str) -> str | None:
    """The MLflow filter string that selects the runs tagged with run key ``key``, or None where MLflow's grammar
    cannot say it. MLflow (mlflow.utils.search_utils.SearchUtils) takes a string literal's text between its quotes
    as it is: no escape works ('it''s' and 'it\\'s' search for those very characters). A key is quoted with a quote
    it does not hold; one holding both (a string hyperparameter such as it's "x") has no literal at all."""
    for quote in ("'", '"'):
        if quote not in key:
            return f"tags.`{RUN_KEY_TAG}` = {quote}{key}{quote}"
    return None


class MLflowTracker:
    """Implements ``adabench.core.runtime.Tracker`` against an MLflow tracking URI (SQLite file or HTTP server)."""

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
        """The active runs tagged with ``key``, oldest first."""
        query = key_filter(key)
        if query is None:  # no filter names this key: the experiment's runs, matched here (experiment_runs)
            return experiment_runs(self.client, self.experiment_id).get(key, [])
        return self.client.search_runs([self.experiment_id], filter_string=query,
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

    def start(self, key: str, identity: dict, unit: str, environment: dict, recorded_up_to: int) -> None:
        from mlflow.entities import Param, RunTag

        self.unit = unit
        existing = self.find_run(key)
        logged = self.last_logged_step(existing) if existing is not None else -1
        if logged > recorded_up_to:
            self.client.delete_run(existing.info.run_id)  # its later steps belong to another training
            existing, logged = None, -1
        if existing is None:
            self.run_id = self.create_run(key)
        else:
            self.run_id = existing.info.run_id
            self.client.update_run(self.run_id, status="RUNNING")
            self.logged_up_to = logged
        # every param the run lacks: all of them for a new run, and those a run created by an interrupted attempt
        # (a server that died between creating it and logging them) never got; params are immutable once logged
        present = existing.data.params if existing is not None else {}
        missing = {name: value for name, value in run_params(key, identity, environment).items() if name not in present}
        if missing:
            self.client.log_batch(self.run_id, params=[Param(k, str(v)[:6000]) for k, v in missing.items()])
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
                "train_time_s": f"{summary['train_time_s']:.3f}", RECORDS_TAG: summary["records_sha256"],
                SUMMARY_TAG: summary["summary_sha256"]}
        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])
        for path in artifacts:
            self.client.log_artifact(self.run_id, str(path))
        self.client.log_dict(self.run_id, summary, "summary.json")
        self.client.set_terminated(self.run_id, status="FINISHED" if summary["status"] == "finished" else "FAILED")


def experiment_runs(client, experiment_id: str) -> dict[str, list]:
    """Every active MLflow run of an experiment by its run key, oldest first."""
    found, token = {}, None
    while True:
        page = client.search_runs([experiment_id], max_results=5000, page_token=token,
                                  order_by=["attributes.start_time ASC"])
        for run in page:
            key = run.data.tags.get(RUN_KEY_TAG)
            if key:
                found.setdefault(key, []).append(run)
        token = page.token
        if not token:
            return found


def sync_runs(tracking_uri: str, experiment: str, runs: list[tuple], log) -> dict[str, int]:
    """Make MLflow hold each complete run of ``runs`` (directory, summary, metrics: as records.read_run verified
    them) exactly as its records say:
    create missing runs, add missing steps (or replace a run holding steps of another training), remove
    duplicates of a key. Runs whose records and summary digests MLflow already holds are left as they are."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    existing = experiment_runs(client, experiment_id)
    counts = {"in_sync": 0, "updated": 0, "duplicates_removed": 0}
    for directory, summary, metrics in runs:
        key = summary["run_key"]
        first, *duplicates = existing.get(key, [None])
        for duplicate in duplicates:
            client.delete_run(duplicate.info.run_id)
            counts["duplicates_removed"] += 1
        if first is not None and first.data.tags.get(RECORDS_TAG) == summary["records_sha256"] \
                and first.data.tags.get(SUMMARY_TAG) == summary["summary_sha256"] \
                and first.info.status in ("FINISHED", "FAILED") \
                and set(run_params(key, summary["identity"], summary["environment"])) <= set(first.data.params):
            counts["in_sync"] += 1
            continue
        records = metrics.to_dict("records")
        tracker = MLflowTracker(tracking_uri, experiment, tags={"synced_from_records": "true"}, flush_seconds=1e9)
        unit = summary["unit"]
        tracker.start(key, summary["identity"], unit, summary["environment"],
                      recorded_up_to=int(records[-1][unit]) if records else -1)
        tracker.log(records)
        tracker.finish(summary, [Path(directory) / METRICS])
        counts["updated"] += 1
        log(f"MLflow: {key} synced from its records")
    return counts


def grid_runs_from_mlflow(tracking_uri: str, experiment: str, keys: list[str], declarations: dict[str, dict]):
    """The tuning grid's runs as MLflow holds them (params, status tag and the last logged value of each
    metric), in the columns ``analysis.tuning.select`` reads: an independent path to the same choice.
    ``declarations``: each problem's (problems.json), for the metric it is selected on."""
    import pandas as pd
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    by_key = experiment_runs(client, experiment_id)
    missing = sorted(set(keys) - set(by_key))
    if missing:
        raise RuntimeError(f"{len(missing)} grid runs are not in MLflow, e.g. {missing[:3]}")
    rows = []
    for key in keys:
        run = by_key[key][0]
        params = run.data.params
        metric, mode = declarations[params["problem"]]["selection"]
        rows.append({"problem": params["problem"], "optimizer": params["optimizer"], "lr": float(params["hp.lr"]),
                     "seed": int(params["seed"]), "status": run.data.tags.get("status"), "in_grid": True,
                     "selection_metric": metric, "selection_mode": mode,
                     f"final_{metric}": run.data.metrics.get(metric)})
    return pd.DataFrame(rows)
