"""The seed's LeNets on Fashion-MNIST (exercises 5-6), with the images resident as tensors.

A batch is an index slice of a tensor already on the training device: no per-sample Python
transform, no DataLoader workers. Pixels are scaled to [0, 1] as ToTensor does, with no normalisation.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .base import PROBLEMS, Problem, classification_metrics, minibatch_epoch

EVAL_BATCH = 2048


def lenet(activation: type[nn.Module]) -> nn.Sequential:
    """LeNet-5 as in D2L 7.6 and the seed: conv(1->6, 5, pad 2) / pool / conv(6->16, 5) / pool / 400-120-84-10."""
    return nn.Sequential(
        nn.Conv2d(1, 6, kernel_size=5, padding=2), activation(), nn.AvgPool2d(kernel_size=2, stride=2),
        nn.Conv2d(6, 16, kernel_size=5), activation(), nn.AvgPool2d(kernel_size=2, stride=2),
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120), activation(),
        nn.Linear(120, 84), activation(),
        nn.Linear(84, 10),
    )


def to_pixels(images: torch.Tensor) -> torch.Tensor:
    return images.unsqueeze(1).float().div_(255)


class FashionMNISTLeNet(Problem):
    headline = ("test_acc", "max")
    selection = ("val_acc", "max")
    activation: type[nn.Module]

    def __init__(self, device: torch.device, epochs: int = 20, batch_size: int = 256,
                 data_file: str = "results/data/fashion_mnist.pt", validation_size: int = 5000, split_seed: int = 0,
                 train_subset: int | None = None, test_subset: int | None = None):
        super().__init__(device, epochs)
        self.batch_size = int(batch_size)
        path = Path(data_file)
        if not path.exists():
            raise FileNotFoundError(
                f"{path} does not exist: prepare Fashion-MNIST first (snakemake prepare_fashion_mnist, or "
                f"python -m adabench data --out {path})")
        data = torch.load(path, weights_only=True)
        split = torch.randperm(len(data["train_labels"]), generator=torch.Generator().manual_seed(int(split_seed)))
        validation, train = split[:validation_size], split[validation_size:]
        if train_subset is not None:
            train = train[:train_subset]
        test = slice(None) if test_subset is None else slice(0, test_subset)
        # stored as uint8 (a quarter of the memory); scaled per batch on the device
        self.train_images = data["train_images"][train].to(device)
        self.train_labels = data["train_labels"][train].long().to(device)
        self.val_images = data["train_images"][validation].to(device)
        self.val_labels = data["train_labels"][validation].long().to(device)
        self.test_images = data["test_images"][test].to(device)
        self.test_labels = data["test_labels"][test].long().to(device)

    def build_model(self) -> nn.Module:
        return lenet(self.activation).to(self.device)

    def train_epoch(self, model, optimizer, generator) -> dict:
        n = len(self.train_labels)
        correct = torch.zeros((), device=self.device, dtype=torch.int64)

        def batch_loss(batch):
            nonlocal correct
            logits = model(to_pixels(self.train_images[batch]))
            labels = self.train_labels[batch]
            # running accuracy over the epoch's batches, as the seed prints it; kept on the device
            correct += (logits.detach().argmax(dim=1) == labels).sum()
            return nn.functional.cross_entropy(logits, labels)

        loss = minibatch_epoch(optimizer, generator, n, self.batch_size, self.device, batch_loss)
        return {"train_loss": loss, "train_acc": correct / n}

    @torch.no_grad()
    def evaluate(self, model) -> dict:
        metrics = {}
        if len(self.val_labels):
            metrics.update(classification_metrics(model, self.val_images, self.val_labels, EVAL_BATCH, "val", to_pixels))
        metrics.update(classification_metrics(model, self.test_images, self.test_labels, EVAL_BATCH, "test", to_pixels))
        return metrics


@PROBLEMS.register("lenet_sigmoid_fmnist")
class SigmoidLeNet(FashionMNISTLeNet):
    activation = nn.Sigmoid


@PROBLEMS.register("lenet_relu_fmnist")
class ReLULeNet(FashionMNISTLeNet):
    activation = nn.ReLU
