"""The home page's websocket: a snapshot first, then fresh counts when the catalog changes."""

from __future__ import annotations

import pytest
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser

from kbsite.asgi import application
from learning.models import SourceDomain
from learning.services.models import metamodel_register
from tests.weights import model_weights

pytestmark = [pytest.mark.django_db(transaction=True)]


async def test_snapshot_then_counts_after_a_model_lands(redis_server, settings):
    from channels.db import database_sync_to_async

    # given a public domain and a connected visitor
    await database_sync_to_async(SourceDomain.objects.create)(
        name="Sinusoid", slug="sinusoid", modality="function_regression", origin="builtin"
    )
    communicator = WebsocketCommunicator(
        application, "/ws/catalog/", headers=[(b"origin", b"http://testserver")]
    )
    communicator.scope["user"] = AnonymousUser()
    connected, _ = await communicator.connect()
    assert connected

    # then the first message is a snapshot read from the database
    snapshot = await communicator.receive_json_from(timeout=5)
    assert snapshot == {
        "type": "snapshot",
        "counts": {"domains": 1, "task_specs": 0, "models": 0, "evaluations": 0},
    }

    # when a public model is registered
    await database_sync_to_async(metamodel_register)(
        name="m", algorithm="maml", architecture="mlp", weights=model_weights("maml", arch="mlp")
    )

    # then the socket brings the new counts
    update = await communicator.receive_json_from(timeout=5)
    assert update["type"] == "counts" and update["counts"]["models"] == 1
    await communicator.disconnect()
