"""The package's shape: imports go one way (no cycle, lazy imports included), the analysis needs no torch, and a
non-editable install works from a copy of the workflow files."""
from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from workflow_helpers import REPO_ROOT, copy_workflow, quick_config, write_config

PACKAGE = REPO_ROOT / "adabench"


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_imports() -> dict[str, set[str]]:
    """Module -> the package's modules it imports, anywhere in it (at the top, or lazily inside a function)."""
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
                for alias in node.names:
                    candidate = f"{base}.{alias.name}"
                    found.add(candidate if candidate in modules else base)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
        graph[name] = {target for target in found if target in modules and target != name}
    return graph


def test_no_module_of_the_package_imports_itself_back():
    graph = package_imports()
    assert "adabench.core.trainer" in graph and "adabench.core.spec" in graph
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                cycle = path[path.index(target):] + [target] if target in path else [module, target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target, path + [target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


# The package's layers, bottom up: what a run is and how it trains; a study of runs; the tables and figures made from
# their records; the glue of the Snakemake workflow (its jobs, upkeep and MLflow). The command line sits on top.
LAYERS = ["adabench.core", "adabench.study", "adabench.analysis", "adabench.workflow"]


def layer_of(module: str) -> int:
    for rank, layer in enumerate(LAYERS):
        if module == layer or module.startswith(layer + "."):
            return rank
    return len(LAYERS)  # adabench itself, its __main__ and the command line


def test_imports_point_down_between_the_layers():
    graph = package_imports()
    assert {layer_of(module) for module in graph} == set(range(len(LAYERS) + 1))
    upward = sorted(f"{module} -> {target}" for module, targets in graph.items() for target in targets
                    if layer_of(target) > layer_of(module) and target != "adabench")
    assert upward == []


def test_a_runs_identity_reaches_down_only():
    graph = package_imports()
    assert graph["adabench.core.spec"] <= {"adabench.core.arguments", "adabench.core.identity", "adabench.core.optim",
                                           "adabench.core.packaged", "adabench.core.problems"}
    # beside optim: the optimizers' layer
    assert graph["adabench.core.packaged"] <= {"adabench.core.arguments", "adabench.core.identity"}


def test_the_analysis_and_its_scripts_import_no_torch():
    code = ("import sys, adabench, adabench.core.atomic, adabench.core.download, adabench.core.identity\n"
            "import adabench.core.provenance, adabench.core.records\n"
            "import adabench.study.layout, adabench.study.made_from, adabench.study.plan\n"
            "import adabench.workflow.joblog, adabench.workflow.store, adabench.workflow.tracking\n"
            "from adabench.analysis import aggregate, explorer, export, figures, protocols, stats, tables, tuning\n"
            "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('adabench'))\n"
            "assert not [m for m in sys.modules if m.startswith('adabench.core.problems')]\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    # and the jobs that only fetch, create a store, or read tables, problems.json and MLflow (the search's rounds and
    # its end verify records against the runs' specs, as the plan makes them: they need the problems)
    for script in ("figure.py", "explorer.py", "aggregate.py", "tables.py", "protocol_tables.py", "tuning_budget.py",
                   "check_selection.py", "fetch_data.py", "mlflow_store.py"):
        source = (REPO_ROOT / "scripts" / script).read_text()
        assert "adabench.workflow.steps" not in source and "import torch" not in source


def test_a_non_editable_install_runs_the_quick_study_from_a_copy_of_the_workflow(tmp_path):
    """`pip install .` (not -e) into a fresh virtual environment that borrows the installed dependencies, then
    `adabench list` and a small study from a copy of the workflow files, away from the checkout."""
    environment = tmp_path / "venv"
    # the installed package alone: a PYTHONPATH naming a checkout (a worktree, say) would shadow it
    clean = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    subprocess.run([sys.executable, "-m", "venv", str(environment)], check=True, timeout=300)
    python = environment / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    # the dependencies of this environment, without its editable adabench (a path line, not a site directory)
    (site / "borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    source = tmp_path / "source"
    shutil.copytree(REPO_ROOT, source, ignore=shutil.ignore_patterns(".venv", ".git", "results", ".snakemake",
                                                                     "__pycache__", "*.egg-info", "artifacts"))
    installed = subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--quiet",
                                str(source)], capture_output=True, text=True, timeout=600)
    assert installed.returncode == 0, installed.stderr
    shutil.rmtree(source)  # nothing may come from the checkout now
    where = subprocess.run([str(python), "-c", "import adabench; print(adabench.__file__)"], cwd=tmp_path,
                           capture_output=True, text=True, check=True, env=clean).stdout
    assert where.startswith(str(site))
    listed = subprocess.run([str(environment / "bin" / "adabench"), "list"], capture_output=True, text=True,
                            timeout=300, env=clean)
    assert listed.returncode == 0 and "optimizer adagrad:" in listed.stdout, listed.stderr

    workdir = copy_workflow(tmp_path / "work")
    problems = {name: {"optimizers": []} for name in quick_config()["problems"]}
    write_config(workdir, {"study": "installed", "device": "cpu", "threads": 1, "seeds": [0], "tuning": None,
                           "reference": {"problems": ["quadratic"]},
                           "problems": {**problems, "quadratic": {"optimizers": ["adagrad", "adam"]}}})
    run = subprocess.run([str(python), "-m", "snakemake", "--cores", "2", "--configfile", "test-config.yaml"],
                         cwd=workdir, capture_output=True, text=True, timeout=900,
                         env={**clean, "PATH": f"{environment / 'bin'}{os.pathsep}{os.environ['PATH']}"})
    assert run.returncode == 0, run.stderr[-3000:]
    assert (workdir / "results/installed/tables/reproduction.md").read_text().count("| equal |") == 3

