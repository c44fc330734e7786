"""Websockets for jobs: ``/ws/jobs/<id>/`` and ``/ws/dashboard/``.

Each connection is authenticated, first gets a snapshot read from the database, then
the events of its group. Channel layers deliver at most once, so after a reconnect the
page takes a fresh snapshot instead of trusting what it missed; a job page that already
has the history up to some step says so (``?after_step=N``) and gets only the points
after it.
"""

from __future__ import annotations

from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.http import Http404

from tasks_app import selectors
from tasks_app.events import dashboard_group, job_group


class JobConsumer(AsyncJsonWebsocketConsumer):
    """One job's live state, for its owner only."""

    async def connect(self) -> None:
        user = self.scope.get("user")
        job_id = int(self.scope["url_route"]["kwargs"]["job_id"])
        self.after_step = _after_step(self.scope.get("query_string", b""))
        snapshot = await self._snapshot(user, job_id)
        if snapshot is None:
            await self.close(code=4403)
            return
        self.group = job_group(job_id)
        self.job_id = job_id
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self.send_json({"type": "snapshot", "job": snapshot})

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content: dict, **kwargs) -> None:
        if content.get("type") == "refresh":
            snapshot = await self._snapshot(self.scope.get("user"), self.job_id)
            await self.send_json({"type": "snapshot", "job": snapshot})

    async def job_event(self, event: dict) -> None:
        await self.send_json({"type": "event", "job": event["payload"]})

    @database_sync_to_async
    def _snapshot(self, user, job_id: int) -> dict | None:
        try:
            job = selectors.job_get(user=user, pk=job_id)
        except Http404:
            return None
        return selectors.job_snapshot(job, history_after_step=self.after_step)


class DashboardConsumer(AsyncJsonWebsocketConsumer):
    """The user's jobs: a snapshot of the latest ones, then events of every job they own."""

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        self.group = dashboard_group(user.pk)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self.send_json({"type": "snapshot", "jobs": await self._snapshot(user)})

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content: dict, **kwargs) -> None:
        if content.get("type") == "refresh":
            await self.send_json({"type": "snapshot", "jobs": await self._snapshot(self.scope["user"])})

    async def job_event(self, event: dict) -> None:
        await self.send_json({"type": "event", "job": event["payload"]})

    @database_sync_to_async
    def _snapshot(self, user) -> list[dict]:
        # The job list draws no charts: no histories.
        return [
            selectors.job_snapshot(job, history_after_step=None) | {"history": []}
            for job in selectors.job_list(user=user)[:50]
        ]


def _after_step(query_string: bytes) -> int | None:
    """The ``after_step`` a reconnecting page sends: the last history step it already has."""
    values = parse_qs(query_string.decode("latin-1")).get("after_step")
    try:
        return int(values[0]) if values else None
    except ValueError:
        return None
