"""The optimizers against the reference report's hand computation, torch.optim.Adagrad and their own formulas."""
from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from torch import nn

from adabench.core.optim import (OPTIMIZERS, adagrad_denominator, adagrad_rate, adagrad_step_sizes, adagrad_update,
                                 make_optimizer, sqrt_decay_rate, step_size_summary)

REPORT_EPS = 1e-8  # the reference report's from-scratch AdaGrad adds 1e-8 after the square root


@pytest.mark.parametrize("dtype, rel", [(torch.float64, 1e-12), (torch.float32, 1e-6)], ids=["float64", "float32"])
def test_seed_hand_computed_linreg_step(reference_results, dtype, rel):
    reference = reference_results["linreg_one_step"]
    model = nn.Linear(2, 1).to(dtype)
    nn.init.zeros_(model.weight)
    nn.init.zeros_(model.bias)
    lr = 0.1
    optimizer = make_optimizer("adagrad", model.parameters(), {"lr": lr, "eps": REPORT_EPS})
    features = torch.tensor(reference["X_batch"], dtype=dtype)
    targets = torch.tensor(reference["y_batch"], dtype=dtype).unsqueeze(1)

    loss = nn.functional.mse_loss(model(features), targets)
    loss.backward()
    optimizer.step()

    assert loss.item() == pytest.approx(reference["loss"], rel=rel)
    assert model.weight.grad.reshape(-1).tolist() == pytest.approx(reference["grad_w"], rel=rel)
    assert model.bias.grad.item() == pytest.approx(reference["grad_b"], rel=rel)
    accumulators = optimizer.state[model.weight]["sum"].reshape(-1).tolist()
    assert accumulators == pytest.approx(reference["accumulator_w"], rel=rel)
    assert optimizer.state[model.bias]["sum"].item() == pytest.approx(reference["accumulator_b"], rel=rel)
    # The reference report's hand step leaves eps out (every |g| / sqrt(s) is exactly 1); put back, it moves the step by
    # a relative 1e-9 (a float32 rounding hides it).
    grads = [*reference["grad_w"], reference["grad_b"]]
    sums = [*reference["accumulator_w"], reference["accumulator_b"]]
    expected = [-lr * g / (math.sqrt(s) + REPORT_EPS) for g, s in zip(grads, sums)]
    assert expected == pytest.approx([*reference["w_after"], reference["b_after"]], rel=1e-8)
    assert [*model.weight.reshape(-1).tolist(), model.bias.item()] == pytest.approx(expected, rel=rel)


def random_mlp(generator: torch.Generator):
    """A small tanh network and an MSE loss on random data."""
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=generator))
    inputs, targets = torch.randn(16, 5, generator=generator), torch.randn(16, 3, generator=generator)
    return list(model.parameters()), lambda: nn.functional.mse_loss(model(inputs), targets)


def random_least_squares(generator: torch.Generator, dtype=torch.float32):
    """One weight vector w and the loss mean((A w - b)^2) on random A, b."""
    a, b = torch.randn(12, 4, generator=generator, dtype=dtype), torch.randn(12, generator=generator, dtype=dtype)
    w = nn.Parameter(torch.randn(4, generator=generator, dtype=dtype))
    return [w], lambda: ((a @ w - b) ** 2).mean()


PROBLEMS = {"mlp": random_mlp, "least_squares": random_least_squares}


def least_squares_float64(generator: torch.Generator):
    return random_least_squares(generator, torch.float64)


def trajectory(build, seed: int, make, steps: int = 6) -> list[list[torch.Tensor]]:
    """The parameters after each of ``steps`` steps of the optimizer ``make(params)`` on ``build``'s problem."""
    params, loss_fn = build(torch.Generator().manual_seed(seed))
    optimizer = make(params)
    visited = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss_fn().backward()
        optimizer.step()
        visited.append([p.detach().clone() for p in params])
    return visited


