"""What a job makes from private data is private unless its owner says otherwise."""

from __future__ import annotations

import pytest

from learning.models import TaskSpec, Visibility
from tasks_app.models import Job
from tests.learning.factories import image_domain

pytestmark = pytest.mark.django_db


def _launch(client, domain, **extra):
    body = {
        "domain": domain.slug,
        "algorithm": "protonet",
        "task": {"n_way": 2, "k_shot": 1, "query_size": 1},
        "hyperparameters": {"steps": 2},
        **extra,
    }
    return client.post("/api/v1/jobs/", body, format="json")


def test_a_job_on_a_private_domain_makes_private_things_by_default(user, user_client):
    # given a private domain / when a job is launched on it without a visibility
    domain = image_domain(owner=user, visibility=Visibility.PRIVATE, classes={f"c{i}": 4 for i in range(6)})
    response = _launch(user_client, domain)
    # then the model it will register, and its new task spec, are private
    assert response.status_code == 201, response.json()
    job = Job.objects.get(pk=response.json()["id"])
    assert job.config["visibility"] == Visibility.PRIVATE
    assert TaskSpec.objects.get(pk=job.task_spec_id).visibility == Visibility.PRIVATE


def test_an_owner_may_still_choose_public_and_public_data_stays_public(user, user_client):
    private = image_domain(owner=user, visibility=Visibility.PRIVATE, classes={f"c{i}": 4 for i in range(6)})
    public = image_domain(owner=user, classes={f"c{i}": 4 for i in range(6)})
    chosen = _launch(user_client, private, visibility="public")
    default = _launch(user_client, public)
    assert Job.objects.get(pk=chosen.json()["id"]).config["visibility"] == Visibility.PUBLIC
    assert Job.objects.get(pk=default.json()["id"]).config["visibility"] == Visibility.PUBLIC


def _zip(tmp_path, name):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from tests.learning.factories import make_image_zip

    path = make_image_zip(tmp_path / name, {"alpha": 3, "beta": 3}, variant=4242)
    return SimpleUploadedFile(f"{name}", path.read_bytes(), "application/zip")


def test_someone_s_private_copy_neither_blocks_nor_names_itself_to_another_importer(
    user_client, stranger_client, tmp_path
):
    # given ada's private domain
    first = user_client.post(
        "/api/v1/domains/",
        {"name": "Ada's secret strokes", "file": _zip(tmp_path, "a.zip"), "visibility": "private"},
        format="multipart",
    )
    assert first.status_code == 201, first.json()
    # when eve uploads the very same bytes
    second = stranger_client.post(
        "/api/v1/domains/", {"name": "Eve's strokes", "file": _zip(tmp_path, "b.zip")}, format="multipart"
    )
    # then eve's import goes through, and nothing in it names ada's domain
    assert second.status_code == 201, second.json()
    assert b"secret" not in second.content
    # and ada herself is still told she has it already
    again = user_client.post(
        "/api/v1/domains/", {"name": "Ada again", "file": _zip(tmp_path, "c.zip")}, format="multipart"
    )
    assert again.status_code == 400 and "already in the catalog" in str(again.json())
