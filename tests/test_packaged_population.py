"""Packaged optimizers (``module:Class``) in a population: each member with an instance of its own over leaves of
its own shapes trains bit for bit as it does alone, resumes as if never stopped, and fails on its own."""
from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd
import pytest
import torch
from test_population import QUIET, fake_fashion_mnist, lenet_options  # noqa: F401 - a fixture, used by name
from torch import nn
from training_helpers import StopAfter

from adabench.core.lone_run import lone_run
from adabench.core.optim import make_optimizer, packaged_optimizer
from adabench.core.packaged import define
from adabench.core.population import SectionTimer
from adabench.core.problems import make_problem
from adabench.core.problems.lenet import lenet
from adabench.core.records import CHECKPOINT, TIME_COLUMNS, read_summary
from adabench.core.runtime import Preempted
from adabench.core.spec import RunSpec
from adabench.core.trainer import PopulationTrainer, train_population

pytest.importorskip("prodigyopt")
pytest.importorskip("schedulefree")
pytest.importorskip("lion_pytorch")
pytest.importorskip("pytorch_optimizer")


class NoisySGD(torch.optim.SGD):
    """SGD plus Gaussian noise: a step that draws from torch's default generator (``draws_random``)."""

    def __init__(self, params, lr: float = 0.01, noise: float = 1e-3):
        super().__init__(params, lr=lr)
        for group in self.param_groups:
            group["noise"] = noise

    @torch.no_grad()
    def step(self, closure=None):
        loss = super().step(closure)
        for group in self.param_groups:
            for p in group["params"]:
                p.add_(torch.randn(p.shape), alpha=group["noise"])
        return loss


class FailsToEval(torch.optim.SGD):
    """SGD with train()/eval() whose eval() raises: a switch that fails its run."""

    def train(self):
        pass

    def eval(self):
        raise RuntimeError("planted failure switching to eval")


HERE = Path(__file__).stem  # the module the references below name (tests/ is on sys.path, as for training_helpers)
# a study's `packaged` alias: Muon over the LeNet's matrices (its linear layers), adam over biases and kernels
define({"muon_adam": {"optimizer": "torch.optim:Muon", "fallback": {"optimizer": "adam", "settings": {"lr": 0.001}}}})

CASES = [
    pytest.param(("torch.optim:NAdam", {"lr": 0.01}), id="NAdam"),
    pytest.param(("torch.optim:Adafactor", {"lr": 0.01}), id="Adafactor"),  # factored statistics of matrices
    pytest.param(("torch.optim:LBFGS", {"lr": 0.1, "max_iter": 3, "history_size": 5}), id="LBFGS"),  # closure
    pytest.param(("prodigyopt:Prodigy", {"lr": 1.0}), id="Prodigy"),  # d over all parameters, in its param_groups
    pytest.param(("schedulefree:AdamWScheduleFree", {"lr": 0.01}), id="schedulefree"),  # train()/eval()
    pytest.param(("lion_pytorch:Lion", {"lr": 1e-4}), id="lion_pytorch"),
    pytest.param(("pytorch_optimizer:Lion", {"lr": 1e-4}), id="pytorch_optimizer"),
    pytest.param((f"{HERE}:NoisySGD", {"lr": 0.05}), id="NoisySGD"),  # random draws
    pytest.param(("muon_adam", {"lr": 0.02}), id="Muon+adam"),  # a split: matrices to one, the rest to another
]


def small_lenet(data: Path, **extra) -> dict:
    """A LeNet on 160 training images (5 steps an epoch), evaluated on 100 + 100: seconds per run."""
    return lenet_options(data, train_subset=160, validation_size=100, test_subset=100, **extra)


def mixed(problem: str, optimizer: str, hyperparameters: dict, options: dict, registry=("adam", {"lr": 0.001})):
    """The optimizer's two seeds among two of a registry optimizer's (one stacked group), interleaved."""
    return [spec for seed in (0, 1) for spec in (RunSpec(problem, *registry, seed, options),
                                                 RunSpec(problem, optimizer, hyperparameters, seed, options))]


