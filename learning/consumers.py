"""Websocket consumers of the knowledge base."""

from __future__ import annotations

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from learning import selectors
from learning.events import CATALOG_GROUP


class CatalogConsumer(AsyncJsonWebsocketConsumer):
    """Live catalog counts for the home page: a snapshot on connect, then updates as entries land."""

    async def connect(self) -> None:
        await self.channel_layer.group_add(CATALOG_GROUP, self.channel_name)
        await self.accept()
        await self.send_json({"type": "snapshot", "counts": await self._counts()})

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(CATALOG_GROUP, self.channel_name)

    async def catalog_changed(self, event: dict) -> None:
        # Counts depend on who is asking, so each socket re-reads them rather than trusting the event.
        await self.send_json({"type": "counts", "counts": await self._counts()})

    @database_sync_to_async
    def _counts(self) -> dict[str, int]:
        return selectors.catalog_counts(user=self.scope.get("user"))
