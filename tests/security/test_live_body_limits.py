"""Oversize bodies sent to the real server (``runkb``) are refused before they are read.

Each bounded kind of endpoint gets a body 10x over its limit, once with ``Content-Length``
and once chunked: the answer is the JSON 413 naming the setting, it arrives before the
client has written much past the limit, the web server's memory stays flat, and nothing
is stored.
"""

from __future__ import annotations

import json
import socket

import psutil
import pytest

from tests.runkb import PeakRSS, RunningSystem, send_body
from tests.security.conftest import LIVE_LIMITS, MiB

pytestmark = pytest.mark.slow

ENDPOINTS = [
    ("/api/v1/models/1/predict/", "REQUEST_MAX_BYTES"),
    ("/api/v1/domains/", "IMPORT_MAX_BYTES"),
    ("/domains/new/", "IMPORT_MAX_BYTES"),
    ("/api/v1/models/", "MODEL_WEIGHTS_MAX_BYTES"),
]


def _web_server(system: RunningSystem) -> psutil.Process:
    for process in psutil.Process(system.proc.pid).children(recursive=True):
        if "kbsite.server" in process.cmdline():
            return process
    raise AssertionError("no web server process:\n" + system.output[-4000:])


def _stored(system: RunningSystem) -> set[str]:
    return {str(p.relative_to(system.var_dir)) for p in (system.var_dir / "artifacts").rglob("*")}


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
@pytest.mark.parametrize(("path", "setting"), ENDPOINTS)
def test_a_body_ten_times_over_its_limit_gets_413_before_it_is_read(live_system, path, setting, declared):
    limit = LIVE_LIMITS[setting] + MiB
    web = _web_server(live_system)
    stored_before = _stored(live_system)
    before = web.memory_info().rss
    with PeakRSS(web) as rss:
        status, _, answer = send_body(
            live_system.port, path, "multipart/form-data; boundary=x", 10 * limit, declared=declared
        )
    assert status == 413, answer
    assert json.loads(answer.split("\r\n\r\n", 1)[1]) == {
        "detail": f"the request body is larger than {limit:,} bytes (setting {setting})"
    }
    # (How much the client had written when the answer came depends on thread scheduling and
    # the kernel's socket buffers; the server stores none of it, which the memory shows.)
    assert rss.peak - before < 16 * MiB, f"the web server grew by {(rss.peak - before) / MiB:.1f} MiB"
    assert _stored(live_system) == stored_before


@pytest.mark.parametrize(("path", "setting"), ENDPOINTS)
def test_a_declared_length_over_the_limit_is_refused_before_a_byte_of_body_is_sent(
    live_system, path, setting
):
    limit = LIVE_LIMITS[setting] + MiB
    with socket.create_connection(("127.0.0.1", live_system.port), timeout=30) as sock:
        head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {limit + 1}\r\n\r\n"
        sock.sendall(head.encode())
        answer = sock.recv(4096).decode()
    assert answer.startswith("HTTP/1.1 413 "), answer
    assert json.loads(answer.split("\r\n\r\n", 1)[1]) == {
        "detail": f"the request body is larger than {limit:,} bytes (setting {setting})"
    }
