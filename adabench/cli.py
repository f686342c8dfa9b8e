"""Command line: ``adabench train|data|list|status|stop|records|mlflow-ui|export`` (also ``python -m adabench``)."""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

import torch
import yaml

from .analysis.export import DamagedTable, load_study
from .core.data import prepare_fashion_mnist
from .core.download import DATA_FILE, DEFAULT_SOURCES, RAW_DIR, fetch_fashion_mnist
from .core.optim import OPTIMIZERS, optimizer_arguments
from .core.packaged import ReferenceError as BadReference
from .core.packaged import describe
from .core.problems import PROBLEMS, problem_arguments
from .core.records import METRICS, SUMMARY, foreign_folder
from .core.runtime import PREEMPTED_EXIT_CODE, Preempted, stop_on_sigterm
from .core.spec import PRECISIONS, RunSpec
from .core.trainer import train_run
from .study.config import ConfigError, check_run_arguments, load_plugins, load_study_config
from .study.design import Study
from .study.progress import report, stop
from .study.staleness import stale_tuning
from .study.state import read_state, searched_on_disk, tuned_runs_on_disk, verified
from .workflow.store import configure_timeouts, ensure_experiment, runs_view_url
from .workflow.tracking import MLflowTracker


def parse_assignments(items: list[str], flag: str) -> dict:
    values = {}
    for item in items:
        name, sep, raw = item.partition("=")
        if not sep or not name:
            raise SystemExit(f"{flag} expects key=value, got {item!r}")
        values[name] = parse_value(raw)
    return values


def parse_value(raw: str):
    """YAML scalars, plus exponent floats YAML 1.1 reads as strings (1e-6)."""
    value = yaml.safe_load(raw)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="adabench", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="run one (problem, optimizer, hyperparameters, seed)")
    train.add_argument("--problem", required=True, choices=PROBLEMS.names())
    train.add_argument("--optimizer", required=True,
                       help=f"a registry name ({', '.join(OPTIMIZERS.names())}) or a packaged optimizer, "
                            "module:Class (e.g. torch.optim:NAdam)")
    train.add_argument("--lr", type=float, help="learning rate (same as --set lr=X)")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="an optimizer hyperparameter")
    train.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="a problem option")
    train.add_argument("--seed", type=int, required=True)
    train.add_argument("--out", type=Path, required=True, help="run directory (metrics.csv, summary.json)")
    train.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda[:N]")
    train.add_argument("--deterministic", action="store_true", help="deterministic GPU algorithms")
    train.add_argument("--precision", default="fp32", choices=PRECISIONS, help="fp32 (default), bf16 autocast, tf32")
    train.add_argument("--threads", type=int, help="CPU threads for torch")
    train.add_argument("--tracking-uri", help="also log to this MLflow tracking URI")
    train.add_argument("--experiment", default="adabench")

    data = commands.add_parser("data", help="fetch and prepare Fashion-MNIST")
    data.add_argument("--out", type=Path, default=Path(DATA_FILE))
    data.add_argument("--raw-dir", type=Path, default=Path(RAW_DIR))
    data.add_argument("--source", action="append", help="a directory or URL prefix (repeatable; default: "
                      + ", ".join(DEFAULT_SOURCES) + ")")

    listing = commands.add_parser("list", help="list problems and optimizers with their options, or show how "
                                               "packaged optimizers (module:Class) are read")
    listing.add_argument("references", nargs="*", metavar="MODULE:CLASS",
                         help="a packaged optimizer: its hyperparameters (names, types, defaults, where each type "
                              "came from) and what the training loop does for it")

    for name, text in (("status", "where a study stands: runs and epochs done, jobs training now (or stalled), ETA"),
                       ("stop", "stop a running study within one epoch; a plain rerun resumes it"),
                       ("records", "the record files of the study's complete runs, one path a line (for git add)")):
        command = commands.add_parser(name, help=text)
        command.add_argument("configfiles", nargs="*", type=Path, metavar="CONFIGFILE",
                             help="the study's files, as given to snakemake --configfile (none: the default study)")
        command.add_argument("--defaults", type=Path, default=Path("config.yaml"), help="the defaults (config.yaml)")
    ui = commands.add_parser("mlflow-ui", help="the MLflow UI on a study's store; prints the address of its runs")
    ui.add_argument("configfiles", nargs="*", type=Path, metavar="CONFIGFILE",
                    help="the study's files, as given to snakemake --configfile (none: the default study)")
    ui.add_argument("--defaults", type=Path, default=Path("config.yaml"), help="the defaults (config.yaml)")
    ui.add_argument("--port", type=int, default=5000)
    export = commands.add_parser("export", help="a study's runs and curves as typed tables (Parquet or CSV)")
    export.add_argument("study", type=Path, help="the study's folder, e.g. results/default")
    export.add_argument("--out", type=Path, required=True, help="folder to write runs.* and curves.* into")
    export.add_argument("--format", choices=["parquet", "csv"], default="parquet")
    commands.choices["stop"].add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                                          help="wait up to this long for the training jobs to exit")
    return parser


def file_error(error: OSError) -> str:
    """An OSError in one line, naming its file: "<file>: <what the system says>"."""
    return f"{error.filename}: {error.strerror or error}" if error.filename else str(error.strerror or error)


