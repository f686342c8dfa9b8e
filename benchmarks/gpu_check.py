"""GPU check: the reference report's four LeNet configurations on Fashion-MNIST, trained two ways by adabench's own
training loop, on one device:
- serial: each run alone, one after another (a population of one);
- population: all runs of a problem at once, as one vectorised model (the workflow's way).

Each configuration runs with seeds 0..N-1 for 20 epochs at batch 256 (the report's protocol). Per configuration
and path it prints the seconds per epoch of one run (serial: its own; population: its share of the population's
epoch) and of the whole population's epoch, and the final test accuracy (mean +- std over seeds, ddof 1, and
min / max), then the environment as ``adabench.core.runtime.environment`` reports it (GPU name, driver, CUDA / cuDNN,
torch). Writes the same numbers to OUT/gpu_check.csv and OUT/gpu_check.json (with each run's numbers); the run
directories (metrics.csv, summary.json) go under OUT/runs/<device>/<path>/. A finished run found there is reused,
an interrupted one resumed.

Run from the repository root:
    .venv/bin/python benchmarks/gpu_check.py [--device cuda] [--deterministic] [--out results/gpu_check]
Smoke test on CPU:
    .venv/bin/python benchmarks/gpu_check.py --device cpu --epochs 1 --seeds 2 --train-subset 512 --test-subset 256
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import pandas as pd
import torch

from adabench.core.download import DATA_FILE
from adabench.study.reference import load_reference
from adabench.core.runtime import configure_determinism, environment, resolve_device
from adabench.core.spec import RunSpec
from adabench.core.trainer import train_population

ENVIRONMENT_COLUMNS = ["device", "device_name", "cuda_driver", "cuda", "cudnn", "torch", "deterministic"]
PATHS = ("serial", "population")


def configurations() -> list[tuple[str, str, dict]]:
    """The reference report's LeNet runs, as config/reference_results.yaml gives them."""
    return [(run.problem, run.optimizer, run.hyperparameters) for run in load_reference("config/reference_results.yaml")
            if run.problem.startswith("lenet")]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    parser.add_argument("--deterministic", action="store_true", help="deterministic GPU algorithms")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "tf32"])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--train-subset", type=int, help="train on the first N training images only")
    parser.add_argument("--test-subset", type=int, help="test on the first N test images only")
    parser.add_argument("--data-file", default=DATA_FILE, help="prepared Fashion-MNIST")
    parser.add_argument("--threads", type=int, help="CPU threads for torch")
    parser.add_argument("--out", type=Path, default=Path("results/gpu_check"))
    return parser.parse_args(argv)


def problem_options(args: argparse.Namespace) -> dict:
    options = {"epochs": args.epochs, "batch_size": args.batch_size, "validation_size": 5000,
               "data_file": str(args.data_file)}
    for name in ("train_subset", "test_subset"):
        if getattr(args, name) is not None:
            options[name] = getattr(args, name)
    return options


def spread(values: list[float], prefix: str) -> dict:
    return {f"{prefix}_mean": statistics.fmean(values),
            f"{prefix}_std": statistics.stdev(values) if len(values) > 1 else None,
            f"{prefix}_min": min(values), f"{prefix}_max": max(values)}


def quiet(line: str) -> None:
    print(line, file=sys.stderr)


def train(path: str, specs: list[RunSpec], args, runs_root: Path) -> list[dict]:
    """Train ``specs`` the ``path`` way (one at a time, or a population per problem); each run's summary."""
    batches = [[spec] for spec in specs] if path == "serial" else [
        [spec for spec in specs if spec.problem == problem] for problem in dict.fromkeys(s.problem for s in specs)]
    found = []
    for batch in batches:
        found += train_population([(spec, runs_root / path / spec.key) for spec in batch], device=args.device,
                                  deterministic=args.deterministic, log=quiet)
    return found


