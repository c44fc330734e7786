"""Live events from the catalog to the browsers, sent after the transaction commits.

The database stays the truth: an event only tells open pages to re-read it, so a
missed event (channel layers deliver at most once) costs nothing but freshness.
"""

from __future__ import annotations

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

logger = logging.getLogger(__name__)

CATALOG_GROUP = "catalog"


def _send_catalog_changed() -> None:
    try:
        async_to_sync(get_channel_layer().group_send)(CATALOG_GROUP, {"type": "catalog.changed"})
    except Exception:  # the write has committed; a dead channel layer must not turn it into an error
        logger.warning("could not send the catalog.changed event", exc_info=True)


def catalog_changed_on_commit() -> None:
    """Tell every open catalog page to refresh its counts once the current transaction commits."""
    transaction.on_commit(_send_catalog_changed)
