"""Time for the band player: the 16th-note grid, quantisation, and two interchangeable clocks.

The engine only talks to a clock through three calls, so the live player and the headless
run share one code path:

- ``now()``: seconds on this clock;
- ``sleep_until(t)``: return when the clock reads ``t`` (the real clock sleeps, the simulated
  one jumps there at once);
- ``on_time(job, deadline)``: was this prediction ready by the bar line at ``deadline``? The
  real clock only looks (it never waits for the model); the simulated clock, which runs far
  faster than the model, waits for the job and compares its measured wall latency with the
  simulated time it had (one measure, ``60 / tempo · 4`` s), so a slow model is still caught.
"""
from __future__ import annotations

import math
import time
from typing import Protocol

from rmvae.config import STEPS_PER_MEASURE

STEPS_PER_BEAT = 4  # sixteenths per quarter note


def step_seconds(tempo: float) -> float:
    """Length of one sixteenth at ``tempo`` quarter notes per minute."""
    if tempo <= 0:
        raise ValueError(f"tempo must be > 0 BPM; got {tempo}")
    return 60.0 / tempo / STEPS_PER_BEAT


def measure_seconds(tempo: float) -> float:
    """Length of one 4/4 measure: ``60 / tempo · 4`` seconds."""
    return step_seconds(tempo) * STEPS_PER_MEASURE


def quantise(seconds: float, tempo: float) -> int:
    """Event time (seconds from the song's first downbeat) → the nearest sixteenth step.

    A note played a little early or late lands on the step it was meant for: anything within
    half a sixteenth of step k (0.49 of a step → 0, 0.51 → 1) is step k. Events before the song
    start count as step 0.

    Args:
        seconds: time of the event relative to the song start.
        tempo: quarter notes per minute.

    Returns:
        The step index, ≥ 0.
    """
    return max(0, int(math.floor(seconds / step_seconds(tempo) + 0.5)))


class PendingResult(Protocol):
    """What a clock needs to know about a prediction (see :class:`rmvae.band.engine.PredictionJob`)."""

    submitted_at: float  # clock time of the bar line it was asked at
    latency: float | None  # wall seconds the prediction took, once done

    def is_done(self) -> bool: ...

    def wait(self) -> None: ...


class Clock(Protocol):
    def now(self) -> float: ...

    def sleep_until(self, t: float) -> None: ...

    def on_time(self, job: PendingResult, deadline: float) -> bool: ...


class RealClock:
    """Wall-clock time (``time.monotonic``); never waits for a prediction."""

    def now(self) -> float:
        return time.monotonic()

    def sleep_until(self, t: float) -> None:
        while True:  # sleep can wake early; loop until the clock reads t
            remaining = t - time.monotonic()
            if remaining <= 0:
                return
            time.sleep(remaining)

    def on_time(self, job: PendingResult, deadline: float) -> bool:
        return job.is_done()


class SimulatedClock:
    """A clock that jumps to every requested time at once (headless runs and tests).

    Because simulated time does not pass while the model computes, lateness is judged from the
    prediction's measured wall latency against the simulated time it had until its deadline.
    """

    def __init__(self, start: float = 0.0):
        self.time = start

    def now(self) -> float:
        return self.time

    def sleep_until(self, t: float) -> None:
        self.time = max(self.time, t)

    def on_time(self, job: PendingResult, deadline: float) -> bool:
        job.wait()  # in wall time only: the simulated clock stands still meanwhile
        return job.latency is not None and job.latency <= deadline - job.submitted_at
