"""Request bodies bounded before they are read: an ASGI wrapper in front of Django.

Django reads a whole body before a view runs, so a limit a view checks comes too late:
a 300 MB body has already been received and parsed. This wrapper refuses with 413 from
the ``Content-Length`` header alone, before a byte of the body is read, and counts the
bytes of a body sent without one (chunked), refusing as soon as they pass the limit. The
limit depends on what the path receives:

- imports (``POST /api/v1/domains/``, the upload form): ``IMPORT_MAX_BYTES``;
- model weights (``POST /api/v1/models/``): ``MODEL_WEIGHTS_MAX_BYTES``;
- everything else, predictions included: ``REQUEST_MAX_BYTES``.

Each gets 1 MiB on top for the multipart envelope and the other form fields.

Daphne reads a whole body before it calls the application, so under Daphne the same limits
are enforced in the server too: ``kbsite.server`` (what ``runkb`` starts) refuses there, and
this wrapper covers servers that stream bodies to the application.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from django.conf import settings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[
    [Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]
]

ENVELOPE = 1024 * 1024
_IMPORTS = re.compile(r"^/(api/v1/domains|domains/new)/?$")
_WEIGHTS = re.compile(r"^/api/v1/models/?$")


def body_limit(path: str) -> tuple[int, str]:
    """``(bytes, setting name)``: the largest body ``path`` accepts, and the setting that sets it."""
    if _IMPORTS.match(path):
        name = "IMPORT_MAX_BYTES"
    elif _WEIGHTS.match(path):
        name = "MODEL_WEIGHTS_MAX_BYTES"
    else:
        name = "REQUEST_MAX_BYTES"
    return int(getattr(settings, name)) + ENVELOPE, name


class _TooLarge(Exception):
    pass


async def _refuse(send: Callable[[Message], Awaitable[None]], limit: int, setting: str) -> None:
    body = json.dumps({"detail": f"the request body is larger than {limit:,} bytes (setting {setting})"})
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json"), (b"connection", b"close")],
        }
    )
    await send({"type": "http.response.body", "body": body.encode()})


def limit_bodies(app: ASGIApp) -> ASGIApp:
    """Wrap an ASGI HTTP app so that oversize bodies get a JSON 413 and are never read in full."""

    async def limited(scope: Scope, receive: Callable[[], Awaitable[Message]], send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        limit, setting = body_limit(scope["path"])
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _refuse(send, limit, setting)
            return
        received = 0
        started = False

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _TooLarge
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await app(scope, counted, watched)
        except _TooLarge:
            if not started:
                await _refuse(send, limit, setting)

    return limited
