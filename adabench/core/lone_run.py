"""The reference training loop: one run of a LeNet on Fashion-MNIST, alone, in plain PyTorch, top to bottom.

This file is the specification of what a run computes. The benchmark never trains this way: it trains many runs at
once as one vectorised model (core.population, driven by core.trainer), which is faster but harder to read.
The tests prove each member of a population equal to this loop (tests/test_population.py,
tests/test_packaged_population.py): the same initial weights and batch orders exactly, and the same losses and
metrics epoch by epoch to within the last bits of float32 (the population's convolutions are in channels_last,
grouped on a GPU, its linear layers batched matrix products: other kernels than nn.Conv2d's and nn.Linear's). Read
this file to know what a number in the tables means; read the population to know how it was computed fast.

What a run is: the prepared Fashion-MNIST tensors (adabench.core.data), a validation split drawn with ``split_seed``,
the seed's initial weights, the optimizer's own class on ``model.parameters()``, one epoch = one pass over the
training images in the seed's batch order, then the validation and test sets evaluated. A run whose metrics turn
non-finite stops there as diverged.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from .data import load_prepared
from .download import DATA_FILE
from .optim import make_optimizer, optimizer_traits
from .problems.lenet import lenet
from .spec import RunSpec

ACTIVATIONS = {"lenet_sigmoid_fmnist": nn.Sigmoid, "lenet_relu_fmnist": nn.ReLU}


@dataclass
class LoneRun:
    initial: dict[str, torch.Tensor]  # the weights before the first step, by parameter name ("0.weight", ...)
    orders: list[torch.Tensor] = field(default_factory=list)  # each epoch's batch order over the training images
    losses: list[float] = field(default_factory=list)  # each step's training loss (the batch's mean)
    epochs: list[dict] = field(default_factory=list)  # each epoch's metrics, as a record's rows hold them
    status: str = "finished"  # or "diverged"


def train_lenet_alone(activation: type[nn.Module], optimizer_name: str, hyperparameters: dict, seed: int, *,
                      epochs: int = 20, batch_size: int = 256, data_file: str = DATA_FILE, validation_size: int = 0,
                      split_seed: int = 0, train_subset: int | None = None, test_subset: int | None = None,
                      max_steps: int | None = None, device: str = "cpu") -> LoneRun:
    """One run of a LeNet (the problem's options as keywords, their defaults the problem's); ``max_steps`` ends it
    before its step ``max_steps + 1`` (0: before the first; a test compares the first steps)."""
    # --- the data: 60,000 training images, ``validation_size`` of them held out at random, 10,000 test images
    # (written out here, not taken from the problem class: this loop is the check of what that class does)
    data = load_prepared(data_file)
    split = torch.randperm(len(data["train_labels"]), generator=torch.Generator().manual_seed(split_seed))
    validation, train = split[:validation_size], split[validation_size:]
    if train_subset is not None:
        train = train[:train_subset]
    test = slice(None) if test_subset is None else slice(0, test_subset)
    train_images, train_labels = data["train_images"][train].to(device), data["train_labels"][train].long().to(device)
    sets = {"val": (data["train_images"][validation].to(device), data["train_labels"][validation].long().to(device)),
            "test": (data["test_images"][test].to(device), data["test_labels"][test].long().to(device))}

    def pixels(images: torch.Tensor) -> torch.Tensor:  # uint8 [n, 28, 28] -> float [n, 1, 28, 28] in [0, 1]
        return images.unsqueeze(1).float() / 255

    # --- the model: the seed's initial weights (PyTorch's default initialisation after torch.manual_seed)
    torch.manual_seed(seed)
    model = lenet(activation).to(device)
    run = LoneRun(initial={name: value.detach().clone() for name, value in model.named_parameters()})

    # --- the optimizer: its own class on the model's parameters. Whatever it draws at random starts from the seed
    # too (not from wherever the initialisation left the generator); schedule-free optimizers switch between
    # train() and eval() with the model; LBFGS steps with a closure, as its documentation asks
    torch.manual_seed(seed)
    optimizer = make_optimizer(optimizer_name, model.parameters(), hyperparameters)
    needs_closure, has_modes, _ = optimizer_traits(optimizer_name)

    # --- the epochs: each a pass over the training images in an order drawn from a generator seeded with the seed
    order_generator = torch.Generator().manual_seed(seed)
    n = len(train_labels)
    for epoch in range(1, epochs + 1):
        model.train()
        if has_modes:
            optimizer.train()
        order = torch.randperm(n, generator=order_generator).to(device)
        run.orders.append(order)
        loss_sum, correct = 0.0, 0
        for start in range(0, n, batch_size):
            if max_steps is not None and len(run.losses) == max_steps:
                return run
            batch = order[start:start + batch_size]
            images, labels = pixels(train_images[batch]), train_labels[batch]

            optimizer.zero_grad()
            logits = model(images)
            loss = F.cross_entropy(logits, labels)
            loss.backward()
            if needs_closure:
                def closure():  # LBFGS evaluates the loss again at the points it tries
                    optimizer.zero_grad()
                    again = F.cross_entropy(model(images), labels)
                    again.backward()
                    return again

                optimizer.step(closure)
            else:
                optimizer.step()
            run.losses.append(loss.item())
            loss_sum += run.losses[-1] * len(batch)
            correct += (logits.argmax(dim=1) == labels).sum().item()  # the running accuracy, as the seed prints it
        row = {"epoch": epoch, "train_loss": loss_sum / n, "train_acc": correct / n}

        # --- evaluation: the mean cross-entropy and the accuracy on the validation and test images
        model.eval()
        if has_modes:
            optimizer.eval()  # schedule-free evaluates at its averaged weights
        with torch.no_grad():
            for name, (images, labels) in sets.items():
                if len(labels):
                    logits = model(pixels(images))
                    losses = F.cross_entropy(logits, labels, reduction="none").double()
                    row[f"{name}_loss"] = losses.sum().item() / len(labels)
                    row[f"{name}_acc"] = (logits.argmax(dim=1) == labels).sum().item() / len(labels)
        run.epochs.append(row)
        if not all(math.isfinite(value) for value in row.values()):
            run.status = "diverged"
            break
    return run


def lone_run(spec: RunSpec, **keywords) -> LoneRun:
    """A LeNet run of the benchmark (its spec) trained by the reference loop, in float32."""
    if spec.precision != "fp32":
        raise ValueError(f"the reference loop trains in fp32, not {spec.precision} ({spec.key})")
    return train_lenet_alone(ACTIVATIONS[spec.problem], spec.optimizer, spec.hyperparameters, spec.seed,
                             **spec.problem_options, **keywords)
