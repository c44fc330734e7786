"""The worker side of jobs: claim a job, keep its heartbeat, run its runner, and the watchdog.

``job_run`` is what a Celery worker (and the foreground management commands) execute; it
is idempotent: a job already final, or running on a live worker, is left alone, and a
job whose worker died resumes from its last checkpoint. ``jobs_recover_stale`` and
``jobs_requeue_lost`` take back jobs whose worker stopped.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import traceback
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import Q
from django.utils import timezone

from learning.engine.progress import EvaluationStopped, ProgressFn
from learning.errors import InvalidInput
from tasks_app.lifecycle import job_fail, job_finish_stopped, job_log, job_requeue_or_fail
from tasks_app.models import Job
from tasks_app.recorder import publish_job

logger = logging.getLogger(__name__)

TRACEBACK_LIMIT = 8000
"""Characters of a failure's traceback kept on the Job row (its end, where the error is)."""


def heartbeat_timeout() -> timedelta:
    """How old a running job's heartbeat may get before its worker counts as lost."""
    return timedelta(seconds=settings.JOB_HEARTBEAT_TIMEOUT)


def process_alive(pid: int) -> bool:
    """Whether a process of this machine with that pid still runs (a zombie counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


# --- claiming and running --------------------------------------------------------------


def _runner_gone(job: Job, worker_host: str) -> bool:
    """The job's last runner was a process of this very worker, and it is dead.

    A worker whose pool process was killed gets the job's message back at once
    (``reject_on_worker_lost``); without this it would wait for the heartbeat to go stale.
    """
    return job.worker_host == worker_host and job.worker_pid is not None and not process_alive(job.worker_pid)


def _claim(job_id: int, worker_host: str) -> Job | None:
    """Mark the job running on this worker, or return None if it is not ours to run."""
    stale_before = timezone.now() - heartbeat_timeout()
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(pk=job_id).first()
        if job is None or job.is_final:
            return None
        alive = job.heartbeat_at and job.heartbeat_at > stale_before and not _runner_gone(job, worker_host)
        if job.status == Job.Status.RUNNING and alive:
            return None  # a duplicate delivery while a live worker has it
        if job.attempts >= settings.JOB_MAX_ATTEMPTS:
            job_fail(job, f"gave up after {job.attempts} attempts; the worker was lost each time", "")
            return None
        now = timezone.now()
        job.status, job.worker_host, job.heartbeat_at = Job.Status.RUNNING, worker_host, now
        job.worker_pid = os.getpid()
        job.attempts += 1
        job.started_at = job.started_at or now
        job.phase = "starting" if job.attempts == 1 else "resuming"
        job_log(job, f"attempt {job.attempts} started on {worker_host} (process {job.worker_pid})")
        job.save(
            update_fields=[
                "status",
                "worker_host",
                "worker_pid",
                "heartbeat_at",
                "attempts",
                "started_at",
                "phase",
                "log",
            ]
        )
    publish_job(job)
    return job


class _Heartbeat:
    """Keeps ``heartbeat_at`` fresh from a thread while the job runs, even in long steps."""

    def __init__(self, job_id: int, interval: float) -> None:
        self.job_id, self.interval = job_id, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        from django.db import connection

        try:
            while not self._stop.wait(self.interval):
                try:
                    Job.objects.filter(pk=self.job_id, status=Job.Status.RUNNING).update(
                        heartbeat_at=timezone.now()
                    )
                except DatabaseError:
                    # A missed beat is harmless (the watchdog waits several); a crashed thread is not.
                    logger.warning("heartbeat of job %s failed", self.job_id, exc_info=True)
        finally:
            connection.close()


class _ShutdownRequest:
    """SIGTERM to the process that runs a job becomes a stop at the engine's next step.

    The engine then saves a checkpoint and the job is queued again, so stopping the system
    (Ctrl-C on the run command) loses no training. Signal handlers can only be set from a
    process's main thread, where a prefork Celery worker runs its task.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None
        self._installed = False

    def __enter__(self) -> _ShutdownRequest:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
            self._installed = True
        return self

    def _handle(self, signum: int, frame: object) -> None:
        self.requested = True

    def __exit__(self, *exc: object) -> None:
        if self._installed:
            signal.signal(signal.SIGTERM, self._previous)


