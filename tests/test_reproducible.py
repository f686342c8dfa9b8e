"""The same install gives the same bytes: every figure and the tables, made twice from the published study's committed
records and tables in two processes with different hash seeds (a set's or dict's order, a font's or a PDF object's
id taken from a hash would show), are byte for byte the same. Run as a script, this file makes them (what the
`aggregate`, `tables`, `protocol_tables`, `tuning_budget` and `figure` rules' scripts call, with their params).
"""
from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
STUDY = Path("results/default")
# the committed tables and tuning tables the figures and the tables are made from
INPUTS = ["config.yaml", "config/reference_results.yaml", "problems.json", "plan.csv", "tables/runs.csv",
          "tables/curves.csv.gz", "tables/performance_profile.csv", "tables/time_to_target.csv",
          "tuning/lr_sensitivity.csv", "tuning/selection.csv"]
RECORDS_PER_PROBLEM = 2  # records the aggregate step reads here: a few, of every problem, keep the test cheap


def committed(path: str) -> bytes:
    """A file as HEAD has it: the working tree of a study that trains may be half rewritten."""
    return subprocess.run(["git", "show", f"HEAD:{path}"], cwd=REPO_ROOT, capture_output=True, check=True).stdout


def copy_inputs(folder: Path) -> None:
    """The committed inputs, and the records of RECORDS_PER_PROBLEM runs of each problem, laid out as in the
    checkout (the plan's run directories are relative to it)."""
    listed = subprocess.run(["git", "ls-files", str(STUDY / "runs")], cwd=REPO_ROOT, capture_output=True, text=True,
                            check=True).stdout.split()
    by_problem: dict[str, list[str]] = {}
    for path in sorted({str(Path(name).parent) for name in listed}):
        by_problem.setdefault(Path(path).relative_to(STUDY / "runs").parts[0], []).append(path)
    records = [f"{run}/{name}" for runs in by_problem.values() for run in runs[:RECORDS_PER_PROBLEM]
               for name in ("summary.json", "metrics.csv")]
    for path in [name if name.startswith("config") else str(STUDY / name) for name in INPUTS] + records:
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_bytes(committed(path))


