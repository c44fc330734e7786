"""A job's lifecycle after it is written: queued, then finished, failed, stopped or requeued.

Every status change goes through here, in a transaction on the locked row, and is sent
to the job's groups on commit. An ``import`` job's staged upload is deleted when the job
ends, however it ends.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from learning.artifacts import artifacts_delete
from tasks_app.checkpoints import ArtifactCheckpointStore
from tasks_app.models import Job
from tasks_app.recorder import publish_job

logger = logging.getLogger(__name__)

MAX_LOG_ENTRIES = 100
"""Lifecycle entries kept on a Job row; older ones are dropped."""


def job_log(job: Job, message: str) -> None:
    """Append a lifecycle entry to ``job.log`` (in memory; the caller saves ``log``)."""
    job.log = [*job.log[-(MAX_LOG_ENTRIES - 1) :], {"at": timezone.now().isoformat(), "message": message}]


def job_log_resumption(job: Job, store: ArtifactCheckpointStore, run: str) -> None:
    """Log (and save) that ``run`` resumes from the store's checkpoint, if the store holds one."""
    step = store.latest_step()
    if step is not None:
        job_log(job, f"{run} resumes from its checkpoint at step {step}")
        job.save(update_fields=["log"])


def job_enqueue_on_commit(job: Job) -> None:
    """Queue the job's task once the row is committed, so a worker never sees a missing job.

    If the broker cannot be reached the job is failed with that reason rather than left
    queued forever.
    """
    job_id, queue = job.pk, job.queue

    def enqueue() -> None:
        from tasks_app.tasks import run_job

        try:
            run_job.apply_async(args=[job_id], queue=queue)
        except Exception as exc:
            logger.exception("could not enqueue job %s", job_id)
            failed = Job.objects.get(pk=job_id)
            job_fail(failed, f"could not reach the job queue: {exc}"[:500], "")

    transaction.on_commit(enqueue)


def job_discard_upload_on_commit(job: Job) -> None:
    """Delete an ``import`` job's staged upload once the transaction commits (other jobs have none)."""
    if job.kind == Job.Kind.IMPORT and job.config.get("upload"):
        upload = job.config["upload"]
        transaction.on_commit(lambda: artifacts_delete([upload]))


def job_finish(job: Job, status: str, *, model=None, evaluations=()) -> None:
    """End the job with ``status``, linking the model and evaluations it produced, and send it.

    A succeeded job's step is set to its total; the phase and its counts are cleared.
    """
    with transaction.atomic():
        # The recorder has moved the row on (event_seq, metrics, history) since ``job`` was read:
        # a final event built from the stale copy would carry an old sequence number, and
        # pages would drop it as out of date.
        job.refresh_from_db(from_queryset=Job.objects.select_for_update())
        job.status, job.finished_at, job.phase = status, timezone.now(), ""
        job.phase_done = job.phase_total = 0
        job.eta_seconds = None
        job.result_model = model
        if status == Job.Status.SUCCEEDED:
            job.step = job.total_steps
        job.event_seq += 1
        job.save(
            update_fields=[
                *("status", "finished_at", "phase", "phase_done", "phase_total", "eta_seconds"),
                *("result_model", "step", "event_seq"),
            ]
        )
        if evaluations:
            job.result_evaluations.set(evaluations)
        job_discard_upload_on_commit(job)
    transaction.on_commit(lambda: publish_job(job))


def job_fail(job: Job, summary: str, tb: str) -> None:
    """End the job as failed with a one-line ``summary`` (at most 500 characters) and a traceback."""
    job.error_summary, job.error_traceback = summary, tb
    job.save(update_fields=["error_summary", "error_traceback"])
    job_finish(job, Job.Status.FAILED)


def job_finish_stopped(job: Job) -> None:
    """End a run the engine stopped early: cancelled by its owner, or requeued after a worker shutdown."""
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job.pk)
        if job.cancel_requested:
            job_finish(job, Job.Status.CANCELLED)
        else:
            job_requeue(job, "the worker shut down; the job resumes from its checkpoint")


def job_requeue(job: Job, reason: str) -> None:
    """Queue a job again (it resumes from its checkpoint). Call in a transaction, the row locked."""
    job_log(job, reason)
    job.status, job.phase = Job.Status.QUEUED, f"requeued: {reason}"[:200]
    job.event_seq += 1
    job.save(update_fields=["status", "phase", "log", "event_seq"])
    job_enqueue_on_commit(job)
    transaction.on_commit(lambda: publish_job(job))


def job_requeue_or_fail(job: Job, reason: str) -> None:
    """Requeue a job whose worker was lost, or fail it once it has used ``JOB_MAX_ATTEMPTS``.

    Call in a transaction, the row locked.
    """
    if job.attempts < settings.JOB_MAX_ATTEMPTS:
        job_requeue(job, reason)
        return
    job_log(job, reason)
    job.save(update_fields=["log"])
    job_fail(job, f"{reason} and all {job.attempts} attempts are used", "")
