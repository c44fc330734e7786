"""The recorder's throttle and the watchdog's decisions, on the database without a worker."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from tasks_app import runtime
from tasks_app.models import Job
from tasks_app.recorder import MAX_HISTORY_POINTS, JobProgressRecorder

pytestmark = pytest.mark.django_db


@pytest.fixture
def job(user, digits, redis_server):
    return Job.objects.create(
        kind="meta_train",
        config={"algorithm": "protonet"},
        owner=user,
        domain=digits,
        queue="gpu",
        total_steps=1000,
        status="running",
        attempts=1,
        heartbeat_at=timezone.now(),
    )


def test_the_recorder_writes_at_most_every_interval_but_always_the_last_step(job):
    # given a recorder throttled to one write per hour
    recorder = JobProgressRecorder(job, min_interval=3600)

    # when 1000 events arrive at once
    for step in range(1, 1001):
        recorder({"step": step, "total": 1000, "loss": 1.0, "metrics": {}})

    # then only the first and the final one reached the row
    job.refresh_from_db()
    assert job.event_seq == 2 and job.step == 1000
    assert [p["step"] for p in job.history] == [1, 1000]


def test_each_run_of_a_comparison_keeps_its_phase_and_own_step_in_the_history(job):
    # given a transfer's two runs of 3 steps, reported on one 6-step progress bar
    recorder = JobProgressRecorder(job, min_interval=0)
    for phase, offset in (("transferring", 0), ("baseline", 3)):
        recorder.phase = phase
        for run_step in (1, 2, 3):
            recorder({"step": offset + run_step, "run_step": run_step, "total": 6, "loss": 1.0})

    # then each point says which run it belongs to and at which of its own steps
    job.refresh_from_db()
    assert [(p["phase"], p["run_step"], p["step"]) for p in job.history] == [
        ("transferring", 1, 1), ("transferring", 2, 2), ("transferring", 3, 3),
        ("baseline", 1, 4), ("baseline", 2, 5), ("baseline", 3, 6),
    ]  # fmt: skip


@pytest.mark.slow
def test_a_long_history_is_thinned_not_truncated(job):
    # given more events than the history keeps / when each is written
    total = 2 * MAX_HISTORY_POINTS + 50
    recorder = JobProgressRecorder(job, min_interval=0)
    for step in range(1, total + 1):
        recorder({"step": step, "total": total, "loss": 1.0 / step})

    # then the history spans the whole run, in order, within its bound
    job.refresh_from_db()
    steps = [p["step"] for p in job.history]
    assert len(steps) < MAX_HISTORY_POINTS and steps[0] == 1 and steps[-1] == total and steps == sorted(steps)


def test_the_watchdog_requeues_a_silent_job_then_fails_it_after_the_last_attempt(
    job, settings, django_capture_on_commit_callbacks
):
    # given a running job whose heartbeat stopped long ago
    settings.JOB_MAX_ATTEMPTS = 2
    Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))

    # when the watchdog looks / then the job is queued again (and re-enqueued on commit)
    with django_capture_on_commit_callbacks() as callbacks:
        assert runtime.jobs_recover_stale() == [job.pk]
    job.refresh_from_db()
    assert job.status == "queued" and "worker lost" in job.phase and len(callbacks) == 2

    # given the second attempt went silent too
    Job.objects.filter(pk=job.pk).update(
        status="running", attempts=2, heartbeat_at=timezone.now() - timedelta(hours=1)
    )

    # then the job fails for good, with the reason
    runtime.jobs_recover_stale()
    job.refresh_from_db()
    assert job.status == "failed" and "stopped sending heartbeats" in job.error_summary
    assert "all 2 attempts are used" in job.error_summary


def test_the_watchdog_leaves_live_jobs_alone(job):
    assert runtime.jobs_recover_stale() == []
    job.refresh_from_db()
    assert job.status == "running"


def test_a_duplicate_delivery_does_not_run_a_live_or_finished_job(job):
    # given a job alive on another worker / when a second delivery arrives / then nothing changes
    runtime.job_run(job_id=job.pk, worker_host="other")
    job.refresh_from_db()
    assert job.attempts == 1 and job.status == "running"

    Job.objects.filter(pk=job.pk).update(status="succeeded")
    runtime.job_run(job_id=job.pk, worker_host="other")
    assert Job.objects.get(pk=job.pk).attempts == 1


def test_a_flush_writes_the_event_the_throttle_held_back(job):
    # given a throttled recorder that wrote step 1 and held back step 2
    recorder = JobProgressRecorder(job, min_interval=3600)
    recorder({"step": 1, "total": 1000, "loss": 1.0})
    recorder({"step": 2, "total": 1000, "loss": 0.5})
    assert Job.objects.get(pk=job.pk).step == 1

    # when the run stops early and flushes
    recorder.flush()

    # then the row and its history end on the last step the engine reported
    job.refresh_from_db()
    assert job.step == 2 and [p["step"] for p in job.history] == [1, 2]


def test_a_resumed_run_s_points_replace_the_ones_after_its_checkpoint(job):
    # given a history up to step 30, and a run that resumes from its checkpoint at step 20
    recorder = JobProgressRecorder(job, min_interval=0)
    for step in (10, 20, 30):
        recorder({"step": step, "total": 1000, "loss": 1.0})
    resumed = JobProgressRecorder(Job.objects.get(pk=job.pk), min_interval=0)

    # when it reports step 21 again
    resumed({"step": 21, "total": 1000, "loss": 0.9})

    # then the points before it are kept and the ones after the checkpoint are gone
    job.refresh_from_db()
    assert [p["step"] for p in job.history] == [10, 20, 21]
