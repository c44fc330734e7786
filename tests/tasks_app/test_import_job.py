"""Large domain uploads become ``import`` jobs: 202 from the API, a worker imports, nothing left behind."""

from __future__ import annotations

import asyncio
import io
import uuid
import zipfile
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core.files.uploadedfile import SimpleUploadedFile

from learning.errors import InvalidInput
from learning.models import SourceDomain
from learning.services.domains import domain_import
from tasks_app.events import job_group
from tasks_app.models import Job
from tasks_app.runtime import job_run
from tests.learning.factories import image_files, png_bytes
from tests.tasks_app.conftest import wait_for

URL = "/api/v1/domains/"


@pytest.fixture(autouse=True)
def tiny_inline_limit(settings):
    """Any upload over 1,000 bytes counts as large (the test zips hold a few kilobytes)."""
    settings.IMPORT_INLINE_MAX_BYTES = 1000


def _zip(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def _upload(content: bytes, name: str = "strokes.zip") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content, content_type="application/zip")


def _post(client, content: bytes, name: str, **fields):
    return client.post(URL, {"name": name, "file": _upload(content), **fields}, format="multipart")


def _files(root: Path, folder: str) -> list[Path]:
    return [p for p in (root / folder).rglob("*") if p.is_file()] if (root / folder).exists() else []


def _inline_error(content: bytes) -> str:
    """The message an inline import of the same upload gives."""
    with pytest.raises(InvalidInput) as caught:
        domain_import(source=_upload(content), name="Inline twin")
    return caught.value.message


def _subscribe(job_id: int) -> str:
    # A plain channel name, not a process-local one from new_channel(): those are read through a
    # buffer bound to the event loop that made it, and each async_to_sync call may run another.
    channel = f"test-import-events.{uuid.uuid4().hex}"
    async_to_sync(get_channel_layer().group_add)(job_group(job_id), channel)
    return channel


def _received(channel: str) -> list[dict]:
    """The job events sent to ``channel`` so far (waiting up to a second for each)."""
    layer = get_channel_layer()

    async def drain() -> list[dict]:
        got = []
        while True:
            try:
                got.append(await asyncio.wait_for(layer.receive(channel), timeout=1))
            except TimeoutError:
                return got

    return [message["payload"] for message in async_to_sync(drain)()]


@pytest.mark.slow
def test_a_large_upload_is_accepted_as_a_job_that_a_worker_imports(
    processes, user_client, user, artifacts_in_tmp
):
    # given a zip of 3 groups x 2 classes x 4 images, larger than the inline limit
    classes = {f"g{g}/c{c}": 4 for g in range(3) for c in range(2)}
    content = _zip(image_files(classes, variant=21))
    assert len(content) > 1000

    # when ada uploads it through the API
    response = _post(user_client, content, "Big strokes", visibility="private", license="CC0")

    # then it is accepted as a queued job, with nothing imported yet and the upload stored once
    assert response.status_code == 202, response.json()
    body = response.json()
    job = Job.objects.get(pk=body["job"])
    assert body == {
        "job": job.pk,
        "job_url": f"/api/v1/jobs/{job.pk}/",
        "page_url": f"/jobs/{job.pk}/",
        "status": "queued",
        "detail": f"large archive: importing as job {job.pk}; follow its progress at /api/v1/jobs/{job.pk}/",
    }
    assert response["Location"] == f"/api/v1/jobs/{job.pk}/"
    assert (job.kind, job.queue, job.owner, job.domain) == ("import", "cpu", user, None)
    assert not SourceDomain.objects.filter(name="Big strokes").exists()
    stored = _files(artifacts_in_tmp, "imports")
    assert [p.name for p in stored] == [Path(job.config["upload"]).name]
    assert stored[0].read_bytes() == content and job.config["size"] == len(content)
    api_job = user_client.get(body["job_url"]).json()
    assert api_job["kind"] == "import" and api_job["domain"] is None
    events = _subscribe(job.pk)

    # when a worker runs it
    processes.worker("w1")
    # Events are read while the job runs: the channel layer drops messages older than a
    # minute, and a worker starting on a busy machine can take that long.
    received: list[dict] = []

    def finished() -> bool:
        received.extend(_received(events))
        return Job.objects.get(pk=job.pk).is_final

    wait_for(finished, timeout=180, message=processes.logs())
    received.extend(_received(events))

    # then the job succeeded and links the new domain, made as an inline import makes it
    job.refresh_from_db()
    assert job.status == "succeeded", f"{job.error_summary}\n{job.error_traceback}\n{processes.logs()}"
    domain = SourceDomain.objects.get(name="Big strokes")
    assert job.domain == domain and job.step == job.total_steps == 1
    assert (domain.class_count, domain.example_count, len(domain.class_groups)) == (6, 24, 3)
    assert (domain.owner, domain.visibility, domain.license) == (user, "private", "CC0")
    assert domain.origin == SourceDomain.Origin.UPLOAD
    assert len(_files(artifacts_in_tmp, f"domains/{domain.slug}/thumbs")) == 6
    assert user_client.get(f"/api/v1/jobs/{job.pk}/").json()["domain"] == domain.slug
    # and its progress counted the image files decoded, up to all 24
    progress = [(e["phase"], e["phase_done"], e["phase_total"]) for e in received]
    assert ("importing", 24, 24) in progress, progress
    assert all(total == 24 for phase, _, total in progress if phase == "importing")
    # and the stored upload is gone
    assert _files(artifacts_in_tmp, "imports") == []