class _StopPoll:
    """``should_stop`` for the engine: a shutdown, or the cancel flag read at most every ``interval`` s."""

    def __init__(self, job_id: int, shutdown: _ShutdownRequest, interval: float = 0.3) -> None:
        self.job_id, self.shutdown, self.interval = job_id, shutdown, interval
        self._next = 0.0
        self._cancelled = False

    def __call__(self) -> bool:
        now = time.monotonic()
        if not self._cancelled and now >= self._next:
            self._next = now + self.interval
            self._cancelled = Job.objects.filter(pk=self.job_id, cancel_requested=True).exists()
        return self._cancelled or self.shutdown.requested


def job_run(*, job_id: int, worker_host: str | None = None, also_report: ProgressFn | None = None) -> None:
    """Run (or resume) a job to a final status with the runner of its kind. Safe to call again.

    ``also_report`` receives every engine progress event too (the command line's progress bar).
    """
    job = _claim(job_id, worker_host or socket.gethostname())
    if job is None:
        return
    try:
        # Imported here: the runners load the engine (torch), which the run command's own
        # process, importing this module for the watchdog functions, does not need.
        from tasks_app.runners import RUNNERS

        with _Heartbeat(job.pk, settings.JOB_HEARTBEAT_INTERVAL), _ShutdownRequest() as shutdown:
            runner = RUNNERS.get(job.kind)
            if runner is None:
                raise InvalidInput(f"job kind {job.kind!r} is not runnable yet")
            runner(job, should_stop=_StopPoll(job.pk, shutdown), also_report=also_report).run()
    except EvaluationStopped:
        job_finish_stopped(job)
    except Exception as exc:
        job.refresh_from_db()
        job_fail(job, f"{type(exc).__name__}: {exc}"[:500], traceback.format_exc()[-TRACEBACK_LIMIT:])
        logger.exception("job %s failed", job.pk)


# --- the watchdog -----------------------------------------------------------------------


def jobs_recover_stale() -> list[int]:
    """Find running jobs whose heartbeat stopped; requeue them to resume, or fail them for good.

    A worker killed mid-job stops its heartbeat. The job is queued again (it resumes
    from its last checkpoint) until it has used ``JOB_MAX_ATTEMPTS``; then it is marked
    failed with the reason. Returns the ids it touched.
    """
    stale_before = timezone.now() - heartbeat_timeout()
    touched: list[int] = []
    stale = Job.objects.filter(status=Job.Status.RUNNING).filter(
        Q(heartbeat_at__lt=stale_before) | Q(heartbeat_at__isnull=True)
    )
    for job_id in stale.values_list("pk", flat=True):
        with transaction.atomic():
            job = Job.objects.select_for_update().get(pk=job_id)
            if job.status != Job.Status.RUNNING or (job.heartbeat_at and job.heartbeat_at >= stale_before):
                continue
            last = job.heartbeat_at.isoformat(timespec="seconds") if job.heartbeat_at else "never"
            job_requeue_or_fail(
                job, f"worker lost: {job.worker_host or '?'} stopped sending heartbeats (last {last})"
            )
            touched.append(job_id)
    return touched


def jobs_requeue_lost(*, worker_host: str, reason: str) -> list[int]:
    """Requeue (or fail, after the last attempt) the running jobs of a worker known to be dead.

    The run command calls this when a worker it supervises dies and when it starts after
    a previous run of it stopped, so those jobs resume at once instead of waiting for the
    watchdog to see their heartbeat go stale. Returns the ids it touched.
    """
    touched: list[int] = []
    for job_id in Job.objects.filter(status=Job.Status.RUNNING, worker_host=worker_host).values_list(
        "pk", flat=True
    ):
        with transaction.atomic():
            job = Job.objects.select_for_update().get(pk=job_id)
            if job.status == Job.Status.RUNNING and job.worker_host == worker_host:
                job_requeue_or_fail(job, reason)
                touched.append(job_id)
    return touched
