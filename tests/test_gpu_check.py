"""benchmarks/gpu_check.py, smoke-tested on CPU with a tiny fake Fashion-MNIST (the real one is not needed)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from adabench.core.data import save_prepared
from adabench.core.records import seal

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = REPO_ROOT / "benchmarks" / "gpu_check.py"
# the reference report's LeNet runs, in the order of config/reference_results.yaml
CONFIGURATIONS = [("lenet_sigmoid_fmnist", "adagrad"), ("lenet_sigmoid_fmnist", "adam"),
                  ("lenet_sigmoid_fmnist", "adagrad_avg"), ("lenet_relu_fmnist", "rmsprop")]
SEEDS = 2


def gpu_check(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *arguments], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def fake_data(tmp_path_factory) -> Path:
    """A prepared file in the layout of ``adabench data``: 5000 validation + 600 training images, 300 test."""
    path = tmp_path_factory.mktemp("data") / "fashion_mnist.pt"
    generator = torch.Generator().manual_seed(0)
    images = lambda n: torch.randint(0, 256, (n, 28, 28), dtype=torch.uint8, generator=generator)  # noqa: E731
    labels = lambda n: torch.randint(0, 10, (n,), dtype=torch.uint8, generator=generator)  # noqa: E731
    save_prepared({"train_images": images(5600), "train_labels": labels(5600),
                   "test_images": images(300), "test_labels": labels(300)}, path)
    return path


@pytest.fixture(scope="module")
def smoke(fake_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check")
    done = gpu_check("--device", "cpu", "--threads", "1", "--epochs", "1", "--seeds", str(SEEDS),
                     "--train-subset", "512", "--test-subset", "256", "--data-file", str(fake_data), "--out", str(out))
    assert done.returncode == 0, done.stderr
    return done.stdout, out


def test_prints_one_row_per_configuration_and_path_and_the_environment(smoke):
    stdout, _ = smoke
    lines = stdout.splitlines()
    for problem, optimizer in CONFIGURATIONS:
        for path in ("serial", "population"):
            [row] = [line for line in lines if line.startswith(f"{problem} {optimizer} ") and f" {path} " in line]
            assert row.split()[4] == str(SEEDS)  # problem, optimizer, setting, path, seeds
            assert float(row.split()[5]) > 0 and float(row.split()[6]) > 0  # seconds per epoch: a run's, a population's
    [env] = [line for line in lines if line.startswith("environment:")]
    assert "device cpu" in env and f"torch {torch.__version__}" in env


def test_writes_csv_and_json_with_the_same_numbers(smoke):
    _, out = smoke
    table = pd.read_csv(out / "gpu_check.csv")
    report = json.loads((out / "gpu_check.json").read_text())
    assert list(zip(table["problem"], table["optimizer"])) == CONFIGURATIONS * 2
    assert list(table.path) == ["serial"] * 4 + ["population"] * 4
    assert (table["seeds"] == SEEDS).all() and (table["epochs"] == 1).all()
    assert (table["s_per_epoch"] > 0).all()
    # serially each run is alone; together the sigmoid LeNet's 3 configurations are one population, the ReLU's one
    assert list(table.population_size) == [1] * 4 + [3 * SEEDS] * 3 + [SEEDS]
    for column in ("test_acc_mean", "test_acc_min", "test_acc_max"):
        assert table[column].between(0, 1).all()
    assert (table["test_acc_min"] <= table["test_acc_mean"]).all()
    assert (table["test_acc_mean"] <= table["test_acc_max"]).all()
    assert (table["device"] == "cpu").all()
    # the two paths train the same runs: the same accuracies, to float rounding
    serial, population = table[table.path == "serial"], table[table.path == "population"]
    assert population.test_acc_mean.to_numpy() == pytest.approx(serial.test_acc_mean.to_numpy(), abs=0.02)

    assert report["environment"]["device"] == "cpu"
    assert report["environment"]["torch"] == torch.__version__
    assert [(row["problem"], row["optimizer"]) for row in report["configurations"]] == CONFIGURATIONS * 2
    assert report["configurations"][0]["s_per_epoch"] == pytest.approx(table["s_per_epoch"][0])
    assert len(report["runs"]) == 2 * len(CONFIGURATIONS) * SEEDS
    for run in report["runs"]:
        run_dir = out / "runs" / "cpu" / run["path"] / run["run_key"]
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["train_time_s"] == pytest.approx(run["train_time_s"])
        assert summary["spec"]["problem_options"]["train_subset"] == 512
        assert 0 <= run["test_acc"] <= 1


def test_refuses_runs_reused_from_another_machine(smoke, fake_data, tmp_path):
    _, out = smoke
    copy = shutil.copytree(out, tmp_path / "out")
    [first, *_] = sorted((copy / "runs" / "cpu").rglob("summary.json"))
    summary = json.loads(first.read_text())
    first.write_text(json.dumps(seal({**summary, "environment": {**summary["environment"], "device_name": "another machine"}})))
    done = gpu_check("--device", "cpu", "--epochs", "1", "--seeds", str(SEEDS), "--train-subset", "512",
                     "--test-subset", "256", "--data-file", str(fake_data), "--out", str(copy))
    assert done.returncode != 0
    assert "trained on another machine" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_requested_without_cuda_fails_clearly(fake_data, tmp_path):
    done = gpu_check("--device", "cuda", "--epochs", "1", "--seeds", "1", "--data-file", str(fake_data),
                     "--out", str(tmp_path / "out"))
    assert done.returncode != 0
    assert "CUDA is not available" in done.stderr and "--device cpu" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()