def make_all(out: Path) -> None:
    """Every table and figure, under ``out``, from the inputs in the working directory (copy_inputs)."""
    import pandas as pd
    import seaborn as sns

    from adabench.analysis import figures
    from adabench.analysis.aggregate import chance_levels, gather
    from adabench.analysis.budget import budget_table
    from adabench.analysis.export import write_parquet
    from adabench.analysis.protocols import (display_protocols, gap_share_table, paired_table, profile,
                                             protocol_table, time_to_target_table)
    from adabench.analysis.tables import (comparison_table, compute_table, display_comparison,
                                          display_implementation_checks, display_reproduction,
                                          implementation_check_table, overhead_table, reproduction_table, rounded,
                                          write_table)
    from adabench.study.config import load_yaml, validate_config
    from adabench.study.plan import read_plan, roles_by_dir
    from adabench.study.made_from import output_digests, write_sources
    from adabench.study.design import Study

    study = Study(validate_config(load_yaml(Path("config.yaml"))))
    declarations = json.loads((STUDY / "problems.json").read_text())
    checks = study.config.get("checks", {})
    out.mkdir(parents=True)

    # aggregate: the records into the long tables, their Parquet copies and their sources
    plan = read_plan(STUDY / "plan.csv")
    runs, curves, summaries = gather(roles_by_dir(plan[plan.run_dir.map(lambda path: Path(path).is_dir())]),
                                     declarations)
    made = [out / name for name in ("runs.csv", "curves.csv.gz", "runs.parquet", "curves.parquet")]
    runs.to_csv(made[0], index=False)
    curves.to_csv(made[1], index=False, compression={"method": "gzip", "mtime": 0})
    write_parquet(runs, curves, made[2], made[3])
    write_sources(out / "runs.sources.json", summaries, {"outputs": output_digests(made)})

    # the tables and the figures from the committed long tables (those of every run)
    runs = pd.read_csv(STUDY / "tables/runs.csv")
    curves = pd.read_csv(STUDY / "tables/curves.csv.gz")
    comparison = comparison_table(runs, declarations, checks)
    write_table(comparison, display_comparison(comparison), out / "comparison")
    reproduction = reproduction_table(runs, study.reference_settings(), declarations)
    write_table(reproduction, display_reproduction(reproduction), out / "reproduction")
    for name, table in (("optimizer_overhead", overhead_table(runs)), ("compute", compute_table(runs))):
        write_table(table, rounded(table), out / name)
    checked = implementation_check_table(runs, checks)
    write_table(checked, display_implementation_checks(checked), out / "implementation_checks")
    tuned = study.tuning["problems"]
    protocols = {"protocols": protocol_table(runs, tuned, declarations, checks),
                 "paired_tests": paired_table(runs, tuned, declarations=declarations, checks=checks),
                 "time_to_target": time_to_target_table(runs, curves, study.targets(), tuned, checks),
                 "gap_share": gap_share_table(runs, tuned, checks)}
    for name, table in protocols.items():
        write_table(table, (display_protocols if name == "protocols" else rounded)(table), out / name)
    profile(protocols["time_to_target"], checks=checks, searched=study.tuning["optimizers"]).to_csv(
        out / "performance_profile.csv", index=False)
    budget, stability = budget_table(runs, chance=chance_levels(declarations))
    budget.to_csv(out / "tuning_budget.csv", index=False)
    stability.to_csv(out / "choice_stability.csv", index=False)

    tables = {"runs": runs, "curves": curves, "budget": budget, "stability": stability,
              "sensitivity": pd.read_csv(STUDY / "tuning/lr_sensitivity.csv"),
              "selection": pd.read_csv(STUDY / "tuning/selection.csv"),
              "profile": pd.read_csv(STUDY / "tables/performance_profile.csv"),
              "times": pd.read_csv(STUDY / "tables/time_to_target.csv")}
    sns.set_theme(style=study.config["figures"]["style"])
    for name, draw in drawings(figures).items():
        draw(**tables, problems=declarations, outputs=[str(out / f"{name}.png"), str(out / f"{name}.pdf")],
             dpi=study.config["figures"]["dpi"])


def drawings(module) -> dict:
    """Every figure of adabench.analysis.figures: its functions that draw into ``outputs``."""
    return {name: function for name, function in vars(module).items()
            if inspect.isfunction(function) and function.__module__ == module.__name__
            and {"outputs", "dpi"} <= set(inspect.signature(function).parameters) and name != "save"}


def test_every_figure_and_table_is_the_same_bytes_in_two_processes(tmp_path):
    inputs = tmp_path / "inputs"
    copy_inputs(inputs)
    started = {}
    for seed in ("1", "2"):
        started[seed] = subprocess.Popen([sys.executable, __file__, str(tmp_path / seed)], cwd=inputs,
                                         env={**os.environ, "PYTHONHASHSEED": seed}, stderr=subprocess.PIPE, text=True)
        time.sleep(2)  # the two draw each figure seconds apart: a date in a file (a PDF's CreationDate) would show
    for seed, process in started.items():
        assert process.wait(timeout=600) == 0, process.stderr.read()
    first, second = ({path.name: path.read_bytes() for path in (tmp_path / seed).iterdir()} for seed in started)
    assert sorted(first) == sorted(second)
    assert [name for name in first if first[name] != second[name]] == []
    from adabench.analysis import figures

    drawn = {Path(name).stem for name in first if name.endswith((".png", ".pdf"))}
    assert drawn == set(drawings(figures)) and len(drawn) >= 9
    assert {"runs.csv", "curves.parquet", "comparison.tex", "protocols.md", "tuning_budget.csv"} <= set(first)
    assert json.loads(first["runs.sources.json"])["runs"] >= 2 * 5  # records of every problem were read


if __name__ == "__main__":
    make_all(Path(sys.argv[1]))
