"""Reads of jobs, scoped to the asking user."""

from __future__ import annotations

from django.db.models import QuerySet
from django.http import Http404

from tasks_app.models import Job


def job_list(*, user) -> QuerySet[Job]:
    return Job.objects.visible_to(user).select_related(
        "domain", "task_spec", "result_model", "source_model", "owner"
    )


def job_get(*, user, pk: int) -> Job:
    """The job if ``user`` may see it; anyone else gets 404, as if it did not exist."""
    try:
        return job_list(user=user).get(pk=pk)
    except Job.DoesNotExist as exc:
        raise Http404(f"no job {pk}") from exc


def job_snapshot(job: Job, *, history_after_step: int | None = None) -> dict:
    """The job's state as pages and sockets show it (the same shape as a progress event).

    With ``history_after_step`` the history holds only the points after that step, and
    ``history_after`` says so: a reconnecting page has the earlier ones already.
    """
    history = job.history
    if history_after_step is not None:
        history = [point for point in history if point["step"] > history_after_step]
    return {
        "id": job.pk,
        "seq": job.event_seq,
        "kind": job.kind,
        "status": job.status,
        "phase": job.phase,
        "step": job.step,
        "total": job.total_steps,
        "percent": round(job.progress_percent, 1),
        "phase_done": job.phase_done,
        "phase_total": job.phase_total,
        "phase_percent": round(job.phase_percent, 1),
        "metrics": job.metrics,
        "eta_seconds": job.eta_seconds,
        "history": history,
        "history_after": history_after_step,
        "error": job.error_summary,
        "attempts": job.attempts,
        "log": job.log,
        "result_model": job.result_model_id,
        "result_model_url": f"/models/{job.result_model_id}/" if job.result_model_id else None,
        "result_model_name": job.result_model.name if job.result_model_id else None,
        "updated": (job.heartbeat_at or job.created_at).isoformat(),
    }


def running_worker_hosts() -> list[str]:
    """The distinct worker names that running jobs are assigned to."""
    return list(
        Job.objects.filter(status=Job.Status.RUNNING)
        .order_by()
        .values_list("worker_host", flat=True)
        .distinct()
    )
