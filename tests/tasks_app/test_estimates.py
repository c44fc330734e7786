"""The launch form's duration estimate comes from the jobs that finished on this site."""

from __future__ import annotations

import pytest
from django.urls import reverse

from learning.services.models import metamodel_register
from tasks_app.estimates import seconds_per_task_step
from tasks_app.models import Job
from tests.weights import model_weights

pytestmark = pytest.mark.django_db


def _finished(user_client, algorithm: str, steps: int, meta_batch: int, seconds: float) -> None:
    body = {
        "domain": "digits",
        "algorithm": algorithm,
        "task": {"n_way": 5, "query_size": 5},
        "hyperparameters": {"steps": steps, "meta_batch": meta_batch},
    }
    job = Job.objects.get(pk=user_client.post("/api/v1/jobs/", body, format="json").json()["id"])
    model = metamodel_register(
        name="m", algorithm=algorithm, architecture="conv4", weights=model_weights(algorithm),
        metrics={"train_seconds": seconds},
    )  # fmt: skip
    Job.objects.filter(pk=job.pk).update(status="succeeded", result_model=model)


def test_the_speed_is_the_median_per_task_step_of_finished_jobs(user_client, digits, client, user):
    _finished(user_client, "protonet", steps=100, meta_batch=1, seconds=10.0)  # 0.1 s a task step
    _finished(user_client, "protonet", steps=100, meta_batch=2, seconds=60.0)  # 0.3
    _finished(user_client, "protonet", steps=200, meta_batch=1, seconds=40.0)  # 0.2

    speeds = seconds_per_task_step()

    assert speeds == {"protonet": {"seconds": pytest.approx(0.2), "jobs": 3}}
    client.force_login(user)
    html = client.get(reverse("job-launch")).content.decode()
    assert 'id="job-speeds"' in html and 'id="estimate"' in html