def train(specs: list[RunSpec], root: Path, **keywords) -> list[dict]:
    return train_population([(spec, root / str(i)) for i, spec in enumerate(specs)], device="cpu", log=QUIET,
                            **keywords)


def records(run_dir: Path) -> pd.DataFrame:
    return pd.read_csv(run_dir / "metrics.csv").drop(columns=TIME_COLUMNS)


@pytest.fixture(scope="module", params=CASES)
def lenet_population(request, fake_fashion_mnist, tmp_path_factory):  # noqa: F811 - the fixture imported above
    """A mixed LeNet population with the optimizer's two seeds, trained uninterrupted: (specs, root)."""
    optimizer, hyperparameters = request.param
    specs = mixed("lenet_sigmoid_fmnist", optimizer, hyperparameters, small_lenet(fake_fashion_mnist))
    root = tmp_path_factory.mktemp("population")
    summaries = train(specs, root)
    assert [summary["status"] for summary in summaries] == ["finished"] * len(specs)
    return specs, root


def test_a_packaged_optimizer_trains_a_lenet_in_a_population_as_alone(lenet_population, tmp_path):
    specs, root = lenet_population
    for i, spec in enumerate(specs):
        if i % 2 == 0:
            assert "eff_lr_median" in records(root / str(i)), "the registry's members report step sizes"
            continue
        train([spec], tmp_path / str(i))
        together, alone = records(root / str(i)), records(tmp_path / str(i) / "0")
        pd.testing.assert_frame_equal(together, alone, check_exact=True, obj=spec.key)
        assert not [name for name in together if name.startswith("eff_lr")], "it reports no step sizes"
        assert len(together) == 2 and together.notna().all().all()


def test_a_split_records_which_tensors_each_of_its_optimizers_took(lenet_population):
    specs, root = lenet_population
    summary = read_summary(root / "1")
    if specs[1].optimizer != "muon_adam":
        assert "optimizer_params" not in summary
        return
    assert summary["optimizer_params"] == {"torch.optim:Muon": ["7.weight", "9.weight", "11.weight"],
                                           "adam": ["0.weight", "0.bias", "3.weight", "3.bias", "7.bias", "9.bias",
                                                    "11.bias"]}
    assert summary["identity"]["package"]["fallback"] == {"optimizer": "adam", "hyperparameters": {"lr": 0.001},
                                                          "main_ndim": [2]}


def test_a_stopped_population_with_packaged_optimizers_resumes_bit_identically(lenet_population, tmp_path,
                                                                              stop_flag):
    """The checkpoint holds the whole state_dict (Prodigy's d in its param_groups, schedule-free's eval-mode x),
    and the generator of an optimizer that draws: the resumed records are the uninterrupted ones."""
    specs, root = lenet_population
    with pytest.raises(Preempted):
        train(specs, tmp_path, trackers=lambda spec: StopAfter(1))
    stop_flag.clear()
    for i, spec in enumerate(specs[1::2]):
        state = torch.load(tmp_path / str(2 * i + 1) / CHECKPOINT, weights_only=True)["optimizer"]
        # (a split's state_dict holds its two optimizers', under "main" and "fallback")
        parts = state["state_dict"].values() if "main" in state["state_dict"] else [state["state_dict"]]
        assert state["layout"] == "own" and all(part["param_groups"] for part in parts), spec.key
        assert (state["rng"] is not None) == packaged_optimizer(spec.optimizer).draws_random
    resumed = train(specs, tmp_path)
    assert [summary["resumed_from"] for summary in resumed] == [1] * len(specs)
    for i, spec in enumerate(specs):
        pd.testing.assert_frame_equal(records(tmp_path / str(i)), records(root / str(i)), check_exact=True,
                                      obj=spec.key)


