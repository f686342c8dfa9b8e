"""The problem interface: data, model, loss and metrics of one benchmark task."""
from __future__ import annotations

import torch
from torch import nn

from ..registry import Registry, keyword_arguments

PROBLEMS: Registry["Problem"] = Registry("problem")


class Problem:
    """A benchmark task. Subclasses set the class attributes and implement the three methods.

    ``unit`` names the row index of the records ("epoch", or "step" for full-batch problems).
    ``headline`` is the metric the comparison tables report, ``selection`` the one a tuning protocol
    may choose on (never a test metric), each as (column, "max" | "min").
    """

    unit = "epoch"
    headline: tuple[str, str] = ("train_loss", "min")
    selection: tuple[str, str] = ("train_loss", "min")
    records_initial_state = False  # the full-batch problems also record the point before the first step

    def __init__(self, device: torch.device, epochs: int):
        self.device = device
        self.epochs = int(epochs)

    def build_model(self) -> nn.Module:
        """A freshly initialised model; called right after the run's seed is set."""
        raise NotImplementedError

    def train_epoch(self, model: nn.Module, optimizer: torch.optim.Optimizer, generator: torch.Generator) -> dict:
        """One pass (or one step); returns train metrics, with ``train_loss`` as a 0-d tensor or float."""
        raise NotImplementedError

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict:
        """Metrics of the current model that do not need gradients (test and validation sets)."""
        return {}


def minibatch_epoch(optimizer: torch.optim.Optimizer, generator: torch.Generator, n: int, batch_size: int,
                    device: torch.device, batch_loss) -> torch.Tensor:
    """One shuffled pass over n samples in minibatches; ``batch_loss(indices)`` gives a batch's mean loss.

    Returns the epoch's mean training loss as a 0-d tensor left on the device: no synchronisation per batch.
    The order is drawn on the CPU generator, so it is the same on every device.
    """
    order = torch.randperm(n, generator=generator).to(device)
    total = torch.zeros((), device=device, dtype=torch.float64)
    for start in range(0, n, batch_size):
        batch = order[start:start + batch_size]
        loss = batch_loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += loss.detach().double() * len(batch)
    return total / n


def problem_options(name: str) -> dict:
    """The options a problem accepts from the config, with their defaults."""
    return keyword_arguments(PROBLEMS.get(name), skip=("device",))


def make_problem(name: str, options: dict, device: torch.device) -> Problem:
    accepted = problem_options(name)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(f"problem {name!r} has no option(s) {unknown}; accepted: {sorted(accepted)}")
    return PROBLEMS.get(name)(device=device, **options)


def classification_metrics(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, batch_size: int,
                           prefix: str, prepare=lambda x: x) -> dict:
    """Mean cross-entropy and accuracy of a classifier over a resident dataset, in batches."""
    model.eval()
    total_loss = torch.zeros((), device=labels.device, dtype=torch.float64)
    correct = torch.zeros((), device=labels.device, dtype=torch.int64)
    for start in range(0, len(labels), batch_size):
        logits = model(prepare(inputs[start:start + batch_size]))
        target = labels[start:start + batch_size]
        total_loss += nn.functional.cross_entropy(logits, target, reduction="sum").double()
        correct += (logits.argmax(dim=1) == target).sum()
    model.train()
    n = len(labels)
    return {f"{prefix}_loss": total_loss.item() / n, f"{prefix}_acc": correct.item() / n}
