"""Populations: many runs as one vectorised model, each member still exactly the run it would be alone."""
from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd
import pytest
import torch
from training_helpers import StopAfter

from adabench.analysis.aggregate import failure_counts, run_row
from adabench.core.data import save_prepared
from adabench.core.lone_run import lone_run
from adabench.core.optim import OPTIMIZERS
from adabench.core.population import SectionTimer
from adabench.core.problems import make_problem
from adabench.core.records import TIME_COLUMNS, read_summary
from adabench.core.runtime import Preempted
from adabench.core.spec import RunSpec
from adabench.core.trainer import PopulationTrainer, train_population

QUIET = lambda line: None  # noqa: E731


@pytest.fixture(scope="module")
def fake_fashion_mnist(tmp_path_factory) -> Path:
    """Random images in the prepared layout: 200 validation, 1600 training, 300 test."""
    generator = torch.Generator().manual_seed(0)
    path = tmp_path_factory.mktemp("data") / "fashion_mnist.pt"
    save_prepared({"train_images": torch.randint(0, 256, (1800, 28, 28), dtype=torch.uint8, generator=generator),
                   "train_labels": torch.randint(0, 10, (1800,), dtype=torch.uint8, generator=generator),
                   "test_images": torch.randint(0, 256, (300, 28, 28), dtype=torch.uint8, generator=generator),
                   "test_labels": torch.randint(0, 10, (300,), dtype=torch.uint8, generator=generator)}, path)
    return path


def lenet_options(data: Path, **extra) -> dict:
    return {"data_file": str(data), "validation_size": 200, "batch_size": 32, "epochs": 2, **extra}


MIXED = [("adagrad", {"lr": 0.01, "eps": 1e-8}), ("adam", {"lr": 0.001}), ("adagrad", {"lr": 0.05}),
         ("sgd", {"lr": 0.1}), ("rmsprop", {"lr": 0.001}), ("adagrad_avg", {"lr": 0.01})]


def mixed_population(data: Path, seeds=(0, 1)) -> list[RunSpec]:
    return [RunSpec("lenet_sigmoid_fmnist", optimizer, hyperparameters, seed, lenet_options(data))
            for optimizer, hyperparameters in MIXED for seed in seeds]


def test_members_start_and_step_as_their_standalone_runs(fake_fashion_mnist, tmp_path):
    """Step by step against the reference loop (core.lone_run): the same batch order exactly, the same losses to
    within the last bits (other kernels: grouped channels_last convolutions, batched matrix products)."""
    specs = mixed_population(fake_fashion_mnist)
    population = PopulationTrainer([(spec, tmp_path / str(i), i) for i, spec in enumerate(specs)], "cpu", False, None, QUIET)
    assert population.size == len(specs) and len(population.model.groups) == len(MIXED)  # seeds share an optimizer
    steps = 50  # 1600 training images in batches of 32: one epoch
    orders = torch.stack([torch.randperm(population.problem.train_size, generator=member.generator)
                          for member in population.model.members])
    population_losses = []
    for step in range(steps):
        losses, _ = population.model.train_batch(orders[:, step * 32:(step + 1) * 32], SectionTimer(population.device))
        population_losses.append(losses.detach())
    population_losses = torch.stack(population_losses, dim=1)

    for row, member in enumerate(population.model.members):
        alone = lone_run(member.spec, max_steps=steps)
        assert torch.equal(orders[row], alone.orders[0]), member.spec.key
        torch.testing.assert_close(population_losses[row], torch.tensor(alone.losses), rtol=1e-5, atol=0,
                                   msg=f"{member.spec.key}: losses of the first {steps} steps")


def test_members_draw_the_initial_weights_of_their_seed(fake_fashion_mnist, tmp_path):
    specs = mixed_population(fake_fashion_mnist)
    population = PopulationTrainer([(spec, tmp_path / str(i), i) for i, spec in enumerate(specs)], "cpu", False, None, QUIET)
    for member, (group, row) in zip(population.model.members, population.model.placement):
        for name, value in lone_run(member.spec, max_steps=0).initial.items():
            assert torch.equal(group.leaves[name][row].detach(), value), (member.spec.key, name)


