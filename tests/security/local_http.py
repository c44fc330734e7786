"""Local HTTP servers for URL-import tests, and the one explicit way to let an import reach them.

A URL import refuses loopback (``learning.url_fetch``), so a test that needs a working
download from a server on 127.0.0.1 calls ``allow_local(monkeypatch, port)``: that one
``127.0.0.1:port`` passes the address check, every other host and port still goes through
the real ``resolve_public``.
"""

from __future__ import annotations

import http.server
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from learning import url_fetch

Handle = Callable[[http.server.BaseHTTPRequestHandler], None]


@dataclass
class LocalServer:
    port: int
    requests: list[tuple[str, str]] = field(default_factory=list)
    """``(path, Host header)`` of every request the server received."""
    stop: threading.Event = field(default_factory=threading.Event)

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@contextmanager
def local_server(handle: Handle, *, tls: ssl.SSLContext | None = None) -> Iterator[LocalServer]:
    """A threaded HTTP server on 127.0.0.1 whose every GET is answered by ``handle(handler)``.

    With ``tls`` (a server context holding its certificate) it speaks https.
    """
    server_box: list[LocalServer] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            server_box[0].requests.append((self.path, self.headers.get("Host", "")))
            with suppress(BrokenPipeError, ConnectionResetError):
                handle(self)

        def log_message(self, *args) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if tls is not None:
        httpd.socket = tls.wrap_socket(httpd.socket, server_side=True)
    server = LocalServer(port=httpd.server_address[1])
    server_box.append(server)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield server
    finally:
        server.stop.set()
        httpd.shutdown()
        httpd.server_close()


def serve_files(root: Path) -> Handle:
    """A handler that answers ``/<name>`` with the file ``root/<name>`` (with its Content-Length), or 404."""

    def handle(request: http.server.BaseHTTPRequestHandler) -> None:
        path = root / request.path.lstrip("/").split("?", 1)[0]
        if not path.is_file():
            request.send_error(404)
            return
        body = path.read_bytes()
        request.send_response(200)
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)

    return handle


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (it was bound and released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def allow_local(monkeypatch, port: int, *, times: int | None = None) -> None:
    """Let ``127.0.0.1:port`` pass ``url_fetch.resolve_public`` (``times`` lookups, or always).

    Any other host or port, and that one after ``times`` lookups, goes through the real check.
    """
    real = url_fetch.resolve_public
    left = [times]

    def resolve(host: str, port_: int) -> url_fetch.Vetted:
        if (host, port_) == ("127.0.0.1", port) and left[0] != 0:
            left[0] = None if left[0] is None else left[0] - 1
            return [(socket.AF_INET, ("127.0.0.1", port))]
        return real(host, port_)

    monkeypatch.setattr(url_fetch, "resolve_public", resolve)
