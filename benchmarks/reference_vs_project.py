"""Training throughput of the sigmoid LeNet on Fashion-MNIST: the reference report's pipeline against adabench's.

(a) the report's way: torchvision's FashionMNIST with ToTensor, a shuffling DataLoader (batch 256) and the
    report's from-scratch AdaGrad, a Python class looping over the parameters;
(b) the project's way: a run trained by adabench's own loop (a population of one, adabench.core.population):
    ``lenet_sigmoid_fmnist``'s resident uint8 tensors, batches as index slices, the network in channels_last and
    (a full-length run on a CPU) its forward pass compiled, and the registry's AdaGrad.
Both train the same network (layer for layer the reference report's) with the same threads. Each
warms up a few batches; then N batches of each are timed, in alternating rounds so that other load on a
shared machine falls on both alike. Prints images/s of each (the median round, and the range) and the
ratio project / report.

Run from the repository root: .venv/bin/python benchmarks/reference_vs_project.py [--batches 100] [--threads 2]
"""
from __future__ import annotations

import argparse
import gzip
import itertools
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

import torch
from torch import nn

from adabench.core.download import DATA_FILE, FASHION_MNIST_FILES
from adabench.core.population import SectionTimer
from adabench.core.problems.lenet import lenet
from adabench.core.spec import RunSpec
from adabench.core.trainer import PopulationTrainer

BATCH_SIZE = 256
LR = 0.01
LABELS = {"report": "torchvision + DataLoader + from-scratch AdaGrad",
          "project": "adabench's training loop (resident tensors, channels_last, compiled)"}

Batches = Iterator[tuple[torch.Tensor, torch.Tensor]]
TrainStep = Callable[[torch.Tensor, torch.Tensor], None]


class ReportAdagrad:
    """The reference report's from-scratch AdaGrad (section 4 and exercise 5), as written there."""

    def __init__(self, params, lr=0.1, eps=1e-8):
        self.params = list(params)
        self.lr = lr
        self.eps = eps
        self.state = [torch.zeros_like(p.data) for p in self.params]

    @torch.no_grad()
    def step(self):
        for p, s in zip(self.params, self.state):
            if p.grad is None:
                continue
            g = p.grad
            s.add_(g * g)
            p.add_(-self.lr * g / (torch.sqrt(s) + self.eps))

    def zero_grad(self):
        for p in self.params:
            if p.grad is not None:
                p.grad.zero_()


def report_pipeline(raw_source: Path) -> tuple[TrainStep, Batches]:
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    with tempfile.TemporaryDirectory() as root:
        # with no network, torchvision must find the decompressed files under root/FashionMNIST/raw
        raw = Path(root) / "FashionMNIST" / "raw"
        raw.mkdir(parents=True)
        for filename, _ in FASHION_MNIST_FILES.values():
            (raw / filename.removesuffix(".gz")).write_bytes(gzip.decompress((raw_source / filename).read_bytes()))
        dataset = datasets.FashionMNIST(root, train=True, download=False, transform=transforms.ToTensor())
    loader = DataLoader(dataset, batch_size=BATCH_SIZE, shuffle=True)
    model = lenet(nn.Sigmoid)
    optimizer = ReportAdagrad(model.parameters(), lr=LR)
    criterion = nn.CrossEntropyLoss()
    running = {"loss": 0.0, "correct": 0}

    def train_step(images, labels):
        optimizer.zero_grad()
        outputs = model(images)
        loss = criterion(outputs, labels)
        loss.backward()
        optimizer.step()
        # the reference report's per-batch statistics, .item() and all
        running["loss"] += loss.item() * images.size(0)
        running["correct"] += (outputs.argmax(dim=1) == labels).sum().item()

    return train_step, itertools.chain.from_iterable(itertools.repeat(loader))


def project_pipeline(data_file: Path) -> tuple[TrainStep, Batches]:
    spec = RunSpec("lenet_sigmoid_fmnist", "adagrad", {"lr": LR, "eps": 1e-8}, 0, {"data_file": str(data_file)})
    population = PopulationTrainer([(spec, Path(tempfile.mkdtemp()) / "run", 0)], "cpu", False, None, lambda line: None)
    problem = population.problem
    totals = {"loss": torch.zeros(1, dtype=torch.float64)}
    timer = SectionTimer(population.device)

    def train_step(indices, labels):
        # the loop body of PopulationModel.train_epoch: statistics stay tensors, no per-batch sync
        losses, _ = population.model.train_batch(indices.unsqueeze(0), timer)
        totals["loss"] += losses.detach().double() * len(labels)

    def batches():
        generator = torch.Generator().manual_seed(0)
        n = problem.train_size
        while True:
            order = torch.randperm(n, generator=generator)
            for start in range(0, n, BATCH_SIZE):
                batch = order[start:start + BATCH_SIZE]
                yield batch, problem.train_labels[batch]

    return train_step, batches()


def run_batches(train_step: TrainStep, batches: Batches, count: int) -> tuple[int, float]:
    """Images trained on and seconds taken for the next ``count`` batches (fetching them included)."""
    images = 0
    start = time.perf_counter()
    for inputs, labels in itertools.islice(batches, count):
        train_step(inputs, labels)
        images += len(labels)
    return images, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=100, help="timed batches per pipeline")
    parser.add_argument("--warmup", type=int, default=5, help="untimed batches per pipeline first")
    parser.add_argument("--rounds", type=int, default=10, help="alternations between the pipelines")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--raw-dir", type=Path, default=Path("/usr/share/datasets/fashion-mnist"),
                        help="the four Fashion-MNIST .gz files (for the reference report's torchvision pipeline)")
    parser.add_argument("--data-file", type=Path, default=Path(DATA_FILE),
                        help="the prepared tensors (python -m adabench data)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    pipelines = {"report": report_pipeline(args.raw_dir), "project": project_pipeline(args.data_file)}
    for train_step, batches in pipelines.values():
        run_batches(train_step, batches, args.warmup)
    rates: dict[str, list[float]] = {name: [] for name in pipelines}
    per_round, extra = divmod(args.batches, args.rounds)
    for count in (per_round + (i < extra) for i in range(args.rounds)):
        for name, (train_step, batches) in pipelines.items():
            images, seconds = run_batches(train_step, batches, count)
            rates[name].append(images / seconds)
    # the median round: a burst of other work on a shared machine moves it less than the mean
    median = {name: statistics.median(values) for name, values in rates.items()}

    print(f"threads {args.threads}, batch {BATCH_SIZE}, {args.batches} timed batches each "
          f"in {args.rounds} alternating rounds, after {args.warmup} warm-up; images/s, median round (range)")
    for name, label in LABELS.items():
        print(f"{f'{name} ({label}):':60s} {median[name]:7.0f}  ({min(rates[name]):.0f}-{max(rates[name]):.0f})")
    print(f"ratio project / report: {median['project'] / median['report']:.2f}")


if __name__ == "__main__":
    main()
