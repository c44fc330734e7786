"""Real processes for the job tests: Celery workers and an ASGI server on the test database."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from learning.services.domains import builtin_domains_register


def _database_url() -> str:
    """The URL of the test database this session created, for processes that must share it."""
    db = connection.settings_dict
    if db["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


class Processes:
    """Starts worker and server processes that share this test's database, Redis and artifacts."""

    def __init__(self, artifacts: Path, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.env = {
            **os.environ,
            "DATABASE_URL": _database_url(),
            "ARTIFACTS_ROOT": str(artifacts),
            "JOB_HEARTBEAT_INTERVAL": "0.5",
            "JOB_HEARTBEAT_TIMEOUT": "4",
            "JOB_WATCHDOG_INTERVAL": "1",
        }
        if not settings.EMBEDDED_REDIS:
            self.env["REDIS_URL"] = settings.REDIS_URL
        self.started: list[subprocess.Popen] = []

    def _start(self, args: list[str], name: str) -> subprocess.Popen:
        log = open(self.tmp_path / f"{name}.log", "w")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            [sys.executable, *args],
            cwd=settings.BASE_DIR,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        proc.log_path = self.tmp_path / f"{name}.log"
        self.started.append(proc)
        return proc

    def worker(self, name: str, *, beat: bool = False) -> subprocess.Popen:
        args = [
            "-m",
            "celery",
            "-A",
            "kbsite",
            "worker",
            "-Q",
            "gpu,cpu",
            "-c",
            "1",
            "-n",
            f"{name}@%h",
            "--without-gossip",
            "--without-mingle",
            "--loglevel",
            "INFO",
        ]
        if beat:
            args += ["--beat", "--schedule", str(self.tmp_path / f"{name}-beat")]
        return self._start(args, name)

    def server(self) -> str:
        """Start daphne on a free port; returns its base URL once it answers."""
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        proc = self._start(
            ["-m", "kbsite.server", "-b", "127.0.0.1", "-p", str(port), "kbsite.asgi:application"], "daphne"
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return f"http://127.0.0.1:{port}"
            except OSError:
                assert proc.poll() is None, proc.log_path.read_text()
                time.sleep(0.2)
        raise AssertionError("daphne did not start:\n" + proc.log_path.read_text())

    @staticmethod
    def kill(proc: subprocess.Popen) -> None:
        """SIGKILL the process and its children, as a machine that dies would."""
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def stop_all(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.started:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def logs(self) -> str:
        return "\n".join(f"--- {p.log_path.name}\n{p.log_path.read_text()[-4000:]}" for p in self.started)


@pytest.fixture(autouse=True)
def no_heartbeat_thread_in_process(settings):
    """Jobs run in the test process beat only after an hour: on SQLite a beat from another thread
    would wait for the test's open transaction. Worker processes get their own interval."""
    settings.JOB_HEARTBEAT_INTERVAL = 3600


@pytest.fixture
def processes(artifacts_in_tmp, tmp_path, redis_server, transactional_db):
    procs = Processes(artifacts_in_tmp, tmp_path)
    yield procs
    procs.stop_all()


@pytest.fixture
def digits(db):
    """The built-in digits domain (10 classes of 8x8 digits, upsampled to 28x28)."""
    return next(d for d in builtin_domains_register() if d.slug == "digits")


def wait_for(predicate, *, timeout: float, interval: float = 0.2, message: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s: {message}")


TINY_PROTONET = {"steps": 40, "meta_batch": 1, "model": {"hidden": 8}, "checkpoint_every": 10}
"""A ProtoNet small enough to train in seconds on a shared CPU."""