@pytest.mark.parametrize("problem", ["lenet_sigmoid_fmnist", "lenet_relu_fmnist"])
def test_members_train_epoch_by_epoch_as_the_reference_loop(problem, fake_fashion_mnist, tmp_path):
    """Every metric of every epoch of a population's records against the reference loop's (adabench.core.lone_run,
    the specification of a run): losses within float32's last bits (two epochs of 1,600 random images on the
    ReLU LeNet: 2.5e-5 apart at most, on the 2-core AMD EPYC VM), accuracies equal there, here allowed one image
    apart where those last bits tip an argmax (other kernels, other CPUs)."""
    options = lenet_options(fake_fashion_mnist, train_subset=320)
    specs = [RunSpec(problem, optimizer, hyperparameters, 0, options) for optimizer, hyperparameters in MIXED]
    train_population([(spec, tmp_path / str(i)) for i, spec in enumerate(specs)], device="cpu", log=QUIET)
    for i, spec in enumerate(specs):
        records = pd.read_csv(tmp_path / str(i) / "metrics.csv")
        alone = lone_run(spec)
        assert alone.status == "finished" and len(alone.epochs) == len(records) == 2, spec.key
        for column in alone.epochs[0]:
            expected = [row[column] for row in alone.epochs]
            if column.endswith("_acc"):
                images = {"train": 320, "val": 200, "test": 300}[column.split("_")[0]]
                assert records[column].tolist() == pytest.approx(expected, rel=0, abs=1 / images + 1e-12), \
                    (spec.key, column)
            else:
                assert records[column].tolist() == pytest.approx(expected, rel=1e-4, abs=0), (spec.key, column)


def test_final_metrics_of_a_population_and_of_standalone_runs_are_equal_on_a_cpu(fake_fashion_mnist, tmp_path):
    seeds = range(6)
    specs = [RunSpec("lenet_sigmoid_fmnist", "adam", {"lr": 0.002}, seed, lenet_options(fake_fashion_mnist, epochs=3))
             for seed in seeds]
    together = train_population([(spec, tmp_path / "pop" / str(i)) for i, spec in enumerate(specs)], device="cpu",
                                log=QUIET)
    alone = [train_population([(spec, tmp_path / "alone" / str(i))], device="cpu", log=QUIET)[0]
             for i, spec in enumerate(specs)]
    for metric in ("train_loss", "val_loss", "test_loss", "test_acc"):
        a = [summary["final"][metric] for summary in together]
        b = [summary["final"][metric] for summary in alone]
        # on a CPU a population passes its members through the network one by one: bit for bit the runs alone
        assert a == b, metric


def run_linreg_population(specs, root: Path, **keywords) -> list[dict]:
    return train_population([(spec, root / str(i)) for i, spec in enumerate(specs)], device="cpu", log=QUIET,
                            **keywords)


def final_parameters(summary: dict) -> list[float]:
    return [summary["final"][name] for name in ("w1", "w2", "b")]


@pytest.mark.parametrize("optimizer", OPTIMIZERS.names())
def test_every_optimizer_stacked_over_members_equals_it_alone(optimizer, tmp_path):
    """Each registry optimizer, shared by three members over their stacked parameters, makes each member's own
    update: the members end bit for bit where each ends trained alone."""
    specs = [RunSpec("linreg", optimizer, {"lr": 0.02}, seed, {"epochs": 3, "n_samples": 256}) for seed in range(3)]
    together = run_linreg_population(specs, tmp_path / "pop")
    alone = [run_linreg_population([spec], tmp_path / f"alone{i}")[0] for i, spec in enumerate(specs)]
    for a, b in zip(together, alone):
        assert final_parameters(a) == final_parameters(b)
        assert a["final"]["train_mse"] == b["final"]["train_mse"]
        assert {k: v for k, v in a["final"].items() if k.startswith("eff_lr")} == \
            {k: v for k, v in b["final"].items() if k.startswith("eff_lr")}


