"""The job list answers questions: filter by status, kind, algorithm and domain, search by name, sort by
date or duration, with each job's duration and first result in its row."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from learning.templatetags.catalog import duration
from tasks_app.models import Job

pytestmark = pytest.mark.django_db


def _job(user_client, algorithm: str, name: str) -> Job:
    body = {
        "domain": "digits",
        "algorithm": algorithm,
        "task": {"n_way": 5, "query_size": 5},
        "hyperparameters": {"steps": 5},
        "model_name": name,
    }
    return Job.objects.get(pk=user_client.post("/api/v1/jobs/", body, format="json").json()["id"])


def test_filters_search_and_sort_narrow_and_order_the_jobs(client, user, user_client, digits):
    now = timezone.now()
    short = _job(user_client, "protonet", "short proto")
    long = _job(user_client, "maml", "long maml")
    queued = _job(user_client, "protonet", "waiting proto")
    Job.objects.filter(pk=short.pk).update(
        status="succeeded", started_at=now - timedelta(seconds=50), finished_at=now
    )
    Job.objects.filter(pk=long.pk).update(
        status="failed", started_at=now - timedelta(hours=2), finished_at=now
    )
    client.force_login(user)

    def shown(**query) -> list[int]:
        page = client.get(reverse("job-list"), query)
        assert page.status_code == 200
        return [job.pk for job in page.context["jobs"]]

    assert shown() == [queued.pk, long.pk, short.pk]
    assert shown(status="succeeded") == [short.pk]
    assert shown(algorithm="maml") == [long.pk]
    assert shown(q="proto") == [queued.pk, short.pk]
    assert shown(sort="longest") == [long.pk, short.pk, queued.pk]  # never started: last
    assert shown(sort="oldest") == [short.pk, long.pk, queued.pk]
    html = client.get(reverse("job-list")).content.decode()
    assert "2 h 00 min" in html and "50 s" in html


def test_durations_read_like_a_person_would_say_them():
    assert [duration(s) for s in (None, 4.4, 185, 3720)] == ["—", "4 s", "3 min 05 s", "1 h 02 min"]


def test_the_api_searches_and_filters_jobs_and_models_the_same_way(user_client, user, stranger, digits):
    from learning.services.models import metamodel_register
    from tests.weights import model_weights

    proto = _job(user_client, "protonet", "short proto")
    _job(user_client, "maml", "long maml")
    found = user_client.get("/api/v1/jobs/", {"search": "proto", "algorithm": "protonet"}).json()["results"]
    assert [j["id"] for j in found] == [proto.pk]

    metamodel_register(
        name="mine", algorithm="protonet", architecture="conv4", weights=model_weights(), owner=user
    )
    metamodel_register(
        name="theirs", algorithm="protonet", architecture="conv4", weights=model_weights(), owner=stranger
    )
    mine = user_client.get("/api/v1/models/", {"owner": "ada"}).json()["results"]
    assert [m["name"] for m in mine] == ["mine"]


def test_the_home_page_shows_a_signed_in_users_running_and_ended_jobs(client, user, user_client, digits):
    running = _job(user_client, "protonet", "still going")
    ended = _job(user_client, "maml", "all done")
    Job.objects.filter(pk=running.pk).update(status="running", step=3, started_at=timezone.now())
    Job.objects.filter(pk=ended.pk).update(status="succeeded", finished_at=timezone.now())
    client.force_login(user)

    html = client.get("/").content.decode()

    active = html.split('id="active-jobs"')[1].split("</section>")[0]
    feed = html.split('id="ended-jobs"')[1].split("</section>")[0]
    assert "still going" in active and "all done" not in active
    assert "all done" in feed and "still going" not in feed