def study_of(args):
    try:
        config = load_study_config(*args.configfiles, defaults=args.defaults)
        load_plugins(config["plugins"])
        return Study(config)  # reads the reference results the config names
    except (OSError, ConfigError) as error:
        raise SystemExit(f"adabench {args.command}: {error}") from None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "list" and args.references:
        for reference in args.references:
            try:
                print(describe(reference))
            except BadReference as error:
                raise SystemExit(f"adabench list: {reference}: {error}") from None
        return 0
    if args.command == "list":
        for kind, registry, arguments in (("problem", PROBLEMS, problem_arguments),
                                          ("optimizer", OPTIMIZERS, optimizer_arguments)):
            for name in registry.names():
                shown = ", ".join(f"{a.name}={a.default!r}" for a in arguments(name).values())
                print(f"{kind} {name}: {shown}")
        print("optimizer module:Class: any torch.optim.Optimizer subclass of an installed package, e.g. "
              "torch.optim:NAdam (`adabench list torch.optim:NAdam` shows how it is read)")
        return 0
    if args.command == "status":
        study = study_of(args)
        try:
            state = read_state(study)
            # what the next Snakemake run removes (a search made for another config, say) is not counted as made
            print(report(state, stale={path for path, _ in stale_tuning(state)}))
        except OSError as error:
            raise SystemExit(f"adabench status: {file_error(error)}. Fix: make the study's folder readable by this "
                             "user, or move a damaged file aside (a rerun trains its run again)") from None
        return 0
    if args.command == "mlflow-ui":
        from mlflow.tracking import MlflowClient  # where it is used: importing MLflow takes seconds

        study = study_of(args)
        found = MlflowClient(study.tracking_uri()).get_experiment_by_name(study.experiment)
        if found is None:
            raise SystemExit(f"adabench mlflow-ui: no experiment {study.experiment!r} at {study.tracking_uri()}: "
                             "run snakemake for this study first")
        print(f"the runs of study {study.name}: {runs_view_url(f'http://127.0.0.1:{args.port}', found.experiment_id)}",
              flush=True)
        mlflow = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or "mlflow"
        os.execv(mlflow, [mlflow, "ui", "--backend-store-uri", study.tracking_uri(), "--host", "127.0.0.1",
                          "--port", str(args.port)])
    if args.command == "export":
        try:
            tables = load_study(args.study)
        except (FileNotFoundError, DamagedTable) as error:
            raise SystemExit(f"adabench export: {error}") from None
        args.out.mkdir(parents=True, exist_ok=True)
        for name, frame in tables._asdict().items():
            path = args.out / f"{name}.{args.format}"
            frame.to_parquet(path, index=False) if args.format == "parquet" else frame.to_csv(path, index=False)
            print(f"{path}: {len(frame)} rows")
        return 0
    if args.command == "records":
        state = read_state(study_of(args))
        added = searched_on_disk(state.study) + [spec for tuned in tuned_runs_on_disk(state.study).values()
                                                  for spec in tuned]
        specs = {spec.key: spec for spec in [*state.study.runs(), *added]}
        for spec in specs.values():
            if spec.key in state.complete or verified(state.study, spec)[0] is not None:
                print("\n".join(str(state.study.run_dir(spec) / name) for name in (SUMMARY, METRICS)))
        return 0
    if args.command == "stop":
        study = study_of(args)
        try:
            stopped = stop(study, wait_s=args.wait)
        except OSError as error:
            raise SystemExit(f"adabench stop: {file_error(error)}. Fix: make the study's folder readable by this "
                             "user, or end its processes by hand (their pids: results/<study>/progress/*.json)") \
                from None
        if not stopped.found and not stopped.left:
            print("nothing of this study is running")
        if stopped.left:
            print(f"adabench stop: not seen to end{f' within {args.wait:g} s' if args.wait else ''}: "
                  f"{'; '.join(stopped.left)}. Fix: wait longer, or end a process that ignores "
                  "SIGTERM with kill -KILL <pid>: a plain rerun resumes from the last checkpoints", file=sys.stderr)
            return 1
        return 0
    if args.command == "data":
        fetch_fashion_mnist(args.source or DEFAULT_SOURCES, args.raw_dir)
        print(prepare_fashion_mnist(args.raw_dir, args.out))
        return 0

    hyperparameters = parse_assignments(args.set, "--set")
    if args.lr is not None:
        hyperparameters["lr"] = args.lr
    options = parse_assignments(args.option, "--option")
    try:
        check_run_arguments(args.problem, args.optimizer, hyperparameters, options, args.seed)
    except ConfigError as error:
        raise SystemExit(f"adabench train: {error.field}: {error.message}") from None
    if problem := foreign_folder(args.out):
        raise SystemExit(f"adabench train: --out {args.out}: {problem}")
    spec = RunSpec(args.problem, args.optimizer, hyperparameters, args.seed, options, args.precision)
    if args.threads:
        torch.set_num_threads(args.threads)
    tracker = None
    if args.tracking_uri:
        configure_timeouts(10)
        ensure_experiment(args.tracking_uri, args.experiment, None)
        tracker = MLflowTracker(args.tracking_uri, args.experiment)
    stop_on_sigterm()
    try:
        summary = train_run(spec, args.out, device=args.device, deterministic=args.deterministic, tracker=tracker)
    except Preempted as preempted:
        print(preempted, file=sys.stderr)
        return PREEMPTED_EXIT_CODE
    print(f"{spec.key}: {summary['status']} after {summary['epochs_completed']} {summary['unit']}s, "
          f"{summary['train_time_s']:.1f}s training; records in {args.out}")
    return 0