def test_a_diverging_member_is_frozen_and_the_others_end_as_without_it(fake_fashion_mnist, tmp_path):
    options = lenet_options(fake_fashion_mnist)
    good = [RunSpec("lenet_relu_fmnist", optimizer, hyperparameters, 0, options) for optimizer, hyperparameters in MIXED]
    bad = RunSpec("lenet_relu_fmnist", "sgd", {"lr": 1e6}, 0, options)
    with_bad = train_population([(spec, tmp_path / "with" / str(i)) for i, spec in enumerate([*good[:2], bad, *good[2:]])],
                                device="cpu", log=QUIET)
    without = train_population([(spec, tmp_path / "without" / str(i)) for i, spec in enumerate(good)], device="cpu",
                               log=QUIET)
    diverged = with_bad[2]
    assert diverged["status"] == "diverged" and diverged["epochs_completed"] == 1
    records = pd.read_csv(tmp_path / "with" / "2" / "metrics.csv")
    assert list(records.epoch) == [1] and not math.isfinite(records.train_loss.iloc[-1])
    for a, b in zip([*with_bad[:2], *with_bad[3:]], without):
        assert a["status"] == b["status"] == "finished"
        for metric in ("train_loss", "val_loss", "test_loss", "test_acc", "eff_lr_median"):
            assert a["final"][metric] == b["final"][metric], (a["run_key"], metric)


def records(root: Path, count: int) -> list[pd.DataFrame]:
    return [pd.read_csv(root / str(i) / "metrics.csv").drop(columns=TIME_COLUMNS) for i in range(count)]


def test_a_killed_population_resumes_every_member_bit_identically(fake_fashion_mnist, tmp_path, stop_flag):
    specs = mixed_population(fake_fashion_mnist, seeds=(3,))
    specs = [RunSpec(s.problem, s.optimizer, s.hyperparameters, s.seed, {**s.problem_options, "epochs": 3})
             for s in specs]
    uninterrupted = train_population([(spec, tmp_path / "whole" / str(i)) for i, spec in enumerate(specs)],
                                     device="cpu", log=QUIET)
    runs = [(spec, tmp_path / "killed" / str(i)) for i, spec in enumerate(specs)]
    with pytest.raises(Preempted):
        train_population(runs, device="cpu", trackers=lambda spec: StopAfter(1), log=QUIET)
    stop_flag.clear()
    assert all((directory / "checkpoint.pt").exists() and not (directory / "summary.json").exists()
               for _, directory in runs)
    resumed = train_population(runs, device="cpu", log=QUIET)
    assert all(summary["resumed_from"] == 1 for summary in resumed)
    for a, b in zip(records(tmp_path / "killed", len(specs)), records(tmp_path / "whole", len(specs))):
        pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert [s["final"] for s in resumed] == [{**s["final"], **{c: r["final"][c] for c in TIME_COLUMNS}}
                                             for s, r in zip(uninterrupted, resumed)]


def test_members_at_different_epochs_resume_side_by_side(tmp_path, stop_flag):
    """A kill while the checkpoints were written leaves members one epoch apart: each resumes from its own."""
    specs = [RunSpec("linreg", "adam", {"lr": 0.05}, seed, {"epochs": 4, "n_samples": 128}) for seed in range(3)]
    whole = run_linreg_population(specs, tmp_path / "whole")
    with pytest.raises(Preempted):
        run_linreg_population(specs[:1], tmp_path / "mixed", trackers=lambda spec: StopAfter(1))
    stop_flag.clear()
    with pytest.raises(Preempted):
        train_population([(specs[1], tmp_path / "mixed" / "1")], device="cpu", log=QUIET,
                         trackers=lambda spec: StopAfter(2))
    stop_flag.clear()
    resumed = run_linreg_population(specs, tmp_path / "mixed")
    assert [s["resumed_from"] for s in resumed] == [1, 2, 0]
    assert [final_parameters(s) for s in resumed] == [final_parameters(s) for s in whole]


