"""Where a MAML meta-training step spends its time on CPU: torch.profiler's operators, grouped.

One ``maml_train_step`` as ``train()`` runs it (Conv4-64, Omniglot 5-way 1-shot, meta-batch
32, the default chunk of ``task_chunk``), profiled over a few steps after warm-up; operators
are grouped into convolutions (forward and backward), the batch-statistics normalization's
reductions, pooling, and the other elementwise work (mostly the normalization's backward
and double backward). Explains the gap in ``benchmarks/peers/maml_learn2learn.py``.

    .venv/bin/python -m benchmarks.maml_profile [--query 5] [--order second] [--steps 3]
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import torch
from torch.nn import functional as F

from benchmarks._results import append_results
from learning.engine.algorithms import validate_config
from learning.engine.algorithms._common import task_chunk
from learning.engine.episodes import EpisodeSampler, EpisodeSpec
from learning.engine.functional import InnerLoop, maml_train_step
from learning.engine.nets import build_model
from learning.engine.omniglot import load_omniglot_zip

DATA = Path(__file__).resolve().parents[2] / "shared/data/omniglot/images_background_small1.zip"
GROUPS = {
    "convolution (forward and backward)": ("convolution",),
    "normalization statistics (var_mean)": ("var_mean",),
    "max-pooling (forward and backward)": ("max_pool",),
    "elementwise and sums (normalization backward, SGD, Adam)": (
        "mul",
        "add",
        "div",
        "sub",
        "sum",
        "neg",
        "addcmul",
        "threshold",
        "clamp",
        "fill",
        "copy",
        "rsqrt",
        "pow",
    ),
}


def group_of(name: str) -> str:
    """The :data:`GROUPS` key an ``aten::`` operator belongs to, or ``"other"``."""
    op = name.removeprefix("aten::")
    for group, keys in GROUPS.items():
        if any(op.startswith(k) or k in op for k in keys):
            return group
    return "other"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--query", type=int, default=5, help="query examples per class (train default: 5)")
    parser.add_argument("--order", choices=("second", "first"), default="second")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--no-record", action="store_true", help="print only; do not append to RESULTS.md")
    args = parser.parse_args()
    device = torch.device("cpu")
    config = validate_config({"algorithm": "maml"})
    chunk = task_chunk(config, device)
    data = load_omniglot_zip(DATA)
    spec = EpisodeSpec(5, 1, args.query, rotations=True)
    batch = EpisodeSampler(data, range(data.num_classes), spec, seed=0).batch(0, config["meta_batch"], device)
    model = build_model({"arch": "conv4", "out_features": 5})
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    inner = InnerLoop(F.cross_entropy, 0.4, 1, first_order=args.order == "first")

    def step() -> None:
        maml_train_step(model, optimizer, batch, inner, chunk=chunk, should_stop=lambda: False)

    for _ in range(2):
        step()
    with torch.profiler.profile() as profile:
        for _ in range(args.steps):
            step()
    totals: dict[str, float] = defaultdict(float)
    for event in profile.key_averages():
        if event.key.startswith("aten::"):
            totals[group_of(event.key)] += event.self_cpu_time_total / 1e6
    whole = sum(totals.values())
    rows = [
        [group, f"{seconds / args.steps * 1000:.0f}", f"{100 * seconds / whole:.0f}%"]
        for group, seconds in sorted(totals.items(), key=lambda kv: -kv[1])
    ]
    for row in rows:
        print(row)
    if args.no_record:
        return
    print(
        append_results(
            f"Where a MAML step's time goes on CPU ({args.order} order)",
            ["operators", "ms a step (self CPU)", "share"],
            rows,
            device=device,
            notes=[
                f"maml_train_step as train() runs it: Conv4-64, 5-way 1-shot, {args.query} queries per "
                f"class, meta-batch {config['meta_batch']}, chunks of {chunk} tasks; {args.steps} steps "
                "under torch.profiler after 2 warm-up steps; self CPU time of aten operators.",
            ],
        )
    )


if __name__ == "__main__":
    main()