def rows_of(path: str, summaries: list[dict], env: dict) -> tuple[list[dict], list[dict]]:
    runs, rows = [], []
    for summary in summaries:
        trained_with = summary["environment"]
        if any(trained_with.get(name) != env.get(name) for name in ("device_name", "torch")):  # reused from elsewhere
            sys.exit(f"gpu_check: {summary['run_key']} was trained on {trained_with.get('device_name')} with torch "
                     f"{trained_with.get('torch')}, not here; choose another --out")
        epochs = summary["epochs_completed"]
        spec = RunSpec.from_dict(summary["spec"])
        runs.append({"path": path, "problem": spec.problem, "optimizer": spec.optimizer, "setting": spec.setting,
                     "seed": spec.seed, "status": summary["status"], "epochs": epochs,
                     "population_size": summary["population_size"], "train_time_s": summary["train_time_s"],
                     "s_per_epoch": summary["train_time_s"] / epochs,
                     "population_s_per_epoch": summary["train_time_s"] * summary["population_size"] / epochs,
                     "test_acc": summary["final"]["test_acc"], "run_key": summary["run_key"]})
    frame = pd.DataFrame(runs)
    for (problem, optimizer, setting), part in frame.groupby(["problem", "optimizer", "setting"], sort=False):
        rows.append({"path": path, "problem": problem, "optimizer": optimizer, "setting": setting,
                     "seeds": len(part), "epochs": int(part.epochs.max()),
                     "finished": int((part.status == "finished").sum()),
                     "population_size": int(part.population_size.max()),
                     "s_per_epoch": float(part.s_per_epoch.mean()),
                     "population_s_per_epoch": float(part.population_s_per_epoch.mean()),
                     **spread(part.test_acc.tolist(), "test_acc"),
                     **{name: env.get(name) for name in ENVIRONMENT_COLUMNS}})
    return rows, runs


def show(rows: list[dict], env: dict) -> None:
    print(f"{'configuration':<46} {'path':<10} {'seeds':>5} {'run s/epoch':>11} {'pop. s/epoch':>12}  "
          f"{'test acc mean +- std':>20} {'(min-max)':>13}")
    for row in rows:
        std = "n/a" if row["test_acc_std"] is None else f"{row['test_acc_std']:.4f}"
        print(f"{row['problem'] + ' ' + row['optimizer'] + ' ' + row['setting']:<46} {row['path']:<10} "
              f"{row['seeds']:>5} {row['s_per_epoch']:>11.3f} {row['population_s_per_epoch']:>12.3f}  "
              f"{row['test_acc_mean']:>10.4f} +- {std:>6} {row['test_acc_min']:>6.4f}-{row['test_acc_max']:.4f}")
    print("environment: " + ", ".join(f"{name} {env.get(name, 'n/a')}" for name in ENVIRONMENT_COLUMNS + ["threads"]))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.seeds < 1 or args.epochs < 1:
        sys.exit("gpu_check: --seeds and --epochs must be at least 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    configure_determinism(args.deterministic)  # before CUDA is first used
    try:
        device = resolve_device(args.device)
    except RuntimeError as error:
        sys.exit(f"gpu_check: {error} (torch {torch.__version__}, built for CUDA {torch.version.cuda}); "
                 f"use --device cpu for a CPU smoke run")
    env = environment(device, args.deterministic)
    suffix = ("-deterministic" if args.deterministic else "") + ("" if args.precision == "fp32" else f"-{args.precision}")
    runs_root = args.out / "runs" / (str(device).replace(":", "") + suffix)
    specs = [RunSpec(problem, optimizer, dict(hyperparameters), seed, problem_options(args), args.precision)
             for problem, optimizer, hyperparameters in configurations() for seed in range(args.seeds)]

    rows, runs = [], []
    for path in PATHS:
        path_rows, path_runs = rows_of(path, train(path, specs, args, runs_root), env)
        rows += path_rows
        runs += path_runs
    show(rows, env)

    args.out.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(args.out / "gpu_check.csv", index=False)
    settings = {name: value for name, value in vars(args).items() if name != "out"}
    report = {"settings": settings, "environment": env, "configurations": rows, "runs": runs}
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"wrote {args.out / 'gpu_check.csv'} and {args.out / 'gpu_check.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
