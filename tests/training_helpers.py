"""A tracker that stops training where a test wants it stopped, as a SIGTERM would."""
from __future__ import annotations

from adabench.core.runtime import STOP_REQUESTED


class StopAfter:
    """Asks training to stop once the row of ``step`` (an epoch, or a step of a full-batch problem) is logged, as the
    SIGTERM handler would: training ends after it with every checkpoint written."""

    def __init__(self, step: int):
        self.step = step
        self.unit = "epoch"

    def start(self, key, identity, unit, environment, recorded_up_to):
        self.unit = unit

    def log(self, rows):
        if any(row[self.unit] == self.step for row in rows):
            STOP_REQUESTED.set()

    def finish(self, summary, artifacts):
        pass
