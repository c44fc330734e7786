"""A job's newest checkpoint can be downloaded by its owner, from the page and the API."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tasks_app.checkpoints import ArtifactCheckpointStore
from tasks_app.models import Job
from tests.weights import model_weights

pytestmark = pytest.mark.django_db

BODY = {"domain": "digits", "algorithm": "protonet", "task": {"n_way": 5, "query_size": 5}}


def test_the_newest_whole_checkpoint_downloads_from_the_page_and_the_api(client, user, user_client, digits):
    job = Job.objects.get(pk=user_client.post("/api/v1/jobs/", BODY, format="json").json()["id"])
    older, newer = model_weights(seed=1), model_weights(seed=2)
    store = ArtifactCheckpointStore(job.pk)
    store.save(10, older)
    store.save(20, newer)
    client.force_login(user)

    page = client.get(reverse("job-checkpoint", args=[job.pk]))
    api = user_client.get(f"/api/v1/jobs/{job.pk}/checkpoint/")

    for response in (page, api):
        assert response.status_code == 200 and response.content == newer
        assert response["Content-Disposition"] == f'attachment; filename="job-{job.pk}-step-20.safetensors"'
    assert 'id="download-checkpoint"' in client.get(reverse("job-detail", args=[job.pk])).content.decode()


def test_missing_checkpoints_and_strangers_get_a_404_that_says_why(client, stranger, user_client, digits):
    job_id = user_client.post("/api/v1/jobs/", BODY, format="json").json()["id"]

    none_yet = user_client.get(f"/api/v1/jobs/{job_id}/checkpoint/")
    bad_run = user_client.get(f"/api/v1/jobs/{job_id}/checkpoint/", {"run": "scratch"})

    assert none_yet.status_code == 404 and "none saved yet" in none_yet.json()["detail"]
    assert (
        bad_run.status_code == 404 and "no checkpoint run 'scratch' (runs: main)" in bad_run.json()["detail"]
    )
    client.force_login(stranger)
    assert client.get(reverse("job-checkpoint", args=[job_id])).status_code == 404
