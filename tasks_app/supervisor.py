"""Supervision of the processes the one-machine run command starts.

Each child runs in its own process group, so that Ctrl-C at the terminal reaches only
the run command, and so that stopping or cleaning up after a child also reaches what it
started (a Celery worker's pool processes). A child that exits on its own is restarted
after a delay that doubles with each quick failure, so one crashing part never takes the
site down and a part that cannot start does not spin.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

FIRST_BACKOFF_S = 1.0
MAX_BACKOFF_S = 30.0
STABLE_AFTER_S = 60.0
"""A child that ran this long before it exited counts as healthy: its next restart is immediate."""


def _kill_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


@dataclass
class Child:
    """One supervised process: a ``python`` command line and what to do when it dies."""

    name: str
    args: list[str]
    on_exit: Callable[[int], None] | None = None
    """Called with the exit status after the child and its process group are gone."""
    proc: subprocess.Popen | None = None
    started_at: float = 0.0
    quick_failures: int = 0
    restart_at: float | None = None
    restarts: int = 0

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, *self.args], env=os.environ.copy(), start_new_session=True
        )
        self.started_at = time.monotonic()
        self.restart_at = None


class Supervisor:
    """Starts children, restarts the ones that die (with backoff), and stops them all."""

    def __init__(self, *, say: Callable[[str], None]) -> None:
        self.say = say
        self.children: list[Child] = []

    def start(self, name: str, args: list[str], *, on_exit: Callable[[int], None] | None = None) -> Child:
        child = Child(name=name, args=args, on_exit=on_exit)
        child.start()
        self.children.append(child)
        return child

    def poll(self) -> None:
        """Notice children that exited, clean up after them, and restart the ones that are due."""
        now = time.monotonic()
        for child in self.children:
            if child.restart_at is not None:
                if now >= child.restart_at:
                    child.restarts += 1
                    child.start()
                    self.say(f"{child.name} restarted (pid {child.proc.pid}).")
                continue
            status = child.proc.poll()
            if status is None:
                continue
            # The group outlives its leader: a worker's pool processes would go on running a job.
            _kill_group(child.proc.pid, signal.SIGKILL)
            if child.on_exit is not None:
                try:
                    child.on_exit(status)
                except Exception as exc:  # the watchdog still finds its jobs; the supervisor must go on
                    self.say(f"{child.name}: clean-up after its exit failed: {exc}")
            ran = now - child.started_at
            child.quick_failures = 0 if ran >= STABLE_AFTER_S else child.quick_failures + 1
            delay = 0.0 if child.quick_failures == 0 else FIRST_BACKOFF_S * 2 ** (child.quick_failures - 1)
            delay = min(delay, MAX_BACKOFF_S)
            child.restart_at = now + delay
            self.say(
                f"{child.name} exited with status {status} after {ran:.0f} s; restarting in {delay:.0f} s."
            )

    def stop(self, *, grace_s: float) -> None:
        """SIGTERM every child's process group, wait up to ``grace_s``, then SIGKILL what is left."""
        running = [c for c in self.children if c.restart_at is None and c.proc.poll() is None]
        for child in running:
            _kill_group(child.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for child in running:
            try:
                child.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.say(f"{child.name} did not stop within {grace_s:.0f} s; killing it.")
        for child in self.children:
            if child.proc is not None:
                _kill_group(child.proc.pid, signal.SIGKILL)
                child.proc.wait()
