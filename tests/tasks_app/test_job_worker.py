"""Jobs on real Celery worker processes and a real Redis broker: success, worker loss, cancel."""

from __future__ import annotations

import time

import pytest

from learning.models import Evaluation, MetaModel
from tasks_app.models import Job
from tests.tasks_app.conftest import TINY_PROTONET, wait_for

pytestmark = [pytest.mark.slow]


def _launch(client, **hyperparameters) -> Job:
    response = client.post(
        "/api/v1/jobs/",
        {
            "domain": "digits",
            "algorithm": "protonet",
            "task": {"n_way": 5, "k_shot": 1, "query_size": 5},
            "hyperparameters": {**TINY_PROTONET, **hyperparameters},
            "model_name": "tiny protonet",
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    return Job.objects.get(pk=response.json()["id"])


def _status(job: Job) -> str:
    job.refresh_from_db()
    return job.status


def test_a_job_submitted_through_the_api_trains_on_a_worker_and_lands_in_the_catalog(
    processes, user_client, digits
):
    # given a real worker
    processes.worker("w1")

    # when a tiny ProtoNet is submitted through the API
    job = _launch(user_client)

    # then the worker runs it to success
    wait_for(lambda: _status(job) in Job.FINAL_STATUSES, timeout=240, message=processes.logs())
    assert job.status == "succeeded", f"{job.error_summary}\n{job.error_traceback}\n{processes.logs()}"

    # and the model and its meta-test evaluation stand in the catalog, linked from the job
    model = MetaModel.objects.get(pk=job.result_model_id)
    assert model.algorithm == "protonet" and model.weights_size > 0 and len(model.weights_sha256) == 64
    assert list(model.trained_on.all()) == [digits] and model.task_spec == job.task_spec
    evaluation = Evaluation.objects.get(model=model)
    assert evaluation.episodes >= 600 and evaluation.metric == "accuracy" and 0 <= evaluation.mean <= 1
    assert list(job.result_evaluations.all()) == [evaluation]
    assert job.step == job.total_steps == 40 and job.attempts == 1 and job.history
    assert user_client.get(f"/api/v1/models/{model.pk}/").status_code == 200


def test_a_killed_worker_s_job_resumes_from_its_checkpoint_on_another_worker(processes, user_client, digits):
    # given a job that checkpoints every 10 steps, running on worker 1
    first = processes.worker("w1")
    job = _launch(user_client, steps=400)
    wait_for(lambda: (job.refresh_from_db() or job.step) >= 30, timeout=180, message=processes.logs())

    # when worker 1 dies with SIGKILL mid-job, and a second worker (with the watchdog) is up
    processes.kill(first)
    step_at_kill = Job.objects.get(pk=job.pk).step
    processes.worker("w2", beat=True)

    # then the job is taken up again, resumes past its last checkpoint, and succeeds
    wait_for(lambda: _status(job) == "running" and job.attempts == 2, timeout=120, message=processes.logs())
    steps_seen = []

    def finished() -> bool:
        job.refresh_from_db()
        steps_seen.append(job.step)
        return job.is_final

    wait_for(finished, timeout=300, message=processes.logs())
    assert job.status == "succeeded", f"{job.error_summary}\n{processes.logs()}"
    assert job.attempts == 2 and job.result_model_id
    resumed_from = min(s for s in steps_seen if s > 0)
    assert resumed_from >= 10 and resumed_from >= step_at_kill - 10, (step_at_kill, steps_seen[:20])


def test_cancel_stops_a_running_job_within_two_seconds(processes, user_client, digits):
    # given a long job running on a worker
    processes.worker("w1")
    job = _launch(user_client, steps=100_000)
    wait_for(lambda: (job.refresh_from_db() or job.step) > 0, timeout=180, message=processes.logs())

    # when the user cancels it
    step_before = job.step
    started = time.monotonic()
    assert user_client.post(f"/api/v1/jobs/{job.pk}/cancel/").status_code == 200

    # then it is cancelled within 2 seconds, and no model is registered
    wait_for(lambda: _status(job) == "cancelled", timeout=10, interval=0.05, message=processes.logs())
    assert time.monotonic() - started <= 2.0
    assert job.result_model_id is None and MetaModel.objects.count() == 0
    # and it keeps the steps it did: "3 / 100000", not "0 / 100000" (the last throttled event is written)
    job.refresh_from_db()
    assert job.step >= step_before > 0 and job.history[-1]["step"] == job.step
