"""The progress recorder: engine progress events → the Job row, then the channel layer.

The Job row is updated at most every ``min_interval`` seconds (and always for the
first and the final step), and each update bumps ``event_seq`` and is sent to ``job.<id>`` and the
owner's dashboard group with that sequence number.
"""

from __future__ import annotations

import time
from typing import Any

from django.db.models import F
from django.utils import timezone

from tasks_app import events
from tasks_app.models import Job

MAX_HISTORY_POINTS = 200
"""The metric history kept on a Job row; older points are thinned to every other one."""


def _thin(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Halve a full history, keeping the first and the latest point."""
    if len(history) < MAX_HISTORY_POINTS:
        return history
    return [*history[:-1:2], history[-1]]


class JobProgressRecorder:
    """Callable handed to the engine as ``on_progress``."""

    def __init__(self, job: Job, *, min_interval: float = 0.5, phase: str = "training") -> None:
        self.job_id = job.pk
        self.owner_id = job.owner_id
        self.min_interval = min_interval
        self.phase = phase
        self.history = list(job.history)
        self._last_write: float | None = None
        self._last_step_written = -1
        self._held: dict[str, Any] | None = None

    def __call__(self, event: dict[str, Any]) -> None:
        now = time.monotonic()
        final = event["step"] >= event["total"]
        if not final and self._last_write is not None and now - self._last_write < self.min_interval:
            self._held = event
            return
        self._last_write, self._held = now, None
        point = {"step": event["step"], "loss": event.get("loss"), **(event.get("metrics") or {})}
        if "run_step" in event:
            # A job of several runs (transfer, then its baseline): the chart draws each on its own.
            point.update(phase=self.phase, run_step=event["run_step"])
        if event["step"] != self._last_step_written:
            # A resumed run repeats the steps after its checkpoint: their new points replace the old.
            earlier = [p for p in self.history if p["step"] < event["step"]]
            self.history = _thin([*earlier, point])
            self._last_step_written = event["step"]
        metrics = {"loss": event.get("loss"), **(event.get("metrics") or {})}
        self.write(
            step=event["step"],
            total=event["total"],
            metrics=metrics,
            eta=event.get("eta_seconds"),
            phase=self.phase,
        )

    def flush(self) -> None:
        """Write the last event the throttle held back (a run that stopped early ends on it)."""
        if self._held is not None:
            self._last_write = None
            self(self._held)

    def write(
        self, *, step: int, total: int, metrics: dict, eta: float | None, phase: str = "training"
    ) -> None:
        Job.objects.filter(pk=self.job_id).update(
            step=step,
            total_steps=total,
            metrics=metrics,
            eta_seconds=eta,
            history=self.history,
            phase=phase,
            phase_done=0,
            phase_total=0,
            heartbeat_at=timezone.now(),
            event_seq=F("event_seq") + 1,
        )
        self.publish()

    def phase_progress(self, *, phase: str, done: int, total: int, eta: float | None) -> None:
        """A phase counted in its own units (evaluation episodes), throttled like training events."""
        now = time.monotonic()
        if done < total and self._last_write is not None and now - self._last_write < self.min_interval:
            return
        self._last_write = now
        Job.objects.filter(pk=self.job_id).update(
            phase=phase,
            phase_done=done,
            phase_total=total,
            eta_seconds=eta,
            heartbeat_at=timezone.now(),
            event_seq=F("event_seq") + 1,
        )
        self.publish()

    def publish(self) -> None:
        """Send the row's current state (after an update) to the job's groups."""
        publish_job(Job.objects.get(pk=self.job_id))


def publish_job(job: Job) -> None:
    """Send a job's current state to its groups (used after every status change too)."""
    from tasks_app.selectors import job_snapshot

    payload = job_snapshot(job)
    payload.pop("history")
    payload["point"] = job.history[-1] if job.history else None
    events.send_job_event(job_id=job.pk, owner_id=job.owner_id, payload=payload)
