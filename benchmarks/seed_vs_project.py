"""Training throughput of the sigmoid LeNet on Fashion-MNIST: the seed's pipeline against the project's.

(a) the seed's way: torchvision's FashionMNIST with ToTensor, a shuffling DataLoader (batch 256) and the
    seed's from-scratch AdaGrad, a Python class looping over the parameters;
(b) the project's way: ``lenet_sigmoid_fmnist``'s resident uint8 tensors, batches as index slices, and
    ``make_optimizer("adagrad")``.
Both train the same network (adabench's ``lenet``, layer for layer the seed's) with the same threads; each
warms up a few batches, then times N. Prints images/s of each and the ratio project / seed.

Run from the repository root: .venv/bin/python benchmarks/seed_vs_project.py [--batches 100] [--threads 2]
"""
from __future__ import annotations

import argparse
import gzip
import itertools
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # adabench from this checkout

from adabench.data import FASHION_MNIST_FILES  # noqa: E402
from adabench.optim import make_optimizer  # noqa: E402
from adabench.problems import make_problem  # noqa: E402
from adabench.problems.lenet import lenet, to_pixels  # noqa: E402

BATCH_SIZE = 256
LR = 0.01


class SeedAdagrad:
    """The seed's from-scratch AdaGrad (section 4 and exercise 5), kept as written there."""

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


def timed_batches(train_step, batches, warmup: int, timed: int) -> float:
    """Images per second of ``train_step`` over ``timed`` batches after ``warmup`` untimed ones."""
    for images, labels in itertools.islice(batches, warmup):
        train_step(images, labels)
    seen = 0
    start = time.perf_counter()
    for images, labels in itertools.islice(batches, timed):
        train_step(images, labels)
        seen += len(labels)
    return seen / (time.perf_counter() - start)


def seed_way(raw_source: Path, warmup: int, timed: int) -> float:
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    with tempfile.TemporaryDirectory() as root:
        # torchvision finds the decompressed files under root/FashionMNIST/raw (no download without a network)
        raw = Path(root) / "FashionMNIST" / "raw"
        raw.mkdir(parents=True)
        for filename, _ in FASHION_MNIST_FILES.values():
            (raw / filename.removesuffix(".gz")).write_bytes(gzip.decompress((raw_source / filename).read_bytes()))
        dataset = datasets.FashionMNIST(root, train=True, download=False, transform=transforms.ToTensor())
    loader = DataLoader(dataset, batch_size=BATCH_SIZE, shuffle=True)
    model = lenet(nn.Sigmoid)
    optimizer = SeedAdagrad(model.parameters(), lr=LR)
    criterion = nn.CrossEntropyLoss()
    running = {"loss": 0.0, "correct": 0}

    def train_step(images, labels):
        optimizer.zero_grad()
        outputs = model(images)
        loss = criterion(outputs, labels)
        loss.backward()
        optimizer.step()
        # the seed's per-batch statistics, synchronised with .item() as it does
        running["loss"] += loss.item() * images.size(0)
        running["correct"] += (outputs.argmax(dim=1) == labels).sum().item()

    epochs = itertools.chain.from_iterable(itertools.repeat(loader))
    return timed_batches(train_step, epochs, warmup, timed)


def project_way(data_file: Path, warmup: int, timed: int) -> float:
    problem = make_problem("lenet_sigmoid_fmnist", {"data_file": str(data_file)}, torch.device("cpu"))
    model = problem.build_model()
    optimizer = make_optimizer("adagrad", model.parameters(), {"lr": LR, "eps": 1e-8})
    totals = {"loss": torch.zeros((), dtype=torch.float64), "correct": torch.zeros((), dtype=torch.int64)}

    def train_step(images, labels):
        # the loop of FashionMNISTLeNet.train_epoch: statistics stay tensors, no per-batch sync
        logits = model(to_pixels(images))
        loss = nn.functional.cross_entropy(logits, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        totals["loss"] += loss.detach().double() * len(labels)
        totals["correct"] += (logits.detach().argmax(dim=1) == labels).sum()

    def batches():
        generator = torch.Generator().manual_seed(0)
        n = len(problem.train_labels)
        while True:
            order = torch.randperm(n, generator=generator)
            for start in range(0, n, BATCH_SIZE):
                batch = order[start:start + BATCH_SIZE]
                yield problem.train_images[batch], problem.train_labels[batch]

    return timed_batches(train_step, batches(), warmup, timed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=100, help="timed batches per pipeline")
    parser.add_argument("--warmup", type=int, default=5, help="untimed batches first")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--raw-dir", type=Path, default=Path("/usr/share/datasets/fashion-mnist"),
                        help="the four Fashion-MNIST .gz files (for the seed's torchvision pipeline)")
    parser.add_argument("--data-file", type=Path, default=Path("results/data/fashion_mnist.pt"),
                        help="prepared tensors (python -m adabench data)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    seed = seed_way(args.raw_dir, args.warmup, args.batches)
    torch.manual_seed(0)
    project = project_way(args.data_file, args.warmup, args.batches)
    print(f"threads {args.threads}, batch {BATCH_SIZE}, {args.batches} timed batches after {args.warmup} warm-up")
    print(f"seed    (torchvision + DataLoader + from-scratch AdaGrad): {seed:10.0f} images/s")
    print(f"project (resident uint8 tensors + registry AdaGrad):       {project:10.0f} images/s")
    print(f"ratio project / seed: {project / seed:.2f}")


if __name__ == "__main__":
    main()
