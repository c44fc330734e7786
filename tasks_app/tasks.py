"""Celery tasks: thin, id-taking, idempotent wrappers around ``tasks_app.runtime``."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings


@shared_task(
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=settings.JOB_SOFT_TIME_LIMIT,
    time_limit=settings.JOB_SOFT_TIME_LIMIT + 60,
)
def run_job(self, job_id: int) -> None:
    """Run or resume one job; a duplicate delivery of a job that is final or alive does nothing."""
    from tasks_app.runtime import job_run

    job_run(job_id=job_id, worker_host=self.request.hostname)


@shared_task(acks_late=True, soft_time_limit=60, time_limit=90)
def recover_stale_jobs() -> list[int]:
    """Periodic: requeue or fail jobs whose worker stopped sending heartbeats."""
    from tasks_app.runtime import jobs_recover_stale

    return jobs_recover_stale()