@pytest.mark.parametrize("problem", sorted(PROBLEMS))
@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("hyperparameters", [
    {"lr": 0.01},
    {"lr": 0.5, "eps": 1e-3},
    {"lr": 0.1, "lr_decay": 0.05},
    {"lr": 0.1, "initial_accumulator_value": 0.3},
    {"lr": 0.05, "weight_decay": 0.01, "lr_decay": 0.1, "initial_accumulator_value": 0.1, "eps": 1e-6},
])
def test_adagrad_matches_torch_bitwise(problem, foreach, hyperparameters):
    build = PROBLEMS[problem]
    ours = trajectory(build, 7, lambda params: make_optimizer("adagrad", params, hyperparameters))
    theirs = trajectory(build, 7, lambda params: torch.optim.Adagrad(params, foreach=foreach, **hyperparameters))
    for step, (a, b) in enumerate(zip(ours, theirs), start=1):
        assert all(torch.equal(x, y) for x, y in zip(a, b)), f"differs at step {step}"


class FormulaSteps:
    """Applies ``update(w, g, t)`` (t = 1, 2, ...) to each parameter: an update formula as an optimizer."""

    def __init__(self, params, update):
        self.params, self.update, self.t = params, update, 0

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self):
        self.t += 1
        for p in self.params:
            p.copy_(self.update(p, p.grad, self.t))


def adagrad_avg_update(lr: float, eps: float):
    """s += g^2; p -= lr * g / sqrt(s / t + eps) (the reference report's exercise 6, method 1)."""
    sums = 0.0

    def update(w, g, t):
        nonlocal sums
        sums = sums + g * g
        return w - lr * g / torch.sqrt(sums / t + eps)

    return update


def sgd_sqrt_decay_update(lr: float, c: float):
    """p -= lr / sqrt(t' + c) * g with t' the updates made before this one (the reference report's section 1)."""
    return lambda w, g, t: w - lr / math.sqrt(t - 1 + c) * g


@pytest.mark.parametrize("name, formula, hyperparameters", [
    ("adagrad_avg", adagrad_avg_update, {"lr": 0.1, "eps": 1e-8}),
    ("adagrad_avg", adagrad_avg_update, {"lr": 0.3, "eps": 1e-2}),
    ("sgd_sqrt_decay", sgd_sqrt_decay_update, {"lr": 0.1, "c": 1.0}),
    ("sgd_sqrt_decay", sgd_sqrt_decay_update, {"lr": 0.2, "c": 4.0}),
])
def test_variant_follows_its_formula(name, formula, hyperparameters):
    ours = trajectory(least_squares_float64, 3, lambda params: make_optimizer(name, params, hyperparameters))
    by_formula = trajectory(least_squares_float64, 3, lambda params: FormulaSteps(params, formula(**hyperparameters)))
    for step, ((w,), (expected,)) in enumerate(zip(ours, by_formula), start=1):
        torch.testing.assert_close(w, expected, rtol=1e-13, atol=1e-15, msg=f"step {step}")


@pytest.mark.parametrize("eps_inside_sqrt, denominator", [
    (False, lambda s, eps: s.sqrt() + eps),
    (True, lambda s, eps: (s + eps).sqrt()),
])
def test_adagrad_step_sizes_are_lr_over_root_of_sum(eps_inside_sqrt, denominator):
    # five coordinates, so the median is one of them whichever convention is used
    model = nn.Linear(4, 1).double()
    lr, eps = 0.2, 1e-3
    hyperparameters = {"lr": lr, "eps": eps, "eps_inside_sqrt": eps_inside_sqrt}
    optimizer = make_optimizer("adagrad", model.parameters(), hyperparameters)
    assert step_size_summary(optimizer) == {}
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):
        optimizer.zero_grad()
        inputs = torch.randn(8, 4, generator=generator, dtype=torch.float64)
        model(inputs).pow(2).mean().backward()
        optimizer.step()

    sums = torch.cat([optimizer.state[p]["sum"].reshape(-1) for p in model.parameters()])
    expected = (lr / denominator(sums, eps)).numpy()
    np.testing.assert_allclose(optimizer.effective_step_sizes().numpy().reshape(-1), expected, rtol=1e-15)
    summary = step_size_summary(optimizer)
    assert summary == pytest.approx(
        {"eff_lr_min": expected.min(), "eff_lr_median": np.median(expected), "eff_lr_max": expected.max()}, rel=1e-15)
    assert summary["eff_lr_min"] < summary["eff_lr_max"]  # per-coordinate rates, not one


