"""A stopwatch for the pipeline's stages."""

from __future__ import annotations

import time
from collections.abc import Callable


class Stopwatch:
    """`lap(stage)` hands the seconds since the last lap to `record(stage, seconds)`; a stage of
    None (it did not run this time) only restarts the clock."""

    def __init__(self, record: Callable[[str, float], None]):
        self.record = record
        self.clock = time.perf_counter()

    def lap(self, stage: str | None) -> None:
        now = time.perf_counter()
        if stage:
            self.record(stage, now - self.clock)
        self.clock = now


def summing(timings: dict[str, float]) -> Callable[[str, float], None]:
    """A `Stopwatch` record that adds each lap to its stage's total in `timings`."""

    def record(stage: str, seconds: float) -> None:
        timings[stage] = timings.get(stage, 0.0) + seconds

    return record
