"""GPU check: the seed study's four LeNet configurations on Fashion-MNIST, trained by adabench's own ``train_run``.

Each configuration runs with seeds 0..4 for 20 epochs at batch 256 (the seed's protocol) on one device. Prints,
per configuration, seconds per training epoch (mean over seeds of train_time_s / epochs; min-max beside it) and
the final test accuracy (mean +- std over seeds, ddof 1, and min / max), then the environment as
``adabench.run.environment`` reports it (GPU name, driver, CUDA / cuDNN, torch). Writes the same numbers to
OUT/gpu_check.csv and OUT/gpu_check.json (with each run's numbers); the run directories (metrics.csv,
summary.json) go under OUT/runs/<device>/. A finished run found there is reused, an interrupted one resumed.

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


from adabench.run import RunSpec, configure_determinism, environment, resolve_device, train_run  # noqa: E402
from adabench.study import run_dir  # noqa: E402

# the seed study's LeNet runs (config.yaml, seed_reference): (problem, optimizer, hyperparameters)
CONFIGURATIONS = [
    ("lenet_sigmoid_fmnist", "adagrad", {"lr": 0.01, "eps": 1e-8}),
    ("lenet_sigmoid_fmnist", "adam", {"lr": 0.01}),
    ("lenet_sigmoid_fmnist", "adagrad_avg", {"lr": 0.01}),
    ("lenet_relu_fmnist", "rmsprop", {"lr": 0.01}),
]
ENVIRONMENT_COLUMNS = ["device", "device_name", "cuda_driver", "cuda", "cudnn", "torch", "deterministic"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    parser.add_argument("--deterministic", action="store_true", help="deterministic GPU algorithms")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--train-subset", type=int, help="train on the first N training images only")
    parser.add_argument("--test-subset", type=int, help="test on the first N test images only")
    parser.add_argument("--data-file", default="results/data/fashion_mnist.pt", help="prepared Fashion-MNIST")
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


def check_configuration(problem: str, optimizer: str, hyperparameters: dict, args, env: dict,
                        runs_root: Path) -> tuple[dict, list]:
    setting = RunSpec(problem, optimizer, hyperparameters, 0).setting
    runs = []
    for seed in range(args.seeds):
        spec = RunSpec(problem, optimizer, dict(hyperparameters), seed, problem_options(args))
        out_dir = run_dir(spec, runs_root)
        summary = train_run(spec, out_dir, device=args.device, deterministic=args.deterministic, tracker=None,
                            log=lambda line: print(line, file=sys.stderr))
        if any(summary.get(name) != env.get(name) for name in ("device_name", "torch")):  # a reused run from elsewhere
            sys.exit(f"gpu_check: {out_dir} was trained on {summary.get('device_name')} with torch "
                     f"{summary.get('torch')}, not here; choose another --out")
        epochs = summary["epochs_completed"]
        runs.append({"seed": seed, "status": summary["status"], "epochs": epochs,
                     "train_time_s": summary["train_time_s"], "s_per_epoch": summary["train_time_s"] / epochs,
                     "test_acc": summary["final"]["test_acc"], "run_dir": str(out_dir)})
    row = {"problem": problem, "optimizer": optimizer, "setting": setting, "seeds": len(runs),
           "epochs": args.epochs, "finished": sum(run["status"] == "finished" for run in runs),
           **spread([run["s_per_epoch"] for run in runs], "s_per_epoch"),
           **spread([run["test_acc"] for run in runs], "test_acc")}
    return row, [{"problem": problem, "optimizer": optimizer, "setting": setting, **run} for run in runs]


def show(rows: list[dict], env: dict) -> None:
    print(f"{'configuration':<46} {'seeds':>5} {'s/epoch':>8} {'(min-max)':>13}  {'test acc mean +- std':>20} "
          f"{'(min-max)':>13}")
    for row in rows:
        std = "n/a" if row["test_acc_std"] is None else f"{row['test_acc_std']:.4f}"
        print(f"{row['problem'] + ' ' + row['optimizer'] + ' ' + row['setting']:<46} {row['seeds']:>5} "
              f"{row['s_per_epoch_mean']:>8.3f} {row['s_per_epoch_min']:>6.3f}-{row['s_per_epoch_max']:.3f}  "
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
    runs_root = args.out / "runs" / (str(device).replace(":", "") + ("-deterministic" if args.deterministic else ""))

    rows, runs = [], []
    for configuration in CONFIGURATIONS:
        row, configuration_runs = check_configuration(*configuration, args, env, runs_root)
        rows.append({**row, **{name: env.get(name) for name in ENVIRONMENT_COLUMNS}})
        runs += configuration_runs
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
