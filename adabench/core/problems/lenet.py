"""The reference report's LeNets on Fashion-MNIST (exercises 5-6), with the images resident as tensors.

A batch is an index slice of a tensor already on the training device: no per-sample Python
transform, no DataLoader workers. Pixels are scaled to [0, 1] as ToTensor does, with no normalisation.

A population of K LeNets runs as one network: the two convolutions become grouped convolutions with K
groups (member k's images in input channel k), in channels_last, the fastest layout on both CPU and GPU
(benchmarks/population_vs_serial.py), and the three linear layers become batched matrix products.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..data import load_prepared
from ..download import DATA_FILE
from ..arguments import Bound
from .base import PROBLEMS, Params, Problem, stacked_classification_metrics, tensors_digest

# images a forward pass of the evaluation handles at once, over all members
EVAL_IMAGES = 4096
# On a CPU a population passes its members through the network one at a time: then each member computes exactly
# what it computes alone (same kernels, same shapes), bit for bit, and the population still shares one optimizer
# step per group and saves each run's process start-up and data loading. Grouped passes of 4 members measured
# 1.0-1.4x faster per image on the 2-core VM (benchmarks/population_vs_serial.py), but their results differ from
# a run's alone in the last bits, which a ReLU network amplifies: a run's numbers would depend on its companions.
CPU_MEMBERS_PER_PASS = 1
# On a CPU, torch.compile makes one member's pass faster (benchmarks/population_vs_serial.py) but costs seconds per
# batch shape to compile: worth it from this many training images per run (epochs x images) on. The full LeNet
# (20 x 55,000) compiles; the quick study and the tests do not. A GPU runs eagerly (not measured there yet).
COMPILE_FROM_IMAGES = 200_000


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


def compiled_or_eager(function, log=print):
    """``function`` under torch.compile, falling back to ``function`` itself for good if compiling fails (a
    machine without a C++ compiler, say): a slower run, never a failed one."""
    compiled = torch.compile(function, dynamic=False)
    chosen = [compiled]

    def call(*arguments):
        if chosen[0] is compiled:
            try:
                return compiled(*arguments)
            except Exception as error:  # noqa: BLE001 - whatever inductor raises, eager still works
                log(f"WARNING: torch.compile failed ({type(error).__name__}: {str(error)[:200]}); running eagerly")
                chosen[0] = function
        return function(*arguments)

    return call


def population_logits(params: Params, images: torch.Tensor, activation, memory_format=torch.channels_last) -> torch.Tensor:
    """[K, B, 10]: the logits of K LeNets, for per-member images [K, B, 28, 28] or shared ones [B, 28, 28] (uint8).

    ``params`` are the stacked parameters of ``lenet()`` (names "0.weight" ... "11.bias", each [K, *shape]).
    """
    k = params["0.weight"].shape[0]
    if images.dim() == 3:  # every member sees the same images: one input channel, K x 6 filters over it
        x, first_groups = images.unsqueeze(1), 1
    else:
        x, first_groups = images.transpose(0, 1), k
    x = x.float().div_(255).contiguous(memory_format=memory_format)
    batch = x.shape[0]
    h = F.conv2d(x, params["0.weight"].reshape(k * 6, 1, 5, 5), params["0.bias"].reshape(-1), padding=2,
                 groups=first_groups)
    h = F.avg_pool2d(activation(h), 2)
    h = F.conv2d(h, params["3.weight"].reshape(k * 16, 6, 5, 5), params["3.bias"].reshape(-1), groups=k)
    h = F.avg_pool2d(activation(h), 2)
    # member k's 16 x 5 x 5 features, flattened in nn.Flatten's (channel, row, column) order
    h = h.reshape(batch, k, 400).transpose(0, 1)
    for layer in ("7", "9"):
        h = activation(torch.baddbmm(params[f"{layer}.bias"].unsqueeze(1), h, params[f"{layer}.weight"].transpose(1, 2)))
    return torch.baddbmm(params["11.bias"].unsqueeze(1), h, params["11.weight"].transpose(1, 2))


class FashionMNISTLeNet(Problem):
    headline = ("test_acc", "max")
    selection = ("val_acc", "max")
    bounds = {"validation_size": Bound(0, 59_999), "train_subset": Bound(1, 60_000), "test_subset": Bound(1, 10_000)}
    # the report trained on all 60,000 images; the tuning grid chooses on 5,000 of them held out
    holdout_options = {"validation_size": 5000}
    metric_bounds = {"train_acc": (0.0, 1.0), "val_acc": (0.0, 1.0), "test_acc": (0.0, 1.0)}
    # Fashion-MNIST's ten classes are balanced (6,000 training and 1,000 test images each), so a network that learned
    # nothing -- a constant prediction -- scores 1/10 on each split (the validation split, 5,000 images drawn at
    # random from the training set, within about 0.004 of it)
    chance = {"train_acc": 0.1, "val_acc": 0.1, "test_acc": 0.1}
    activation: type[nn.Module]
    functional_activation = None

    def __init__(self, device: torch.device, epochs: int = 20, batch_size: int = 256,
                 data_file: str = DATA_FILE, validation_size: int = 0, split_seed: int = 0,
                 train_subset: int | None = None, test_subset: int | None = None):
        super().__init__(device, epochs)
        self.batch_size = int(batch_size)
        data = load_prepared(data_file)
        self.data_digest = tensors_digest(data)
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
        self.train_size = len(self.train_labels)
        self.compiled = device.type == "cpu" and self.epochs * self.train_size >= COMPILE_FROM_IMAGES
        self.forward = compiled_or_eager(population_logits) if self.compiled else population_logits

    def build_model(self) -> nn.Module:
        return lenet(self.activation).to(self.device)

    def members_per_pass(self, device: torch.device) -> int | None:
        # a GPU takes the whole population in one pass: the kernel launches, not the arithmetic, bound a LeNet there
        return CPU_MEMBERS_PER_PASS if device.type == "cpu" else None

    def logits(self, params: Params, images: torch.Tensor) -> torch.Tensor:
        return self.forward(params, images, type(self).functional_activation)

    def batch_losses(self, params: Params, indices: torch.Tensor) -> tuple[torch.Tensor, dict]:
        logits = self.logits(params, self.train_images[indices]).float()
        labels = self.train_labels[indices]
        k, b, classes = logits.shape
        losses = F.cross_entropy(logits.reshape(k * b, classes), labels.reshape(-1), reduction="none").reshape(k, b)
        # running accuracy over the epoch's batches, as the seed prints it; kept on the device
        correct = (logits.detach().argmax(dim=2) == labels).sum(dim=1)
        return losses.mean(dim=1), {"train_acc": correct}

    @torch.no_grad()
    def evaluate(self, params: Params) -> dict[str, torch.Tensor]:
        chunk = max(64, EVAL_IMAGES // params["0.weight"].shape[0])
        metrics = {}
        for prefix, images, labels in (("val", self.val_images, self.val_labels),
                                       ("test", self.test_images, self.test_labels)):
            if len(labels):
                metrics.update(stacked_classification_metrics(lambda x: self.logits(params, x), images, labels,
                                                              chunk, prefix))
        return metrics


@PROBLEMS.register("lenet_sigmoid_fmnist")
class SigmoidLeNet(FashionMNISTLeNet):
    activation = nn.Sigmoid
    functional_activation = torch.sigmoid


@PROBLEMS.register("lenet_relu_fmnist")
class ReLULeNet(FashionMNISTLeNet):
    activation = nn.ReLU
    functional_activation = torch.relu
