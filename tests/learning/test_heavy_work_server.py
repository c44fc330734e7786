"""A real daphne under heavy predict requests: the home page stays quick, requests beyond the
pool get 503 with Retry-After, a client that disconnects frees its slot at once, and a
computation past its deadline answers 504.

The server runs ``heavy_work_server_settings``: 2 slots, 1 waiting request for at most 2 s,
and a 10 s deadline. The slow requests ask a wide MAML model for its 100 inner steps on 100
support images (a few minutes of work on two cores, many times the deadline on any machine).
"""

from __future__ import annotations

import json
import select
import socket
import time
import urllib.error
import urllib.request
import uuid

import pytest

from tests.learning.factories import png_bytes
from tests.learning.test_heavy_work import slow_maml
from tests.learning.test_predict_api import LABELS, register
from tests.tasks_app.conftest import Processes

pytestmark = pytest.mark.slow

DEADLINE_S = 10


@pytest.fixture
def server(artifacts_in_tmp, tmp_path, redis_server, transactional_db):
    """A daphne with a pool of 2 slots, on the test database; yields its base URL."""
    processes = Processes(artifacts_in_tmp, tmp_path)
    processes.env["DJANGO_SETTINGS_MODULE"] = "tests.learning.heavy_work_server_settings"
    try:
        yield processes.server()
    finally:
        processes.stop_all()


def predict_body(shots: int = 1) -> tuple[bytes, str]:
    """A 5-way ``shots``-shot request with one query, as multipart: ``(body, content type)``."""
    boundary = uuid.uuid4().hex
    parts = []
    for n, label in enumerate(LABELS * shots):
        parts.append(_file_part(boundary, "support", f"s{n}.png", png_bytes(n)))
        parts.append(_field_part(boundary, "support_labels", label))
    parts.append(_file_part(boundary, "query", "q.png", png_bytes(99)))
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def _field_part(boundary: str, field: str, value: str) -> bytes:
    return f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"\r\n\r\n{value}\r\n'.encode()


def _file_part(boundary: str, field: str, name: str, data: bytes) -> bytes:
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{name}"\r\n'
        "Content-Type: image/png\r\n\r\n"
    )
    return head.encode() + data + b"\r\n"


def send_predict(base: str, model_id: int) -> socket.socket:
    """A 5-way 20-shot predict request sent on a raw socket, left unread (closing it is a client
    that gives up)."""
    host, port = base.removeprefix("http://").split(":")
    body, content_type = predict_body(shots=20)
    sock = socket.create_connection((host, int(port)), timeout=30)
    head = (
        f"POST /api/v1/models/{model_id}/predict/ HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    sock.sendall(head.encode() + body)
    return sock


def has_answered(sock: socket.socket) -> bool:
    return bool(select.select([sock], [], [], 0)[0])


def read_answer(sock: socket.socket) -> tuple[int, dict]:
    """``(status, JSON body)`` of the response on ``sock``."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def post_predict(base: str, model_id: int) -> tuple[int, dict[str, str], dict]:
    """``(status, headers, JSON body)`` of one predict request."""
    body, content_type = predict_body()
    request = urllib.request.Request(
        f"{base}/api/v1/models/{model_id}/predict/", data=body, headers={"Content-Type": content_type}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), json.loads(err.read())


def wait_for_status(base: str, model_id: int, status: int, *, timeout: float) -> tuple[dict[str, str], dict]:
    """Send predict requests until one answers ``status``; its headers and body."""
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        code, headers, body = post_predict(base, model_id)
        if code == status:
            return headers, body
        seen.append(code)
        time.sleep(0.1)
    raise AssertionError(f"no {status} within {timeout} s; got {seen}")


def test_light_pages_stay_quick_and_extra_requests_get_503_while_the_pool_is_busy(server, user):
    # given a wide MAML model that adapts for 100 inner steps, a quick ProtoNet, and the pool's two
    # slots taken by two slow predictions (the later one sent a second after the earlier one)
    slow, quick = slow_maml(user, hidden=256), register("protonet", owner=user)
    earlier = send_predict(server, slow.pk)
    time.sleep(1)
    later = send_predict(server, slow.pk)

    # when more predictions come, then beyond the pool they are refused with 503 and Retry-After
    headers, body = wait_for_status(server, quick.pk, 503, timeout=15)
    assert headers["Retry-After"] == "5"
    assert body["code"] == "busy" and "busy" in body["detail"]
    assert not has_answered(earlier) and not has_answered(later)

    # and the home page still answers, within 5 s
    started = time.monotonic()
    with urllib.request.urlopen(f"{server}/", timeout=5) as home:
        assert home.status == 200
    assert time.monotonic() - started < 5

    # when the later slow client gives up, its slot frees at once: a quick prediction is answered
    # while the earlier slow one is still running towards its deadline (had the later one run
    # to its own deadline instead, the earlier one would have answered first)
    later.close()
    wait_for_status(server, quick.pk, 200, timeout=DEADLINE_S)
    assert not has_answered(earlier), "the slot was freed by the deadline, not by the disconnect"

    # and the earlier slow prediction is stopped at its deadline with a 504 that names it
    status, body = read_answer(earlier)
    earlier.close()
    assert status == 504
    assert body["code"] == "deadline_exceeded"
    assert f"{DEADLINE_S} s deadline" in body["detail"]
