"""MAML meta-gradient throughput: torch.func batched (vmap) inner loop vs a plain per-task autograd loop.

Conv4 (64 filters, batch-statistics norm) on Omniglot 5-way 1-shot 28x28 episodes,
meta-batch 32, inner lr 0.4, one inner step, second- and first-order. Both methods
compute the meta-gradient of the same model on the same task batches in the same
process; the table gives tasks per second (meta-gradients of one task each) and the
largest gradient difference, in float32 on the benchmark batches and in float64 on a
check batch (must be <= 1e-10).

Run from the repository root:

    .venv/bin/python -m benchmarks.maml_throughput --seconds 20
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.nn import functional as F

from benchmarks._results import append_results
from learning.engine.device import resolve_device
from learning.engine.episodes import EpisodeSampler, EpisodeSpec
from learning.engine.functional import InnerLoop, TaskBatch, batched_meta_gradient, per_task_meta_gradient
from learning.engine.nets import Conv4
from learning.engine.omniglot import load_omniglot_zip

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared/data/omniglot/images_background_small1.zip"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(
    fn: Callable[[TaskBatch], object], batches: list[TaskBatch], seconds: float, device: torch.device
) -> float:
    """Tasks per second of ``fn`` cycling over ``batches`` for about ``seconds`` (after one warm-up call)."""
    fn(batches[0])
    _sync(device)
    start = time.perf_counter()
    tasks = 0
    calls = 0
    while calls < 3 or time.perf_counter() - start < seconds:
        batch = batches[calls % len(batches)]
        fn(batch)
        tasks += batch.num_tasks
        calls += 1
    _sync(device)
    return tasks / (time.perf_counter() - start)


def max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="an Omniglot zip")
    parser.add_argument("--meta-batch", type=int, default=32)
    parser.add_argument(
        "--query", type=int, default=1, help="query examples per class (MAML's Omniglot setup: 1)"
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="measuring time per method and order")
    parser.add_argument("--chunk", type=int, default=4, help="also measure vmap in chunks (CPU default: 4)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--no-record", action="store_true", help="print only; do not append to RESULTS.md")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    device = resolve_device(args.device)
    data = load_omniglot_zip(args.data)
    sampler = EpisodeSampler(
        data, range(data.num_classes), EpisodeSpec(5, 1, args.query, rotations=True), seed=0
    )
    batches = [sampler.batch(i * args.meta_batch, args.meta_batch, device) for i in range(4)]
    torch.manual_seed(0)
    model = Conv4(hidden=64, out_features=5).to(device)

    rows = []
    for first_order in (False, True):
        inner = InnerLoop(F.cross_entropy, 0.4, 1, first_order=first_order)
        vmap_all = measure(
            lambda b, inner=inner: batched_meta_gradient(model, b, inner), batches, args.seconds, device
        )
        vmap_chunk = measure(
            lambda b, inner=inner: batched_meta_gradient(model, b, inner, chunk=args.chunk),
            batches,
            args.seconds,
            device,
        )
        loop = measure(
            lambda b, inner=inner: per_task_meta_gradient(model, b, inner), batches, args.seconds, device
        )
        g_vmap, _, _ = batched_meta_gradient(model, batches[0], inner)
        g_loop, _ = per_task_meta_gradient(model, batches[0], inner)
        model64 = Conv4(hidden=64, out_features=5).double().to(device)
        model64.load_state_dict({k: v.double() for k, v in model.state_dict().items()})
        check = TaskBatch(*(t.double() if t.is_floating_point() else t for t in batches[1].slice(0, 8)))
        g64_vmap, _, _ = batched_meta_gradient(model64, check, inner)
        g64_loop, _ = per_task_meta_gradient(model64, check, inner)
        diff64 = max_diff(g64_vmap, g64_loop)
        if diff64 > 1e-10:
            raise SystemExit(f"meta-gradients differ by {diff64:.3g} > 1e-10 in float64")
        order = "first" if first_order else "second"
        rows.append(
            [
                order,
                f"{loop:.1f}",
                f"{vmap_all:.1f}",
                f"{vmap_all / loop:.2f}x",
                f"{vmap_chunk:.1f}",
                f"{vmap_chunk / loop:.2f}x",
                f"{max_diff(g_vmap, g_loop):.1e}",
                f"{diff64:.1e}",
            ]
        )
        print(rows[-1], flush=True)

    headers = [
        "order",
        "per-task loop (tasks/s)",
        f"vmap x{args.meta_batch} (tasks/s)",
        "speed-up",
        f"vmap chunks of {args.chunk} (tasks/s)",
        "speed-up",
        "max abs grad diff f32",
        "max abs grad diff f64 (8 tasks)",
    ]
    notes = [
        f"Conv4-64, 5-way 1-shot, {args.query} query/class, 28x28 Omniglot ({args.data.name}), meta-batch "
        f"{args.meta_batch}, inner lr 0.4, 1 inner step; {args.seconds:g} s of measurement per cell "
        "after a warm-up.",
        "tasks/s = meta-gradients of one task per second (the outer optimizer step is not included).",
    ]
    if args.no_record:
        print(headers)
    else:
        print(append_results("MAML meta-gradient throughput", headers, rows, device=device, notes=notes))


if __name__ == "__main__":
    main()