@pytest.mark.parametrize("name", ["adagrad", "adagrad_avg", "sgd_sqrt_decay"])
def test_state_dict_round_trip_continues_identically(name):
    hyperparameters = {"lr": 0.05}

    def setup():
        params, loss_fn = random_mlp(torch.Generator().manual_seed(11))
        return params, loss_fn, make_optimizer(name, params, hyperparameters)

    def train(params, loss_fn, optimizer, steps):
        for _ in range(steps):
            optimizer.zero_grad()
            loss_fn().backward()
            optimizer.step()

    params, loss_fn, optimizer = setup()
    train(params, loss_fn, optimizer, 3)
    saved = io.BytesIO()
    torch.save({"params": [p.detach() for p in params], "optimizer": optimizer.state_dict()}, saved)
    train(params, loss_fn, optimizer, 4)

    saved.seek(0)
    checkpoint = torch.load(saved, weights_only=True)
    restored, restored_loss_fn, restored_optimizer = setup()
    with torch.no_grad():
        for p, value in zip(restored, checkpoint["params"]):
            p.copy_(value)
    restored_optimizer.load_state_dict(checkpoint["optimizer"])
    train(restored, restored_loss_fn, restored_optimizer, 4)
    assert all(torch.equal(a, b) for a, b in zip(params, restored))


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_unknown_hyperparameter_is_named(name):
    with pytest.raises(ValueError, match="learning_rate"):
        make_optimizer(name, [nn.Parameter(torch.zeros(2))], {"lr": 0.1, "learning_rate": 0.1})


def test_the_functional_core_computes_adagrads_rate_denominators_and_step_sizes_exactly():
    """The numbers the classes call for (chosen to be exact in binary floating point)."""
    assert adagrad_rate(0.1, 0.0, 7) == 0.1 and adagrad_rate(0.1, 0.5, 3) == 0.1 / 2
    state_sum = torch.tensor([4.0, 16.0])
    assert adagrad_denominator(state_sum, 2, 0.0, "outside").tolist() == [2.0, 4.0]
    assert adagrad_denominator(state_sum, 2, 0.5, "outside").tolist() == [2.5, 4.5]
    assert adagrad_denominator(torch.tensor([4.0, 11.0]), 2, 5.0, "inside").tolist() == [3.0, 4.0]
    assert adagrad_denominator(state_sum, 4, 0.0, "averaged").tolist() == [1.0, 2.0]  # sqrt(s / t)
    assert state_sum.tolist() == [4.0, 16.0]  # never changed
    assert adagrad_step_sizes(state_sum, 1, lr=1.0, lr_decay=0.0, eps=0.0, form="outside").tolist() == [0.5, 0.25]
    with pytest.raises(ValueError, match="unknown denominator 'median'"):
        adagrad_denominator(state_sum, 1, 0.0, "median")
    assert sqrt_decay_rate(0.5, 1.0, 15) == 0.125


def test_an_adagrad_update_moves_each_coordinate_by_its_reported_step_size():
    param, grad = torch.tensor([1.0, -2.0]), torch.tensor([0.5, 4.0])
    state_sum = torch.tensor([0.75, 0.0])
    adagrad_update(param, grad, state_sum, 1, lr=1.0, lr_decay=0.0, eps=0.0, weight_decay=0.0, form="outside")
    assert state_sum.tolist() == [1.0, 16.0]  # s += g * g
    sizes = adagrad_step_sizes(state_sum, 1, lr=1.0, lr_decay=0.0, eps=0.0, form="outside")
    assert param.tolist() == (torch.tensor([1.0, -2.0]) - sizes * grad).tolist() == [0.5, -3.0]
