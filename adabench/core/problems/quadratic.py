"""The reference report's two-dimensional quadratics (exercise 2): axis-aligned and rotated by 45 degrees."""
from __future__ import annotations

import torch
from torch import nn

from .base import PROBLEMS, Params, Problem, tensors_digest


class Point(nn.Module):
    def __init__(self, start: list[float]):
        super().__init__()
        self.x = nn.Parameter(torch.tensor(start, dtype=torch.float64))


class Quadratic(Problem):
    """f(x) = 1/2 x^T Q x, minimised at x* = 0 with f* = 0; full batch, float64, one row per step.

    ``objective`` takes a stack of points [K, 2] and gives each one's value [K].
    """

    unit = "step"
    headline = ("loss", "min")
    selection = ("loss", "min")
    log_scale = frozenset({"loss", "gap", "dist_to_opt"})
    figures = ("trajectories",)
    trajectory = ("x1", "x2")  # the columns the trajectories figure draws a path through
    records_initial_state = True
    hessian: tuple[tuple[float, float], tuple[float, float]]  # f = 1/2 x^T H x: the figure's contours
    figure_declarations = ("trajectory", "hessian")
    # f >= f* = 0 (Q is positive definite) and a distance >= 0: a CI of a mean near 0 stops there
    metric_bounds = {"loss": (0.0, None), "gap": (0.0, None), "dist_to_opt": (0.0, None)}

    def __init__(self, device: torch.device, steps: int = 20, start: tuple[float, float] = (2.0, 1.0)):
        super().__init__(device, epochs=steps)
        self.start = [float(v) for v in start]
        # no data: the objective is all there is, so its Hessian stands for it
        self.data_digest = tensors_digest({"hessian": torch.tensor(self.hessian, dtype=torch.float64)})

    def objective(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def build_model(self) -> nn.Module:
        return Point(self.start).to(self.device)

    def batch_losses(self, params: Params, indices) -> tuple[torch.Tensor, dict]:
        return self.objective(params["x"]), {}

    @torch.no_grad()
    def evaluate(self, params: Params) -> dict[str, torch.Tensor]:
        x = params["x"]
        loss = self.objective(x).cpu()
        return {"x1": x[:, 0].cpu(), "x2": x[:, 1].cpu(), "loss": loss, "gap": loss, "dist_to_opt": x.norm(dim=1).cpu()}


@PROBLEMS.register("quadratic")
class AxisAlignedQuadratic(Quadratic):
    """f = 0.1 x1^2 + 2 x2^2: the curvature follows the axes, as AdaGrad's diagonal preconditioner does."""

    hessian = ((0.2, 0.0), (0.0, 4.0))

    def objective(self, x):
        return 0.1 * x[:, 0] ** 2 + 2 * x[:, 1] ** 2


@PROBLEMS.register("quadratic_rotated")
class RotatedQuadratic(Quadratic):
    """f = 0.1 (x1 + x2)^2 + 2 (x1 - x2)^2: the same bowl rotated by 45 degrees, off the axes."""

    hessian = ((4.2, -3.6), (-3.6, 4.2))

    def objective(self, x):
        return 0.1 * (x[:, 0] + x[:, 1]) ** 2 + 2 * (x[:, 0] - x[:, 1]) ** 2