@pytest.mark.slow
def test_a_large_upload_with_bad_content_fails_its_job_with_the_inline_reason(
    processes, user_client, artifacts_in_tmp
):
    # given two large zips whose directories are fine but whose content is not:
    # a damaged image, and a single class
    good = {f"{c}/{i}.png": png_bytes(100 + 10 * ord(c) + i) for c in "ab" for i in range(3)}
    damaged = _zip({**good, "b/9.png": png_bytes(7)[:-30]})
    one_class = _zip({f"a/{i}.png": png_bytes(200 + i) for i in range(6)})
    expected = {"Damaged": _inline_error(damaged), "Lonely": _inline_error(one_class)}
    assert "b/9.png is not a readable image" in expected["Damaged"]
    assert "strokes.zip has only one class (a)" in expected["Lonely"]

    # when both are uploaded and a worker runs their jobs
    jobs = {}
    for name, content in (("Damaged", damaged), ("Lonely", one_class)):
        response = _post(user_client, content, name)
        assert response.status_code == 202, response.json()
        jobs[name] = response.json()["job"]
    processes.worker("w1")
    wait_for(
        lambda: all(Job.objects.get(pk=pk).is_final for pk in jobs.values()),
        timeout=180,
        message=processes.logs(),
    )

    # then each job failed with the message an inline import gives, and nothing was left behind
    for name, pk in jobs.items():
        job = Job.objects.get(pk=pk)
        assert (job.status, job.error_summary) == ("failed", expected[name]), processes.logs()
        assert job.domain is None
    assert not SourceDomain.objects.exists()
    assert _files(artifacts_in_tmp, "domains") == [] and _files(artifacts_in_tmp, "imports") == []


@pytest.mark.django_db
def test_a_queued_import_job_cancelled_before_it_runs_leaves_nothing(
    user_client, artifacts_in_tmp, redis_server, django_capture_on_commit_callbacks
):
    # given a large upload waiting in the queue as a job
    content = _zip(image_files({"a": 3, "b": 3}, variant=22))
    job_id = _post(user_client, content, "Never mind").json()["job"]
    assert len(_files(artifacts_in_tmp, "imports")) == 1

    # when its owner cancels it, and then a worker receives it anyway
    with django_capture_on_commit_callbacks(execute=True):
        response = user_client.post(f"/api/v1/jobs/{job_id}/cancel/")
    job_run(job_id=job_id, worker_host="late-worker")

    # then it stays cancelled, and no domain, no arrays and no stored upload remain
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    job = Job.objects.get(pk=job_id)
    assert (job.status, job.attempts, job.domain) == ("cancelled", 0, None)
    assert not SourceDomain.objects.exists()
    assert _files(artifacts_in_tmp, "imports") == [] and _files(artifacts_in_tmp, "domains") == []


