"""Throttled progress with an ETA, shared by the evaluation functions and the training loop.

An evaluation reports ``{"done", "total", "eta_seconds", "episodes_per_sec"}`` through its
``on_progress`` callback: ``done`` and ``total`` count episodes (a function-regression task
counts as one episode), ``eta_seconds`` is the remaining episodes divided by the rate
measured so far (``None`` until a rate can be measured), ``episodes_per_sec`` is that rate.
Events come after the first advance, at the very end (``done == total``), and otherwise at
most every ``interval_s`` seconds. ``should_stop`` callbacks end an evaluation with
:class:`EvaluationStopped`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

ProgressFn = Callable[[dict[str, Any]], None]
StopFn = Callable[[], bool]


class EvaluationStopped(Exception):
    """``should_stop()`` returned True during an evaluation; no result was produced.

    ``done`` and ``total`` are the episodes finished before the stop and the episodes planned.
    """

    def __init__(self, done: int, total: int) -> None:
        super().__init__(f"evaluation stopped after {done} of {total} episodes")
        self.done = done
        self.total = total


class ProgressMeter:
    """Counts finished units (episodes, steps) out of ``total`` and decides when to report them.

    Times are seconds of ``clock`` (``time.monotonic`` by default), taken from construction
    on (``start``). ``done`` is where counting begins (a resumed run); the rate only counts
    units finished since construction. ``on_progress``, when given, receives the event that
    :meth:`advance` or :meth:`emit` builds.
    """

    def __init__(
        self,
        total: int,
        on_progress: ProgressFn | None = None,
        *,
        interval_s: float = 0.5,
        done: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = total
        self.done = done
        self.interval_s = interval_s
        self.on_progress = on_progress
        self._clock = clock
        self._first_done = done
        self.start = clock()
        self._last_emit = -math.inf

    def due(self, done: int, now: float) -> bool:
        """True when an event for ``done`` units at time ``now`` should go out.

        That is: nothing was emitted yet, ``done`` reached ``total``, or ``interval_s``
        seconds have passed since the last :meth:`mark`.
        """
        return done >= self.total or now - self._last_emit >= self.interval_s

    def rate(self, done: int, now: float) -> float:
        """Units per second since construction; 0.0 when no time has passed yet."""
        elapsed = now - self.start
        return (done - self._first_done) / elapsed if elapsed > 0 else 0.0

    def eta_seconds(self, done: int, now: float) -> float | None:
        """Seconds left at the measured :meth:`rate`; ``None`` while that rate is 0."""
        rate = self.rate(done, now)
        return (self.total - done) / rate if rate > 0 else None

    def mark(self, now: float) -> None:
        """Note that an event went out at ``now`` (the throttle counts from there)."""
        self._last_emit = now

    def emit(self, now: float | None = None) -> dict[str, Any]:
        """Build, mark and send (to ``on_progress``) the event for the current ``done``; returns it.

        ``{"done": int, "total": int, "eta_seconds": float | None, "episodes_per_sec": float}``.
        """
        now = self._clock() if now is None else now
        event: dict[str, Any] = {
            "done": self.done,
            "total": self.total,
            "eta_seconds": self.eta_seconds(self.done, now),
            "episodes_per_sec": self.rate(self.done, now),
        }
        self.mark(now)
        if self.on_progress is not None:
            self.on_progress(event)
        return event

    def advance(self, count: int = 1) -> dict[str, Any] | None:
        """Add ``count`` finished units; returns the event emitted (see :meth:`emit`), or ``None``."""
        self.done += count
        now = self._clock()
        return self.emit(now) if self.due(self.done, now) else None


def check_stop(should_stop: StopFn | None, done: int, total: int) -> None:
    """Raise :class:`EvaluationStopped` when ``should_stop`` is given and returns True."""
    if should_stop is not None and should_stop():
        raise EvaluationStopped(done, total)
