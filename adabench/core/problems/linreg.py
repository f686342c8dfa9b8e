"""The reference report's linear regression (section 4): y = 2 x1 - 3.4 x2 + 4.2, nn.Linear(2, 1), MSE."""
from __future__ import annotations

import torch
from torch import nn

from ..arguments import Bound
from .base import PROBLEMS, Params, Problem, tensors_digest

DTYPES = {"float32": torch.float32, "float64": torch.float64}


@PROBLEMS.register("linreg")
class LinearRegression(Problem):
    headline = ("train_mse", "min")
    selection = ("train_mse", "min")
    log_scale = frozenset({"train_mse", "train_loss", "w_error", "b_error"})
    bounds = {"n_samples": Bound(1, 100_000_000)}
    # squared errors and distances cannot be negative: a CI of a mean near 0 stops there
    metric_bounds = {"train_mse": (0.0, None), "w_error": (0.0, None), "b_error": (0.0, None)}

    def __init__(self, device: torch.device, epochs: int = 100, n_samples: int = 1000, batch_size: int = 32,
                 true_w: tuple[float, float] = (2.0, -3.4), true_b: float = 4.2, noise: float = 0.0,
                 data_seed: int = 0, dtype: str = "float32"):
        super().__init__(device, epochs)
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
        self.dtype = DTYPES[dtype]
        self.batch_size = int(batch_size)
        self.train_size = int(n_samples)
        data_rng = torch.Generator().manual_seed(int(data_seed))
        self.true_w = torch.tensor(true_w, dtype=self.dtype)
        self.true_b = float(true_b)
        features = torch.randn(int(n_samples), 2, generator=data_rng, dtype=self.dtype)
        targets = features @ self.true_w + self.true_b + noise * torch.randn(int(n_samples), generator=data_rng, dtype=self.dtype)
        self.data_digest = tensors_digest({"features": features, "targets": targets})
        self.features = features.to(device)
        self.targets = targets.to(device)

    def build_model(self) -> nn.Module:
        return nn.Linear(2, 1).to(self.device, self.dtype)

    @staticmethod
    def predict(params: Params, features: torch.Tensor) -> torch.Tensor:
        """[K, n] predictions of K linear models for per-member features [K, n, 2] (or shared [n, 2])."""
        weight, bias = params["weight"], params["bias"]  # [K, 1, 2], [K, 1]
        if features.dim() == 2:
            features = features.expand(weight.shape[0], *features.shape)
        return torch.baddbmm(bias.unsqueeze(1), features, weight.transpose(1, 2)).squeeze(2)

    def batch_losses(self, params: Params, indices: torch.Tensor) -> tuple[torch.Tensor, dict]:
        errors = self.predict(params, self.features[indices]) - self.targets[indices]
        return errors.pow(2).mean(dim=1), {}

    @torch.no_grad()
    def evaluate(self, params: Params) -> dict[str, torch.Tensor]:
        mse = (self.predict(params, self.features) - self.targets).pow(2).mean(dim=1)
        w = params["weight"].detach().reshape(-1, 2).cpu()
        b = params["bias"].detach().reshape(-1).cpu()
        return {
            "train_mse": mse.cpu().double(),
            "w1": w[:, 0].double(),
            "w2": w[:, 1].double(),
            "b": b.double(),
            "w_error": (w - self.true_w).norm(dim=1).double(),
            "b_error": (b.double() - self.true_b).abs(),
        }
