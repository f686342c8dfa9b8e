"""The MLflow UI, as a person opens it: a real headless Chromium on the quick study's store."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request

import pytest
from mlflow.tracking import MlflowClient
from workflow_helpers import free_port, quick_config

from adabench.study.design import Study
from adabench.workflow.tracking import RUN_KEY_TAG
from adabench.study.layout import sqlite_uri
from adabench.workflow.store import runs_view_url

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium")


def test_the_experiment_opens_on_its_runs_table_listing_every_run_of_the_quick_study(quick, tmp_path):
    """The address `adabench mlflow-ui` prints opens on the experiment's table of runs, in a browser that never
    switched MLflow's sidebar (a new profile); the experiment also carries MLflow's kind tag for training runs."""
    store = sqlite_uri(quick / "results/quick/mlflow/mlflow.db")
    client = MlflowClient(store)
    experiment = client.get_experiment_by_name(Study(quick_config()).experiment)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    keys = {run.data.tags[RUN_KEY_TAG] for run in client.search_runs([experiment.experiment_id], max_results=1000)}
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "adabench", "mlflow-ui", "config/quick.yaml", "--port", str(port)],
                              cwd=quick, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                              start_new_session=True)
    try:
        said = server.stdout.readline()  # the address, printed before the server starts
        url = runs_view_url(f"http://127.0.0.1:{port}", experiment.experiment_id)
        assert said.strip() == f"the runs of study quick: {url}"
        wait_for(f"http://127.0.0.1:{port}/health", seconds=600)
        page = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=30000", "--dump-dom", url],
            capture_output=True, text=True, timeout=300).stdout
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=60)
    count = re.search(r"(\d+)(?:</strong>)? matching runs", page)
    assert count and int(count.group(1)) == len(keys)
    shown = set(re.findall(r"(?:quadratic|linreg|sparse|lenet)[a-z_]*@[0-9a-f]{8}/[a-z_]+/[^<\"]+/seed=\d+", page))
    assert shown and shown <= keys  # the runs the table rendered are the study's, by their run keys


def wait_for(url: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except OSError:
            assert time.monotonic() < deadline, f"{url} did not answer within {seconds}s"
            time.sleep(1)
