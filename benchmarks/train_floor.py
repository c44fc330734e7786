"""Training steps per second: the engine's ``train()`` against a minimal hand-written loop (the floor).

ProtoNet on Omniglot (``images_background_small1``), its defaults: Conv4-64, one 5-way 1-shot
episode with 15 queries per class a step, Adam 1e-3. The floor is the loop people write
from the paper: the same Conv4 shape with PyTorch's own ``nn.BatchNorm2d`` (fused kernels),
support and queries in one batch, prototypes, cross-entropy, Adam; it draws its episodes
with the same sampler, so both pay for sampling. Each runs for ``--seconds`` in alternating
rounds so machine load hits both alike. MAML's floor is learn2learn and a minimal vmap
loop: see ``benchmarks/peers/maml_learn2learn.py``.

    .venv/bin/python -m benchmarks.train_floor [--seconds 30]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from benchmarks._results import append_results
from learning.engine.algorithms import train
from learning.engine.episodes import EpisodeSampler, EpisodeSpec
from learning.engine.omniglot import load_omniglot_zip

DATA = Path(__file__).resolve().parents[2] / "shared/data/omniglot/images_background_small1.zip"
N_WAY, K_SHOT, QUERY = 5, 1, 15


def minimal_conv4(hidden: int = 64) -> nn.Module:
    """Conv4 as the papers write it: 4 x [conv3x3, BatchNorm2d, ReLU, max-pool 2], flattened."""
    layers: list[nn.Module] = []
    channels = 1
    for _ in range(4):
        layers += [
            nn.Conv2d(channels, hidden, 3, padding=1),
            nn.BatchNorm2d(hidden),
            nn.ReLU(),
            nn.MaxPool2d(2),
        ]
        channels = hidden
    return nn.Sequential(*layers, nn.Flatten())


def minimal_protonet_rate(data, seconds: float) -> float:
    """Steps per second of the hand-written ProtoNet loop for about ``seconds``."""
    torch.manual_seed(0)
    model = minimal_conv4()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    sampler = EpisodeSampler(data, range(data.num_classes), EpisodeSpec(N_WAY, K_SHOT, QUERY), seed=0)
    steps, start = 0, time.perf_counter()
    while steps < 3 or time.perf_counter() - start < seconds:
        tasks = sampler.batch(steps, 1)
        xs, ys, xq, yq = tasks.x_support[0], tasks.y_support[0], tasks.x_query[0], tasks.y_query[0]
        emb = model(torch.cat([xs, xq]))
        support, query = emb[: len(xs)], emb[len(xs) :]
        prototypes = torch.stack([support[ys == c].mean(0) for c in range(N_WAY)])
        loss = F.cross_entropy(-(torch.cdist(query, prototypes) ** 2), yq)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        steps += 1
    return steps / (time.perf_counter() - start)


def engine_protonet_rate(data, seconds: float) -> float:
    """Steps per second of ``train()`` with ProtoNet's defaults (checkpoints off) for about ``seconds``."""
    config = {"algorithm": "protonet", "steps": 200_000, "checkpoint_every": 0, "device": "cpu"}
    start = time.perf_counter()
    result = train(config, data, should_stop=lambda: time.perf_counter() - start > seconds)
    return result.steps_done / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="measuring time per loop")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds the seconds are split into")
    parser.add_argument("--no-record", action="store_true", help="print only; do not append to RESULTS.md")
    args = parser.parse_args()
    data = load_omniglot_zip(DATA)
    per_round = args.seconds / args.rounds
    engine, floor = [], []
    for _ in range(args.rounds):
        engine.append(engine_protonet_rate(data, per_round))
        floor.append(minimal_protonet_rate(data, per_round))
        print(f"engine {engine[-1]:.1f} steps/s, floor {floor[-1]:.1f} steps/s", flush=True)
    e, f = statistics.median(engine), statistics.median(floor)
    rows = [
        ["protonet", "engine train()", f"{e:.1f}", f"{e / f:.2f}x"],
        ["protonet", "minimal hand-written loop (floor)", f"{f:.1f}", "1.00x"],
    ]
    if args.no_record:
        print(rows)
        return
    print(
        append_results(
            "Training steps per second: engine vs a minimal hand-written loop",
            ["algorithm", "loop", f"steps/s (median of {args.rounds} rounds)", "vs floor"],
            rows,
            device=torch.device("cpu"),
            notes=[
                f"Omniglot {DATA.name}, ProtoNet defaults: Conv4-64, one {N_WAY}-way {K_SHOT}-shot episode "
                f"with {QUERY} queries per class a step, Adam 1e-3; {args.seconds:g} s per loop in "
                f"{args.rounds} alternating rounds; both sample their episodes with the engine's sampler.",
                "The engine normalizes by the support set's statistics (each query on its own) and logs "
                "progress; the floor uses nn.BatchNorm2d over support and queries together.",
            ],
        )
    )


if __name__ == "__main__":
    main()