def test_complete_members_are_not_trained_again(tmp_path):
    specs = [RunSpec("linreg", "sgd", {"lr": 0.05}, seed, {"epochs": 2, "n_samples": 64}) for seed in range(3)]
    first = run_linreg_population(specs[:2], tmp_path)
    stamps = [(tmp_path / str(i) / "summary.json").stat().st_mtime_ns for i in range(2)]
    lines = []
    again = train_population([(spec, tmp_path / str(i)) for i, spec in enumerate(specs)], device="cpu",
                             log=lines.append)
    assert again[:2] == first
    assert [(tmp_path / str(i) / "summary.json").stat().st_mtime_ns for i in range(2)] == stamps
    assert sum("already finished, skipped" in line for line in lines) == 2
    assert again[2]["population_size"] == 1  # only the missing run was trained
    assert read_summary(tmp_path / "2")["status"] == "finished"


def test_runs_with_different_problem_options_are_refused_naming_them(tmp_path):
    specs = [RunSpec("linreg", "sgd", {"lr": 0.05}, 0, {"epochs": 2, "batch_size": 16}),
             RunSpec("linreg", "sgd", {"lr": 0.05}, 1, {"epochs": 2, "batch_size": 32})]
    with pytest.raises(ValueError, match=r"batch_size \(16 vs 32\)"):
        run_linreg_population(specs, tmp_path)
    with pytest.raises(ValueError, match="precision"):
        run_linreg_population([specs[0], RunSpec("linreg", "sgd", {"lr": 0.05}, 1, specs[0].problem_options, "bf16")],
                              tmp_path)
    assert not list(tmp_path.rglob("metrics.csv"))


def test_the_quadratics_reproduce_the_reference_trajectory_in_a_population(tmp_path, reference_results):
    """Several optimizers on the exercise's quadratic at once: AdaGrad's member still follows the report's digits."""
    specs = [RunSpec("quadratic", "adagrad", {"lr": 0.4, "eps": 1e-6, "eps_inside_sqrt": True}, 0),
             RunSpec("quadratic", "adam", {"lr": 0.4}, 0), RunSpec("quadratic", "sgd", {"lr": 0.2}, 0)]
    run_linreg_population(specs, tmp_path)
    metrics = pd.read_csv(tmp_path / "0" / "metrics.csv")
    torch.testing.assert_close(torch.tensor(metrics[["x1", "x2"]].to_numpy()),
                               torch.tensor(reference_results["quadratic"]["trajectory"], dtype=torch.float64), rtol=0,
                               atol=1e-12)


def test_a_compiled_lenet_pass_trains_as_the_eager_one(fake_fashion_mnist, tmp_path, monkeypatch):
    """On a CPU a long enough LeNet run compiles its forward pass; it trains as the eager pass does."""
    from adabench.core.problems import lenet as lenet_module

    specs = [RunSpec("lenet_sigmoid_fmnist", "adam", {"lr": 0.002}, seed, lenet_options(fake_fashion_mnist, epochs=1))
             for seed in range(2)]
    eager = train_population([(spec, tmp_path / "eager" / str(i)) for i, spec in enumerate(specs)], device="cpu",
                             log=QUIET)
    monkeypatch.setattr(lenet_module, "COMPILE_FROM_IMAGES", 1)
    assert make_problem("lenet_sigmoid_fmnist", lenet_options(fake_fashion_mnist), torch.device("cpu")).compiled
    compiled = train_population([(spec, tmp_path / "compiled" / str(i)) for i, spec in enumerate(specs)],
                                device="cpu", log=QUIET)
    for a, b in zip(compiled, eager):
        for metric in ("train_loss", "val_loss", "test_loss"):
            assert a["final"][metric] == pytest.approx(b["final"][metric], rel=1e-4), metric


class PlantedFailure(RuntimeError):
    """What the plug-in below raises: a bug of its own code, the same on every rerun."""