@pytest.mark.django_db
def test_a_running_import_that_is_cancelled_stops_and_leaves_nothing(
    user_client, artifacts_in_tmp, redis_server, django_capture_on_commit_callbacks
):
    # given a large upload's job, whose owner asked it to stop just as a worker took it
    content = _zip(image_files({"a": 3, "b": 3}, variant=23))
    job_id = _post(user_client, content, "Stopped").json()["job"]
    Job.objects.filter(pk=job_id).update(cancel_requested=True)

    # when the worker runs it
    with django_capture_on_commit_callbacks(execute=True):
        job_run(job_id=job_id, worker_host="w1")

    # then it stopped before storing anything, and ended cancelled, its upload deleted
    job = Job.objects.get(pk=job_id)
    assert (job.status, job.attempts, job.domain, job.error_summary) == ("cancelled", 1, None, "")
    assert not SourceDomain.objects.exists()
    assert _files(artifacts_in_tmp, "imports") == [] and _files(artifacts_in_tmp, "domains") == []


def test_an_import_whose_worker_was_lost_after_the_domain_was_stored_adopts_it_on_retry(
    user_client, user, artifacts_in_tmp, redis_server, django_capture_on_commit_callbacks
):
    # given a large upload's job whose first worker stored the domain and died before finishing
    content = _zip(image_files({"a": 3, "b": 3}, variant=29))
    job_id = _post(user_client, content, "Lost late").json()["job"]
    stored = domain_import(source=_upload(content), name="Lost late", owner=user)
    Job.objects.filter(pk=job_id).update(status="running", attempts=1, worker_host="gone", worker_pid=1)

    # when another worker runs it again
    with django_capture_on_commit_callbacks(execute=True):
        job_run(job_id=job_id, worker_host="w2")

    # then the job succeeds with that domain instead of failing on its name, and its upload is deleted
    job = Job.objects.get(pk=job_id)
    assert (job.status, job.attempts, job.domain) == ("succeeded", 2, stored)
    assert SourceDomain.objects.filter(name="Lost late").count() == 1
    assert _files(artifacts_in_tmp, "imports") == []


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("fields", "content", "field", "words"),
    [
        ({"name": ""}, None, "name", "This field may not be blank"),
        ({"visibility": "secret"}, None, "visibility", "not a valid choice"),
        ({}, b"x" * 5000, "file", "strokes.zip is not a zip archive"),
        (
            {},
            _zip({**image_files({"a": 3, "b": 3}, variant=27), "../x.png": png_bytes(1)}),
            "file",
            "points outside",
        ),
    ],
)
def test_a_large_upload_that_fails_a_cheap_check_is_refused_at_once(
    user_client, artifacts_in_tmp, fields, content, field, words
):
    # given a large upload with a bad field, or an archive whose directory is bad
    content = content or _zip(image_files({"a": 3, "b": 3}, variant=24))
    assert len(content) > 1000

    # when it is posted
    response = user_client.post(
        URL, {"name": "Checked", "file": _upload(content), **fields}, format="multipart"
    )

    # then the request gets the inline import's 400, and no job, domain or stored upload exists
    assert response.status_code == 400
    assert words in response.json()[field][0]
    assert not Job.objects.exists() and not SourceDomain.objects.exists()
    assert _files(artifacts_in_tmp, "imports") == []


@pytest.mark.django_db
def test_a_taken_name_is_refused_before_the_upload_is_stored(user_client, artifacts_in_tmp, settings):
    # given a domain called "Taken", imported inline (the limit raised for it)
    settings.IMPORT_INLINE_MAX_BYTES = 10**9
    assert _post(user_client, _zip(image_files({"a": 2, "b": 2}, variant=25)), "Taken").status_code == 201

    # when a large upload asks for the same name
    settings.IMPORT_INLINE_MAX_BYTES = 1000
    response = _post(user_client, _zip(image_files({"a": 3, "b": 3}, variant=26)), "taken")

    # then it is refused as the inline import would refuse it, and nothing is queued or stored
    assert response.status_code == 400
    assert response.json()["name"] == ["a domain named 'taken' already exists"]
    assert not Job.objects.exists() and _files(artifacts_in_tmp, "imports") == []
