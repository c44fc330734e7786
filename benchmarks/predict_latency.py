"""Predict latency on CPU: a 20-way 1-shot request with 20 queries against a running daphne.

    .venv/bin/python benchmarks/predict_latency.py [--requests 60] [--clients 8] [--seconds 20]

It starts its own system in a temporary folder (``KB_VAR_DIR``): a SQLite database,
an embedded Redis where the settings ask for one, and a daphne server. It registers two
public Conv4-64 models and, for each, POSTs ``/api/v1/models/{id}/predict/`` as multipart
with 20 labeled support PNGs (one per label) and 20 query PNGs:

- ``protonet``: trained for ``--steps`` steps on 5-way 1-shot digits (prototypes, any n-way);
- ``maml``: a freshly initialized 20-way net with 1 inner step at prediction (the latency
  does not depend on the weights' values, and digits has only 10 classes to train 20-way).

Measured: the latency of ``--requests`` requests sent one at a time (after 5 warm-up
requests), median and p95; then ``--clients`` concurrent clients for ``--seconds``
seconds: requests per second and their latency. Results are appended to
``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import io
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WAYS, QUERIES = 20, 20


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def png(seed: int) -> bytes:
    """A 28x28 PNG with a few random strokes (dark on white, as a scan would be)."""
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    image = Image.new("L", (28, 28), 255)
    draw = ImageDraw.Draw(image)
    for _ in range(3):
        draw.line([tuple(int(v) for v in rng.integers(3, 25, 2)) for _ in range(3)], fill=0, width=2)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def multipart_body() -> tuple[bytes, str]:
    """The request: WAYS support images with one label each, and QUERIES query images."""
    boundary = uuid.uuid4().hex
    parts: list[bytes] = []

    def field(name: str, value: str) -> None:
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        )

    def file(name: str, filename: str, content: bytes) -> None:
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
            "Content-Type: image/png\r\n\r\n"
        )
        parts.append(head.encode() + content + b"\r\n")

    for w in range(WAYS):
        file("support", f"support-{w}.png", png(w))
        field("support_labels", f"class-{w}")
    for q in range(QUERIES):
        file("query", f"query-{q}.png", png(1000 + q))
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def post(url: str, body: bytes, content_type: str) -> float:
    """Seconds for one successful predict request."""
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": content_type})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=120) as response:
        response.read()
        if response.status != 200:
            raise RuntimeError(f"predict answered {response.status}")
    return time.perf_counter() - started


def sequential(url: str, body: bytes, content_type: str, count: int) -> list[float]:
    for _ in range(5):
        post(url, body, content_type)
    return [post(url, body, content_type) for _ in range(count)]


def engine_latencies(pk: int, count: int) -> list[float]:
    """Seconds of ``count`` engine predictions (after 5 warm-ups) with the model's cached predictor
    and images decoded as the API decodes them: the request less HTTP, parsing and decoding."""
    import numpy as np

    from learning.engine.predict import classify
    from learning.images import normalize_image
    from learning.models import MetaModel
    from learning.predictors import predictor_load

    predictor = predictor_load(model=MetaModel.objects.get(pk=pk))
    support = np.stack([normalize_image(png(i), name="support") for i in range(WAYS)])
    query = np.stack([normalize_image(png(1000 + i), name="query") for i in range(QUERIES)])
    labels = list(range(WAYS))
    latencies = []
    for n in range(5 + count):
        start = time.perf_counter()
        classify(predictor, support, labels, query)
        if n >= 5:
            latencies.append(time.perf_counter() - start)
    return latencies


def concurrent(
    url: str, body: bytes, content_type: str, clients: int, seconds: float
) -> tuple[list[float], float]:
    """Latencies of every request completed by ``clients`` threads in ``seconds``, and the wall time."""
    latencies: list[float] = []
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def client() -> None:
        while time.perf_counter() < deadline:
            latency = post(url, body, content_type)
            with lock:
                latencies.append(latency)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, time.perf_counter() - started


def register_models(steps: int) -> dict[str, int]:
    """Two public Conv4-64 models: a briefly trained ProtoNet and a 20-way MAML net; ``{name: id}``."""
    import torch

    from learning.builtin_domains import digits_arrays
    from learning.engine.algorithms import train
    from learning.engine.nets import build_model
    from learning.engine.weights import weights_to_bytes
    from learning.services.models import metamodel_register

    proto = train(
        {
            "algorithm": "protonet",
            "steps": steps,
            "device": "cpu",
            "checkpoint_every": 0,
            "task": {"n_way": 5, "k_shot": 1, "query": 5},
        },
        digits_arrays(),
    )
    maml_config = {
        "arch": "conv4",
        "in_channels": 1,
        "image_size": 28,
        "hidden": 64,
        "layers": 4,
        "head": "linear",
        "out_features": WAYS,
        "adapt": {"inner_lr": 0.4, "inner_steps": 1},
    }
    torch.manual_seed(0)
    maml_weights = {k: v.detach().clone() for k, v in build_model(maml_config).state_dict().items()}
    ids = {}
    for name, (weights, config, algorithm) in {
        "protonet": (proto.weights, proto.model_config, "protonet"),
        "maml": (maml_weights, maml_config, "maml"),
    }.items():
        model = metamodel_register(
            name=f"bench {name}",
            algorithm=algorithm,
            architecture="conv4",
            weights=weights_to_bytes(weights, config, algorithm),
        )
        ids[name] = model.pk
    return ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=60, help="Sequential requests per model.")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument(
        "--seconds", type=float, default=20.0, help="Duration of the concurrent run per model."
    )
    parser.add_argument("--steps", type=int, default=100, help="ProtoNet training steps before measuring.")
    parser.add_argument("--results", type=Path, default=None, help="Append here instead of RESULTS.md.")
    args = parser.parse_args()

    var = Path(tempfile.mkdtemp(prefix="metakb-bench-predict-"))
    os.environ["KB_VAR_DIR"] = str(var)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kbsite.settings")
    # The rate limits guard a public site; here they would refuse the measurement itself.
    os.environ.setdefault("THROTTLE_PREDICT_ANON", "1000000/min")
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from kbsite import embedded

    redis_owner = embedded.start_embedded_redis(settings.VAR_DIR) if settings.EMBEDDED_REDIS else None
    call_command("migrate", verbosity=0)
    ids = register_models(args.steps)

    port = free_port()
    log = open(var / "daphne.log", "w")  # noqa: SIM115 - lives as long as the process
    daphne = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kbsite.server",
            "-b",
            "127.0.0.1",
            "-p",
            str(port),
            "kbsite.asgi:application",
        ],
        cwd=ROOT,
        env={**os.environ, "KB_VAR_DIR": str(var)},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    body, content_type = multipart_body()
    results = {}
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(base + "/", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        for name, pk in ids.items():
            url = f"{base}/api/v1/models/{pk}/predict/"
            engine = engine_latencies(pk, args.requests)
            one = sequential(url, body, content_type, args.requests)
            many, wall = concurrent(url, body, content_type, args.clients, args.seconds)
            results[name] = (engine, one, many, wall)
            print(name, f"median {1000 * statistics.median(one):.0f} ms", f"{len(many) / wall:.1f} req/s")
    finally:
        os.killpg(daphne.pid, signal.SIGTERM)
        try:
            daphne.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(daphne.pid, signal.SIGKILL)
        embedded.stop_embedded_redis(redis_owner, save=False)
    report(args, results, len(body))


def report(args, results, body_bytes: int) -> None:
    import torch

    from benchmarks._results import RESULTS, append_results

    rows = []
    for name, (engine, one, many, wall) in results.items():
        rows.append(
            [
                name,
                f"{1000 * statistics.median(engine):.0f}",
                f"{1000 * percentile(engine, 0.95):.0f}",
                f"{1000 * statistics.median(one):.0f}",
                f"{1000 * percentile(one, 0.95):.0f}",
                f"{len(many) / wall:.1f}",
                f"{1000 * statistics.median(many):.0f}",
                f"{1000 * percentile(many, 0.95):.0f}",
            ]
        )
    print(
        append_results(
            f"Predict latency: {WAYS}-way 1-shot, {QUERIES} queries, engine and daphne on CPU",
            [
                "model (Conv4-64)",
                "engine median ms",
                "engine p95 ms",
                "1 client median ms",
                "1 client p95 ms",
                f"{args.clients} clients req/s",
                f"{args.clients} clients median ms",
                f"{args.clients} clients p95 ms",
            ],
            rows,
            device=torch.device("cpu"),
            path=args.results or RESULTS,
            notes=[
                f"POST /api/v1/models/<id>/predict/ as multipart ({body_bytes / 1024:.0f} KiB): "
                f"{WAYS} support 28x28 PNGs with one label each and {QUERIES} query PNGs; one daphne "
                "process, default torch threads in the server; client and server on the same machine",
                f"1 client: {args.requests} requests one after another after 5 warm-up requests; "
                f"{args.clients} clients: as many requests as they complete in {args.seconds:.0f} s",
                f"protonet: {args.steps} training steps on 5-way 1-shot digits; maml: freshly initialized "
                "20-way net, 1 inner SGD step on the support set per request (latency does not depend on the "
                "weights' values)",
                "each request decodes and normalizes 40 images, adapts (maml) and predicts; protonet's net "
                "is built once and shared, maml's per request (adaptation writes into the net); engine: the "
                "same nets and decoded images, "
                f"{args.requests} calls of learning.engine.predict.classify in this process, one at a time, "
                "before the server is measured; targets (issue 11): p95 <= 100 ms engine, <= 150 ms HTTP",
                "load average (1, 5, 15 min) at the end of the run: "
                + ", ".join(f"{v:.1f}" for v in os.getloadavg()),
            ],
        )
    )


if __name__ == "__main__":
    main()
