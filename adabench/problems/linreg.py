"""The seed's linear regression (section 4): y = 2 x1 - 3.4 x2 + 4.2, nn.Linear(2, 1), MSE."""
from __future__ import annotations

import torch
from torch import nn

from .base import PROBLEMS, Problem, minibatch_epoch

DTYPES = {"float32": torch.float32, "float64": torch.float64}


@PROBLEMS.register("linreg")
class LinearRegression(Problem):
    headline = ("train_mse", "min")
    selection = ("train_mse", "min")

    def __init__(self, device: torch.device, epochs: int = 100, n_samples: int = 1000, batch_size: int = 32,
                 true_w: tuple[float, float] = (2.0, -3.4), true_b: float = 4.2, noise: float = 0.0,
                 data_seed: int = 0, dtype: str = "float32"):
        super().__init__(device, epochs)
        self.dtype = DTYPES[dtype]
        self.batch_size = int(batch_size)
        data_rng = torch.Generator().manual_seed(int(data_seed))
        self.true_w = torch.tensor(true_w, dtype=self.dtype)
        self.true_b = float(true_b)
        features = torch.randn(int(n_samples), 2, generator=data_rng, dtype=self.dtype)
        targets = features @ self.true_w + self.true_b + noise * torch.randn(int(n_samples), generator=data_rng, dtype=self.dtype)
        self.features = features.to(device)
        self.targets = targets.unsqueeze(1).to(device)

    def build_model(self) -> nn.Module:
        return nn.Linear(2, 1).to(self.device, self.dtype)

    def train_epoch(self, model, optimizer, generator) -> dict:
        def batch_loss(batch):
            return nn.functional.mse_loss(model(self.features[batch]), self.targets[batch])

        return {"train_loss": minibatch_epoch(optimizer, generator, len(self.targets), self.batch_size, self.device,
                                              batch_loss)}

    @torch.no_grad()
    def evaluate(self, model) -> dict:
        mse = nn.functional.mse_loss(model(self.features), self.targets).item()
        w = model.weight.detach().reshape(-1).cpu()
        b = model.bias.detach().item()
        return {
            "train_mse": mse,
            "w1": w[0].item(),
            "w2": w[1].item(),
            "b": b,
            "w_error": (w - self.true_w).norm().item(),
            "b_error": abs(b - self.true_b),
        }
