"""The one-machine run command really starts the system, serves HTTP and websockets, and stops cleanly."""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import time
import urllib.request

import psutil
import pytest

from tests.runkb import RunningSystem

pytestmark = pytest.mark.slow


def _websocket_first_message(port: int, path: str) -> dict:
    """Open a websocket with a raw handshake and return the first JSON text frame."""
    key = base64.b64encode(os.urandom(16)).decode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            (
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                f"Origin: http://127.0.0.1:{port}\r\n\r\n"
            ).encode()
        )
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(4096)
        head, _, rest = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        while len(rest) < 2 or len(rest) < 2 + (rest[1] & 0x7F if rest[1] & 0x7F < 126 else 2):
            rest += sock.recv(4096)
        length = rest[1] & 0x7F
        offset = 2
        if length == 126:
            length = int.from_bytes(rest[2:4], "big")
            offset = 4
        while len(rest) < offset + length:
            rest += sock.recv(4096)
        return json.loads(rest[offset : offset + length])


def test_run_command_serves_pages_api_and_websockets_then_stops_cleanly(tmp_path):
    # given a fresh machine state (an empty var folder)
    system = RunningSystem(tmp_path)
    try:
        # when the system starts
        system.wait_until_serving()
        children = psutil.Process(system.proc.pid).children(recursive=True)

        # then it serves the pages, the API with the built-in domains, and a websocket
        home = urllib.request.urlopen(f"http://127.0.0.1:{system.port}/", timeout=10).read().decode()
        assert "MetaKB" in home
        api = json.loads(
            urllib.request.urlopen(f"http://127.0.0.1:{system.port}/api/v1/domains/", timeout=10).read()
        )
        assert {"sinusoid", "gp-1d", "digits"} <= {d["slug"] for d in api["results"]}
        message = _websocket_first_message(system.port, "/ws/catalog/")
        assert message["type"] == "snapshot" and message["counts"]["domains"] == 3
        banner = system.output
        assert f"http://127.0.0.1:{system.port}/" in banner
        password = re.search(r"as 'admin' with password '([^']+)'", banner)
        assert password, banner
    finally:
        # when Ctrl-C arrives
        status = system.stop()

    # then every process it started is gone, and it exited cleanly
    assert status == 0, system.output
    time.sleep(0.5)
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]

    # given a second start on the same folder
    again = RunningSystem(tmp_path)
    try:
        again.wait_until_serving()
        # then the data is kept: the admin is not created again and the domains are still three
        assert "shown only this once" not in again.output
        api = json.loads(
            urllib.request.urlopen(f"http://127.0.0.1:{again.port}/api/v1/domains/", timeout=10).read()
        )
        assert api["count"] == 3
    finally:
        assert again.stop() == 0, again.output