@pytest.mark.parametrize("case", CASES)
def test_a_packaged_optimizer_trains_linreg_in_a_population_as_alone(case, tmp_path):
    """Linear regression passes every member at once: its own leaves join the stacked rows of the others."""
    optimizer, hyperparameters = case
    options = {"epochs": 3, "n_samples": 64}
    specs = mixed("linreg", optimizer, hyperparameters, options, registry=("adagrad", {"lr": 0.1}))
    together = train(specs, tmp_path / "pop")
    for i in range(len(specs)):
        alone = train([specs[i]], tmp_path / f"alone{i}")[0]
        assert together[i]["status"] == alone["status"] == "finished"
        pd.testing.assert_frame_equal(records(tmp_path / "pop" / str(i)), records(tmp_path / f"alone{i}" / "0"),
                                      check_exact=True, obj=specs[i].key)


@pytest.mark.parametrize("case", CASES)
def test_a_member_steps_as_a_lone_users_loop(case, fake_fashion_mnist, tmp_path):  # noqa: F811
    """The member's optimizer sees its parameters in their own shapes (a bias as [6], not a [1, 6] row Adafactor
    would factor), as in the reference loop (adabench.core.lone_run: a lone user's loop, whose optimizer draws from the
    seed as the member's does). Close, not equal: the population's channels_last convolutions are not
    nn.Conv2d's kernels, so the losses differ in their last bits."""
    optimizer, hyperparameters = case
    specs = [RunSpec("lenet_sigmoid_fmnist", optimizer, hyperparameters, 0, lenet_options(fake_fashion_mnist)),
             RunSpec("lenet_sigmoid_fmnist", "adam", {"lr": 0.001}, 1, lenet_options(fake_fashion_mnist))]
    population = PopulationTrainer([(spec, tmp_path / str(i), i) for i, spec in enumerate(specs)], "cpu", False, None,
                                   QUIET)
    own, stacked = population.model.groups
    reference = {name: value.shape for name, value in lenet(nn.Sigmoid).named_parameters()}
    assert own.own and {name: leaf.shape for name, leaf in own.leaves.items()} == reference
    # (a split's optimizers take the matrices first, then the rest)
    assert sorted(tuple(p.shape) for group in own.optimizer.param_groups for p in group["params"]) == \
        sorted(tuple(shape) for shape in reference.values())
    assert not stacked.own and stacked.leaves["0.bias"].shape == (1, 6)
    steps = 20
    orders = torch.stack([torch.randperm(population.problem.train_size, generator=member.generator)
                          for member in population.model.members])
    losses = torch.stack([population.model.train_batch(orders[:, step * 32:(step + 1) * 32],
                                                       SectionTimer(population.device))[0].detach()
                          for step in range(steps)], dim=1)
    # Muon's Newton-Schulz iterations amplify those last bits of the gradients: 6e-5 apart after 18 steps
    torch.testing.assert_close(losses[0], torch.tensor(lone_run(specs[0], max_steps=steps).losses),
                               rtol=1e-4 if packaged_optimizer(optimizer).fallback else 1e-5, atol=0)


