"""What a study config costs: its jobs, runs and epochs per stage (study, tuning grid, tuned reruns) and problem,
and the serial seconds they take at the seconds per epoch of runs already measured on some machine.

The measurement is the median wall time per epoch (training plus the per-epoch evaluation) of the finished runs
under --measured that trained the same problem with the same options, apart from the number of epochs: e.g.
results/runs of a CPU run, or results/gpu_check/runs/cuda of benchmarks/gpu_check.py on a GPU. Problems without
such runs are listed as unmeasured. "Serial" means one run at a time on that machine and leaves out each job's
start-up (Python, torch and MLflow imports, data loading); jobs run side by side overlap both.

Run from the repository root:
    .venv/bin/python benchmarks/study_cost.py [--config config.yaml] [--measured results/runs ...]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # adabench from this checkout

from adabench.config import ConfigError, validate_config  # noqa: E402
from adabench.cost import cost_table, measured_epoch_seconds, planned_runs  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=Path("config.yaml"))
    parser.add_argument("--measured", type=Path, nargs="+", default=[Path("results/runs")],
                        help="directories of finished runs (their summary.json files) to take seconds per epoch from")
    parser.add_argument("--csv", type=Path, help="also write the table here")
    return parser.parse_args(argv)


def hours(seconds: float) -> str:
    return "unmeasured" if seconds != seconds else f"{seconds / 3600:.2f} h"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config = validate_config(yaml.safe_load(args.config.read_text()))
    except (OSError, ConfigError) as error:
        sys.exit(f"study_cost: {args.config}: {error}")
    missing = [str(path) for path in args.measured if not path.is_dir()]
    if missing:
        sys.exit(f"study_cost: no such directory: {', '.join(missing)}")
    table = cost_table(planned_runs(config), measured_epoch_seconds(args.measured))

    print(f"{args.config}: {table.runs.sum()} runs, {table.epochs.sum()} epochs; measured in "
          f"{', '.join(map(str, args.measured))}")
    print(f"{'stage':<6} {'problem':<22} {'jobs':>5} {'runs':>5} {'epochs':>7} {'s/epoch':>9} {'serial':>11}  measured on")
    for row in table.itertuples():
        rate = "" if row.s_per_epoch != row.s_per_epoch else f"{row.s_per_epoch:.3f}"
        source = f"{row.measured_on} ({row.measured_runs} runs)" if row.measured_runs else ""
        print(f"{row.stage:<6} {row.problem:<22} {row.jobs:>5} {row.runs:>5} {row.epochs:>7} {rate:>9} "
              f"{hours(row.serial_s):>11}  {source}")
    unmeasured = sorted(set(table.problem[table.s_per_epoch.isna()]))
    print(f"serial total of the measured problems: {hours(table.serial_s.sum())}"
          + (f"; unmeasured: {', '.join(unmeasured)}" if unmeasured else ""))
    if args.csv:
        table.to_csv(args.csv, index=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
