"""What a study costs: its training jobs (populations), runs and epochs per stage (study, tuning grid, tuned
reruns) and problem, and the seconds they take at the rate of runs already measured on some machine; and whether
the whole study's training fits in a slot (a 15-minute GPU job, say).

The measurement is the wall time per member and epoch (training plus the per-epoch evaluation, shared among the
members of the population that trained it) of the finished runs under --measured that trained the same problem
with the same options, apart from the number of epochs, preferring runs of the job's population size: e.g.
results/<study>/runs of a CPU run, or results/gpu_check/runs/cuda of benchmarks/gpu_check.py on a GPU.

Run from the repository root:
    .venv/bin/python benchmarks/study_cost.py [config/<study>.yaml] [--measured DIR ...] [--slot-minutes 15]
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from adabench.study.config import ConfigError, load_study_config
from adabench.study.cost import cost_table, measured_epoch_seconds, planned_jobs, slot_estimate
from adabench.study.design import Study


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("study", nargs="*", type=Path, help="study files merged over config.yaml, as --configfile")
    parser.add_argument("--measured", type=Path, nargs="+", default=[Path("results")],
                        help="directories of finished runs (their summary.json files) to take seconds per epoch from")
    parser.add_argument("--slot-minutes", type=float, default=15.0, help="the slot the training should fit in")
    parser.add_argument("--parallel-jobs", type=int, default=4, help="training jobs at a time (--resources gpu=N)")
    parser.add_argument("--startup-s", type=float, default=10.0, help="seconds a training job takes to start")
    parser.add_argument("--csv", type=Path, help="also write the table here")
    return parser.parse_args(argv)


def hours(seconds: float) -> str:
    return "unmeasured" if math.isnan(seconds) else f"{seconds / 3600:.2f} h"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config = load_study_config(*args.study)
    except (OSError, ConfigError) as error:
        sys.exit(f"study_cost: {error}")
    missing = [str(path) for path in args.measured if not path.is_dir()]
    if missing:
        sys.exit(f"study_cost: no such directory: {', '.join(missing)}")
    # the plan the workflow's plan rule would write for this config (the study need not have been run yet)
    study = Study(config)
    jobs = planned_jobs(study.plan(), study)
    table = cost_table(jobs, measured_epoch_seconds(args.measured))

    print(f"study {config['study']}: {jobs.job.nunique()} training jobs, {table.runs.sum()} runs, "
          f"{table.epochs.sum()} run-epochs; measured in {', '.join(map(str, args.measured))}")
    print(f"{'stage':<6} {'problem':<22} {'jobs':>5} {'runs':>5} {'epochs':>7} {'s/epoch':>9} {'serial':>11}  measured on")
    for row in table.itertuples():
        rate = "" if row.s_per_member_epoch != row.s_per_member_epoch else f"{row.s_per_member_epoch:.3f}"
        source = f"{row.measured_on} ({row.measured_runs} runs)" if row.measured_runs else ""
        print(f"{row.stage:<6} {row.problem:<22} {row.jobs:>5} {row.runs:>5} {row.epochs:>7} {rate:>9} "
              f"{hours(row.serial_s):>11}  {source}")
    unmeasured = sorted(set(table.problem[table.s_per_member_epoch.isna()]))
    print(f"serial total: {hours(table.serial_s.sum())}" + (f"; unmeasured: {', '.join(unmeasured)}" if unmeasured else ""))
    if not unmeasured:
        wall = slot_estimate(table, jobs, args.parallel_jobs, args.startup_s)
        verdict = "fits" if wall <= 60 * args.slot_minutes else "does not fit"
        print(f"with {args.parallel_jobs} jobs at a time and {args.startup_s:g} s to start each: at least "
              f"{wall / 60:.1f} min of training: {verdict} in a {args.slot_minutes:g}-minute slot")
    if args.csv:
        table.to_csv(args.csv, index=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