def test_schedule_free_records_its_eval_mode_weights(tmp_path):
    """Schedule-free trains at y and evaluates at x (eval()): the records are x's, computed here by hand."""
    options = {"epochs": 1, "n_samples": 128}
    spec = RunSpec("linreg", "schedulefree:AdamWScheduleFree", {"lr": 0.05}, 0, options)
    train([spec, RunSpec("linreg", "adam", {"lr": 0.05}, 0, options)], tmp_path)
    recorded = records(tmp_path / "0").iloc[-1]

    problem = make_problem("linreg", options, torch.device("cpu"))
    torch.manual_seed(spec.seed)
    model = nn.Linear(2, 1)
    optimizer = make_optimizer(spec.optimizer, model.parameters(), spec.hyperparameters)
    optimizer.train()
    order = torch.randperm(problem.train_size, generator=torch.Generator().manual_seed(spec.seed))
    for start in range(0, problem.train_size, 32):
        batch = order[start:start + 32]
        loss = (model(problem.features[batch]).squeeze(1) - problem.targets[batch]).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    def weights_and_mse() -> torch.Tensor:
        with torch.no_grad():
            mse = (model(problem.features).squeeze(1) - problem.targets).pow(2).mean()
        return torch.cat([model.weight.detach().reshape(-1), model.bias.detach(), mse.reshape(1)]).double()

    at_y = weights_and_mse()
    optimizer.eval()
    at_x = weights_and_mse()
    got = torch.tensor([recorded.w1, recorded.w2, recorded.b, recorded.train_mse], dtype=torch.float64)
    torch.testing.assert_close(got, at_x, rtol=1e-5, atol=0)
    # and not y's: each value a hundred times further from y's than the tolerance above
    assert ((got - at_y).abs() > 1e-3 * at_y.abs()).all(), (got, at_y)


def test_an_optimizer_that_fails_to_build_or_switch_fails_its_own_run(tmp_path):
    """A constructor that refuses (NAdam's negative lr, which the config check would have refused) and an eval()
    that raises: those runs end failed with the error, with no epoch recorded; their siblings end as alone."""
    options = {"epochs": 3, "n_samples": 64}
    specs = [RunSpec("linreg", "adam", {"lr": 0.05}, 0, options),
             RunSpec("linreg", "torch.optim:NAdam", {"lr": -1.0}, 0, options),
             RunSpec("linreg", f"{HERE}:FailsToEval", {"lr": 0.05}, 1, options),
             RunSpec("linreg", "torch.optim:NAdam", {"lr": 0.05}, 1, options)]
    together = train(specs, tmp_path / "pop")
    for i in (0, 3):
        train([specs[i]], tmp_path / f"alone{i}")
        assert together[i]["status"] == "finished"
        pd.testing.assert_frame_equal(records(tmp_path / "pop" / str(i)), records(tmp_path / f"alone{i}" / "0"),
                                      check_exact=True)
    built, switched = together[1], together[2]
    assert built["status"] == switched["status"] == "failed"
    assert re.fullmatch(r"ValueError: Invalid learning rate: -1\.0 \(at \w+\.py:\d+ in __init__\) \(building it\)",
                        built["error"]), built["error"]
    assert re.fullmatch(r"RuntimeError: planted failure switching to eval \(at test_packaged_population\.py:\d+ in "
                        r"eval\) \(switching to eval\)", switched["error"]), switched["error"]
    for i, summary in ((1, built), (2, switched)):
        assert summary["epochs_completed"] == 0 and read_summary(tmp_path / "pop" / str(i)) == summary
        assert not (tmp_path / "pop" / str(i) / CHECKPOINT).exists()


def test_a_stacked_layout_checkpoint_of_an_own_optimizer_is_refused_with_what_to_do(tmp_path, stop_flag):
    spec = RunSpec("linreg", "torch.optim:NAdam", {"lr": 0.05}, 0, {"epochs": 2, "n_samples": 64})
    with pytest.raises(Preempted):
        train([spec], tmp_path, trackers=lambda spec: StopAfter(1))
    stop_flag.clear()
    path = tmp_path / "0" / CHECKPOINT
    checkpoint = torch.load(path, weights_only=True)
    # as a population stacked it before: per parameter index, its per-member and shared entries
    checkpoint["optimizer"] = {index: {"per_member": {}, "shared": dict(entries)}
                               for index, entries in checkpoint["optimizer"]["state_dict"]["state"].items()}
    torch.save(checkpoint, path)
    with pytest.raises(RuntimeError, match=r"stacked layout .* delete .*checkpoint\.pt to train it from scratch"):
        train([spec], tmp_path)
    assert math.isfinite(records(tmp_path / "0").train_mse.iloc[-1])  # its records are left as they were
