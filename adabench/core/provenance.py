"""Where and with what code something was computed: the CPU model and the git commit (light: no torch)."""
from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path

# The packages whose code computes a run's numbers or draws the figures: each run's record (its environment) and
# its MLflow params (version.<name>) name their versions, so two records that differ can say what computed them.
PACKAGES = ("torch", "numpy", "pandas", "scipy", "matplotlib", "seaborn", "contourpy", "mlflow", "snakemake")


def package_versions(names=PACKAGES) -> dict[str, str]:
    """Each package's installed version, from its metadata rather than by importing it (mlflow and snakemake take
    seconds to import, and a training job uses neither); "not installed" where it is not."""
    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), e.g. "AMD EPYC 7B13": speeds depend on it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit(start: Path = Path(__file__).parent) -> str:
    """The commit of the code that runs (the checkout this package is in), or "unknown" outside git."""
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=start, capture_output=True, text=True,
                              check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
