"""Job events over the channel layer: group names and the sending side.

Groups: ``job.<id>`` for one job's page and ``dashboard.<user id>`` for the owner's job
list. Every event carries the job's ``seq`` (its ``event_seq`` after the update), so a
page that already has a newer snapshot drops older events.
"""

from __future__ import annotations

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)


def job_group(job_id: int) -> str:
    return f"job.{job_id}"


def dashboard_group(user_id: int) -> str:
    return f"dashboard.{user_id}"


def send_job_event(*, job_id: int, owner_id: int, payload: dict) -> None:
    """Send ``payload`` (a JSON-able dict with ``seq``) to the job's and the owner's groups.

    Failures are logged, not raised: the Job row has already been updated, and pages
    re-read it after a reconnect.
    """
    message = {"type": "job.event", "payload": payload}
    try:
        layer = get_channel_layer()
        async_to_sync(layer.group_send)(job_group(job_id), message)
        async_to_sync(layer.group_send)(dashboard_group(owner_id), message)
    except Exception:
        logger.warning("could not send an event for job %s", job_id, exc_info=True)
