"""Population against serial training: images per second of K LeNet runs trained one after another, and of the
same K runs trained as one population, measured side by side in alternating rounds of one process (the machine's
load then weighs on both alike), for K = 1, 4, 8, 16, 32. Then, at one K, the formulations a population could
use, and bf16 autocast against fp32.

Both ways go through adabench's own training code (adabench.core.trainer.PopulationTrainer: its forward pass, its
optimizer step), on the same batches: serial is a population of one, K times over.

Run from the repository root (the real Fashion-MNIST if prepared, else random images of its shape):
    .venv/bin/python benchmarks/population_vs_serial.py [--device cpu|cuda] [--threads N] [--rounds 3]

Formulations compared (at --formulation-k members), against adabench's own (the population's network: grouped
convolutions and batched matrix products in channels_last, on a CPU one member per pass, on a GPU all at once):
- grouped-passes-of-4: four members per pass;
- grouped-one-pass: every member in one pass;
- grouped-nchw: adabench's passes in the default NCHW layout;
- vmap: torch.func.vmap over one LeNet's functional forward, every member in one pass;
- compiled: adabench's passes with the forward under torch.compile (compile time reported apart; a CPU compiles
  full-length LeNet runs).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn
from torch.func import functional_call, vmap

from adabench.core.data import save_prepared
from adabench.core.download import DATA_FILE
from adabench.core.population import SectionTimer
from adabench.core.problems import lenet as lenet_module
from adabench.core.spec import RunSpec
from adabench.core.trainer import PopulationTrainer

QUIET = lambda line: None  # noqa: E731


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--problem", default="lenet_sigmoid_fmnist")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 4, 8, 16, 32])
    parser.add_argument("--steps", type=int, default=12, help="batches per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per comparison")
    parser.add_argument("--threads", type=int, help="CPU threads for torch")
    parser.add_argument("--formulation-k", type=int, default=8)
    parser.add_argument("--data-file", default=DATA_FILE)
    parser.add_argument("--skip", nargs="*", default=[], choices=["sizes", "formulations", "precision"])
    return parser.parse_args(argv)


def data_file(path: str, scratch: Path) -> str:
    if Path(path).exists():
        return path
    generator = torch.Generator().manual_seed(0)
    fake = scratch / "fashion_mnist.pt"
    save_prepared({"train_images": torch.randint(0, 256, (60000, 28, 28), dtype=torch.uint8, generator=generator),
                   "train_labels": torch.randint(0, 10, (60000,), dtype=torch.uint8, generator=generator),
                   "test_images": torch.randint(0, 256, (10000, 28, 28), dtype=torch.uint8, generator=generator),
                   "test_labels": torch.randint(0, 10, (10000,), dtype=torch.uint8, generator=generator)}, fake)
    print(f"({path} not prepared: random images of Fashion-MNIST's shape)")
    return str(fake)


class Bench:
    def __init__(self, args, data: str, scratch: Path):
        self.args, self.data, self.scratch = args, data, scratch
        self.device = args.device

    def specs(self, k: int, precision: str = "fp32") -> list[RunSpec]:
        return [RunSpec(self.args.problem, "adam", {"lr": 0.001}, seed, {"data_file": self.data, "epochs": 1},
                        precision) for seed in range(k)]

    def population(self, specs: list[RunSpec]) -> PopulationTrainer:
        runs = [(spec, self.scratch / "runs" / spec.key, i) for i, spec in enumerate(specs)]
        return PopulationTrainer(runs, self.device, False, None, QUIET)

    def sync(self):
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()

    def steps(self, population: PopulationTrainer, steps: int) -> float:
        """Seconds for ``steps`` training steps of a population (after one step of warm-up)."""
        n, batch = population.problem.train_size, population.problem.batch_size
        orders = torch.stack([torch.randperm(n, generator=torch.Generator().manual_seed(m.spec.seed))
                              for m in population.model.members]).to(population.device)

        timer = SectionTimer(population.device)

        def step(index):
            start = (index * batch) % (n - batch)
            population.model.train_batch(orders[:, start:start + batch], timer)

        step(0)
        self.sync()
        tick = time.perf_counter()
        for index in range(1, steps + 1):
            step(index)
        self.sync()
        return time.perf_counter() - tick

    def images_per_second(self, make, k: int) -> float:
        """Images per second of ``make()``'s populations (a list), together ``k`` runs."""
        populations = make()
        batch = populations[0].problem.batch_size
        seconds = sum(self.steps(population, self.args.steps) for population in populations)
        return k * batch * self.args.steps / seconds


def paired(bench: Bench, first, second, k: int) -> tuple[list[float], list[float]]:
    """Alternating rounds of two ways to train k runs: images/s of each, round by round."""
    a, b = [], []
    for _ in range(bench.args.rounds):
        a.append(bench.images_per_second(first, k))
        b.append(bench.images_per_second(second, k))
    return a, b


