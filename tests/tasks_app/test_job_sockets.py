"""Job websockets on the real channel layer: snapshot first, then events in order; strangers refused."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from kbsite.asgi import application
from tasks_app.models import Job
from tasks_app.recorder import JobProgressRecorder

pytestmark = [pytest.mark.django_db(transaction=True)]


def _job(owner, digits) -> Job:
    return Job.objects.create(
        kind="meta_train",
        config={"algorithm": "protonet"},
        owner=owner,
        domain=digits,
        queue="gpu",
        total_steps=10,
        status="running",
    )


async def _connect(path: str, user) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(application, path, headers=[(b"origin", b"http://testserver")])
    communicator.scope["user"] = user
    return communicator


async def test_job_socket_sends_a_snapshot_then_progress_in_order(redis_server, user, digits):
    # given a running job and its owner watching it
    job = await database_sync_to_async(_job)(user, digits)
    communicator = await _connect(f"/ws/jobs/{job.pk}/", user)
    connected, _ = await communicator.connect()
    assert connected

    # then the first message is the snapshot from the database
    first = await communicator.receive_json_from(timeout=5)
    assert first["type"] == "snapshot" and first["job"]["step"] == 0 and first["job"]["status"] == "running"

    # when the worker's recorder reports three steps
    recorder = JobProgressRecorder(job, min_interval=0)
    for step in (1, 2, 3):
        await database_sync_to_async(recorder)(
            {"step": step, "total": 10, "loss": 1.0 / step, "metrics": {"acc": 0.1 * step}}
        )

    # then they arrive in order, each with a larger sequence number, and the row holds the last
    events = [await communicator.receive_json_from(timeout=5) for _ in range(3)]
    assert [e["job"]["step"] for e in events] == [1, 2, 3]
    seqs = [e["job"]["seq"] for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3 and seqs[0] > first["job"]["seq"]
    await database_sync_to_async(job.refresh_from_db)()
    assert job.step == 3 and job.event_seq == seqs[-1] and len(job.history) == 3
    await communicator.disconnect()


async def test_the_dashboard_socket_carries_every_job_of_the_owner(redis_server, user, digits):
    job = await database_sync_to_async(_job)(user, digits)
    communicator = await _connect("/ws/dashboard/", user)
    assert (await communicator.connect())[0]
    snapshot = await communicator.receive_json_from(timeout=5)
    assert [j["id"] for j in snapshot["jobs"]] == [job.pk]

    await database_sync_to_async(JobProgressRecorder(job, min_interval=0))(
        {"step": 5, "total": 10, "loss": 0.5}
    )

    event = await communicator.receive_json_from(timeout=5)
    assert event["type"] == "event" and event["job"]["id"] == job.pk and event["job"]["percent"] == 50.0
    await communicator.disconnect()


async def test_strangers_and_anonymous_users_are_refused(redis_server, user, stranger, digits):
    from django.contrib.auth.models import AnonymousUser

    job = await database_sync_to_async(_job)(user, digits)
    for path, who in (
        (f"/ws/jobs/{job.pk}/", stranger),
        (f"/ws/jobs/{job.pk}/", AnonymousUser()),
        ("/ws/dashboard/", AnonymousUser()),
        ("/ws/jobs/999999/", user),
    ):
        communicator = await _connect(path, who)
        connected, _ = await communicator.connect()
        assert not connected, path
        # A refused consumer still waits for the disconnect; without it the test's event loop
        # is left to cancel it at teardown, which can hang (and left a database session open).
        await communicator.disconnect()


async def test_a_reconnecting_page_gets_only_the_history_after_the_step_it_has(redis_server, user, digits):
    # given a job with five points of history
    job = await database_sync_to_async(_job)(user, digits)
    recorder = JobProgressRecorder(job, min_interval=0)
    for step in range(1, 6):
        await database_sync_to_async(recorder)({"step": step, "total": 10, "loss": 1.0 / step})

    # when a page that already has the points up to step 3 reconnects
    communicator = await _connect(f"/ws/jobs/{job.pk}/?after_step=3", user)
    assert (await communicator.connect())[0]
    snapshot = await communicator.receive_json_from(timeout=5)

    # then its snapshot carries the current state and only the newer points
    assert snapshot["job"]["step"] == 5 and snapshot["job"]["history_after"] == 3
    assert [p["step"] for p in snapshot["job"]["history"]] == [4, 5]
    await communicator.disconnect()

    # and a page without history gets all of it
    fresh = await _connect(f"/ws/jobs/{job.pk}/", user)
    assert (await fresh.connect())[0]
    full = await fresh.receive_json_from(timeout=5)
    assert [p["step"] for p in full["job"]["history"]] == [1, 2, 3, 4, 5] and full["job"][
        "history_after"
    ] is None
    await fresh.disconnect()