def failing_sgd(name: str, reshape: bool):
    """A plug-in SGD that breaks after ``fail_after`` steps: it raises, or (``reshape``) replaces a parameter by one
    of another shape."""
    from adabench.core.optim import CoordinateWiseOptimizer

    class FailingSGD(CoordinateWiseOptimizer):
        def __init__(self, params, lr: float = 0.05, fail_after: int = 1):
            super().__init__(params, {"lr": lr, "fail_after": fail_after})

        def _init_state(self, group, p):
            return {"step": 0}

        def _update(self, group, p):
            state = self.state[p]
            state["step"] += 1
            if state["step"] > group["fail_after"]:
                if not reshape:
                    raise PlantedFailure(f"planted failure at step {state['step']}")
                p.data = torch.cat([p.data, p.data], dim=-1)
                return
            p.add_(p.grad, alpha=-group["lr"])

        def _coordinate_steps(self, group, state):
            return torch.tensor([group["lr"]])

    if name not in OPTIMIZERS:
        OPTIMIZERS.register(name)(FailingSGD)


failing_sgd("fails_in_epoch_2", reshape=False)
failing_sgd("reshapes_in_epoch_2", reshape=True)


def test_an_optimizer_that_raises_fails_its_own_runs_and_its_siblings_end_as_alone(tmp_path):
    """A plug-in that raises (or reshapes a parameter) in epoch 2: its runs are recorded failed with the error and
    retired, the other members end bit for bit as they would alone, and a rerun trains nothing."""
    options = {"epochs": 3, "n_samples": 64}
    steps = math.ceil(make_problem("linreg", options, torch.device("cpu")).train_size / 32)  # one epoch
    broken = {"lr": 0.05, "fail_after": steps}
    specs = [RunSpec("linreg", "adam", {"lr": 0.05}, 0, options),
             RunSpec("linreg", "fails_in_epoch_2", broken, 0, options),
             RunSpec("linreg", "reshapes_in_epoch_2", broken, 1, options),
             RunSpec("linreg", "sgd", {"lr": 0.05}, 1, options)]
    together = run_linreg_population(specs, tmp_path / "pop")
    for i in (0, 3):
        alone = run_linreg_population([specs[i]], tmp_path / f"alone{i}")[0]
        assert together[i]["status"] == alone["status"] == "finished"
        pd.testing.assert_frame_equal(records(tmp_path / "pop", 4)[i], records(tmp_path / f"alone{i}", 1)[0],
                                      check_exact=True)
    raised, reshaped = together[1], together[2]
    assert raised["status"] == reshaped["status"] == "failed"
    assert re.fullmatch(rf"PlantedFailure: planted failure at step {steps + 1} \(at test_population\.py:\d+ in "
                        r"_update\)", raised["error"]), raised["error"]
    assert reshaped["error"] == ("the optimizer changed parameter 'weight' from (1, 2) float32 on cpu "
                                 "to (1, 4) float32 on cpu")
    for i, summary in ((1, raised), (2, reshaped)):
        assert summary["epochs_completed"] == 1 and read_summary(tmp_path / "pop" / str(i)) == summary
        assert list(pd.read_csv(tmp_path / "pop" / str(i) / "metrics.csv").epoch) == [1]
        assert not (tmp_path / "pop" / str(i) / "checkpoint.pt").exists()

    lines = []
    stamps = {path: path.stat().st_mtime_ns for path in (tmp_path / "pop").rglob("*") if path.name != ".lock"}
    again = train_population([(spec, tmp_path / "pop" / str(i)) for i, spec in enumerate(specs)], device="cpu",
                             log=lines.append)
    assert again == together and {path: path.stat().st_mtime_ns for path in stamps} == stamps
    assert sum("already failed, skipped" in line for line in lines) == 2, lines

    # the analysis counts them as failures: no final result to average
    rows = pd.DataFrame([run_row(summary, {"study"}) for summary in together])
    assert list(rows.outcome) == ["trained", "failed", "failed", "trained"]
    assert rows.final_headline.isna().tolist() == [False, True, True, False]
    assert failure_counts(rows, ["problem"])[["failed", "diverged", "seeds"]].values.tolist() == [[2, 0, 4]]