def report(name: str, baseline: str, a: list[float], b: list[float]) -> None:
    ratios = [y / x for x, y in zip(a, b)]
    print(f"{name:<34} {baseline:>10} {statistics.median(a):>10,.0f}   {statistics.median(b):>10,.0f} img/s   "
          f"ratio {statistics.median(ratios):.2f} (rounds: {', '.join(f'{r:.2f}' for r in ratios)})")


def sizes(bench: Bench) -> None:
    print(f"\nK runs one after another (serial) against one population of K, {bench.device}:")
    for k in bench.args.sizes:
        specs = bench.specs(k)
        serial = lambda: [bench.population([spec]) for spec in specs]  # noqa: E731
        together = lambda: [bench.population(specs)]  # noqa: E731
        a, b = paired(bench, serial, together, k)
        report(f"K = {k}", "serial", a, b)


def formulations(bench: Bench) -> None:
    k = bench.args.formulation_k
    specs = bench.specs(k)
    print(f"\nFormulations of a population of {k}, {bench.device} (ratio against adabench's):")

    def grouped():
        return [bench.population(specs)]

    def passes(size):
        def make():
            population = bench.population(specs)
            population.model.members_per_pass = size
            return [population]

        return make

    def forward(function):
        def make():
            population = bench.population(specs)
            population.problem.forward = function  # the LeNet's forward pass (see FashionMNISTLeNet.logits)
            return [population]

        return make

    compiled_logits = torch.compile(lenet_module.population_logits, dynamic=False)
    tick = time.perf_counter()
    indices = torch.stack([torch.arange(256)] * k).to(bench.device)
    forward(compiled_logits)()[0].batch_losses(indices)  # compiles the forward pass for this batch shape
    compile_s = time.perf_counter() - tick

    adabench_rates = []
    for name, make in (("grouped-passes-of-4", passes(4)), ("grouped-one-pass", passes(k)),
                       ("grouped-nchw", forward(nchw_logits)), ("compiled", forward(compiled_logits))):
        a, b = paired(bench, grouped, make, k)
        report(name, "adabench", a, b)
        adabench_rates += a
    baseline = statistics.median(adabench_rates)
    print(f"{'adabench':<34} {'':>10} {baseline:>10,.0f} img/s   (compiling the pass took {compile_s:.0f} s for one "
          "batch shape, its backward pass at the first step)")
    vmap_rate = vmap_images_per_second(bench, k)
    print(f"{'vmap':<34} {'':>10} {vmap_rate:>10,.0f} img/s   ratio {vmap_rate / baseline:.2f} (one round)")


def nchw_logits(params, images, activation):
    return lenet_module.population_logits(params, images, activation, torch.contiguous_format)


def lenet_batch(problem, indices):
    images = problem.train_images[indices].unsqueeze(2).float().div(255)  # [K, B, 1, 28, 28]
    return images, problem.train_labels[indices]


def vmap_images_per_second(bench: Bench, k: int) -> float:
    population = bench.population(bench.specs(k))
    problem = population.problem
    template = problem.build_model()
    leaves = population.model.groups[0].leaves
    optimizer = population.model.groups[0].optimizer

    def member_loss(params, images, labels):
        return nn.functional.cross_entropy(functional_call(template, params, (images,)), labels)

    batched = vmap(member_loss)
    n, batch = problem.train_size, problem.batch_size
    orders = torch.stack([torch.randperm(n) for _ in range(k)]).to(population.device)
    tick = None
    for step in range(bench.args.steps + 1):
        if step == 1:
            bench.sync()
            tick = time.perf_counter()
        images, labels = lenet_batch(problem, orders[:, step * batch:(step + 1) * batch])
        loss = batched(leaves, images, labels).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    bench.sync()
    return k * batch * bench.args.steps / (time.perf_counter() - tick)


def precision(bench: Bench) -> None:
    k = bench.args.formulation_k
    print(f"\nfp32 against bf16 autocast, a population of {k}, {bench.device}:")
    fp32 = lambda: [bench.population(bench.specs(k, "fp32"))]  # noqa: E731
    bf16 = lambda: [bench.population(bench.specs(k, "bf16"))]  # noqa: E731
    a, b = paired(bench, fp32, bf16, k)
    report("bf16 autocast", "fp32", a, b)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as scratch:
        bench = Bench(args, data_file(args.data_file, Path(scratch)), Path(scratch))
        cpu = torch.device(args.device).type == "cpu"
        print(f"torch {torch.__version__}, {args.device}, {torch.get_num_threads()} threads, {args.problem}, batch 256, "
              f"{args.steps} steps per measurement, {args.rounds} alternating rounds"
              + (f", members per pass on a CPU: {lenet_module.CPU_MEMBERS_PER_PASS}" if cpu else ""))
        if cpu:
            print("(1-epoch runs are too short to compile their pass: adabench's rows are eager, as a quick study's)")
        if "sizes" not in args.skip:
            sizes(bench)
        if "formulations" not in args.skip:
            formulations(bench)
        if "precision" not in args.skip:
            precision(bench)
    return 0


if __name__ == "__main__":
    sys.exit(main())
