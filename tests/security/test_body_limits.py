"""Oversize bodies are refused before they are read, through the ASGI application the server runs."""

from __future__ import annotations

import asyncio
import json

import pytest

from kbsite.asgi import application
from learning.body_limits import ENVELOPE

pytestmark = pytest.mark.django_db(transaction=True)


def _call(path: str, *, chunks: list[bytes], content_length: int | None) -> tuple[dict, bytes, int]:
    """Run one POST through ``kbsite.asgi.application``; returns (start message, body, body bytes read)."""
    headers = [(b"host", b"testserver"), (b"content-type", b"application/json")]
    if content_length is not None:
        headers.append((b"content-length", str(content_length).encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 5000),
        "server": ("testserver", 80),
    }
    pending = list(chunks)
    read = 0
    sent: list[dict] = []

    async def receive() -> dict:
        nonlocal read
        if not pending:
            await asyncio.sleep(3600)  # the client waits; the server must not
        chunk = pending.pop(0)
        read += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": bool(pending)}

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(asyncio.wait_for(application(scope, receive, send), timeout=30))
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0], body, read


def test_a_declared_oversize_body_is_refused_before_any_of_it_is_read(settings):
    # given a predict request declaring 10x the limit
    settings.REQUEST_MAX_BYTES = 1_000_000
    limit = 1_000_000 + ENVELOPE
    # when it reaches the server / then 413 at once, naming the setting, with nothing read
    start, body, read = _call("/api/v1/models/1/predict/", chunks=[b"x" * 1000], content_length=10 * limit)
    assert start["status"] == 413 and read == 0
    assert (
        json.loads(body)["detail"]
        == f"the request body is larger than {limit:,} bytes (setting REQUEST_MAX_BYTES)"
    )


def test_a_chunked_body_is_cut_off_once_it_passes_the_limit(settings):
    # given weights streamed without a length, 1 MiB a chunk, far past the weights limit
    settings.MODEL_WEIGHTS_MAX_BYTES = 2 * 1024 * 1024
    chunks = [b"\0" * 1024 * 1024] * 40
    # when sent / then refused after reading just past the limit, not all 40 MiB
    start, body, read = _call("/api/v1/models/", chunks=chunks, content_length=None)
    assert start["status"] == 413 and "MODEL_WEIGHTS_MAX_BYTES" in json.loads(body)["detail"]
    assert read <= 2 * 1024 * 1024 + ENVELOPE + 1024 * 1024


def test_imports_get_their_own_larger_limit_and_small_bodies_pass(settings):
    settings.IMPORT_MAX_BYTES = 5 * 1024 * 1024
    settings.REQUEST_MAX_BYTES = 1024
    # a 3 MiB import is not refused by size (it fails later, as an unauthenticated request)
    start, _, _ = _call("/api/v1/domains/", chunks=[b"{}"], content_length=3 * 1024 * 1024)
    assert start["status"] != 413
    # and a small body anywhere reaches Django
    start, _, read = _call("/api/v1/jobs/", chunks=[b"{}"], content_length=2)
    assert start["status"] in (401, 403) and read == 2
