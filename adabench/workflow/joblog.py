"""A rule's log: what every script does first. Light (no torch), so that the analysis scripts stay light."""
from __future__ import annotations

import sys
from pathlib import Path


class LogFile:
    """A callable that appends lines to a job's log file (and echoes them to stdout). ``capture_stderr()`` sends
    the job's stderr to the same file, so a traceback lands where Snakemake says to look."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = self.path.open("a", buffering=1)

    def capture_stderr(self) -> "LogFile":
        sys.stderr = self.handle
        return self

    def __call__(self, line: str) -> None:
        self.handle.write(line + "\n")
        print(line, flush=True)


def job_log(snakemake) -> LogFile:
    """The log of the rule's job (its first log file), with the job's stderr in it."""
    return LogFile(snakemake.log[0]).capture_stderr()
