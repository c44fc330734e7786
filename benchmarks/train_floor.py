"""Training steps per second: the engine's ``train()`` against a minimal hand-written loop (the floor).

On Omniglot (``images_background_small1``), each algorithm with its defaults and Conv4-64.
The floor is the loop people write from the paper, on the same Conv4 shape with PyTorch's
own ``nn.BatchNorm2d`` (fused kernels), drawing its episodes or pairs with the engine's
samplers so both pay for sampling:

- ``protonet``: one 5-way 1-shot episode with 15 queries per class a step; support and
  queries in one batch, prototypes, cross-entropy, Adam 1e-3;
- ``siamese``: 64 pairs a step, both images through the shared net, weighted L1 distance,
  binary cross-entropy, Adam 1e-3;
- ``reptile``: 5 tasks of 5-way 1-shot with 5 queries per class a step, each trained by a
  copy of the net with 5 SGD steps of 0.1, then the meta step ``theta += eps * mean(phi - theta)``.

Engine and floor run for ``--seconds`` in alternating rounds so machine load hits both alike.
MAML's floor is learn2learn and a minimal vmap loop: ``benchmarks/peers/maml_learn2learn.py``.

    .venv/bin/python -m benchmarks.train_floor [--algorithm protonet siamese reptile] [--seconds 30]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from benchmarks._results import append_results
from learning.engine.algorithms import train
from learning.engine.episodes import EpisodeSampler, EpisodeSpec, PairSampler
from learning.engine.omniglot import load_omniglot_zip

DATA = Path(__file__).resolve().parents[2] / "shared/data/omniglot/images_background_small1.zip"
N_WAY, K_SHOT, QUERY = 5, 1, 15


def minimal_conv4(hidden: int = 64, out_features: int = 0) -> nn.Module:
    """Conv4 as the papers write it: 4 x [conv3x3, BatchNorm2d, ReLU, max-pool 2], flattened,
    with a linear head of ``out_features`` outputs when that is > 0."""
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
    layers.append(nn.Flatten())
    if out_features:
        layers.append(nn.Linear(hidden, out_features))
    return nn.Sequential(*layers)


def _episodes(data, query: int) -> EpisodeSampler:
    return EpisodeSampler(data, range(data.num_classes), EpisodeSpec(N_WAY, K_SHOT, query), seed=0)


def protonet_floor(data) -> Callable[[int], None]:
    """One step of the hand-written ProtoNet loop, by step index."""
    model = minimal_conv4()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    sampler = _episodes(data, QUERY)

    def step(i: int) -> None:
        tasks = sampler.batch(i, 1)
        xs, ys, xq, yq = tasks.x_support[0], tasks.y_support[0], tasks.x_query[0], tasks.y_query[0]
        emb = model(torch.cat([xs, xq]))
        support, query = emb[: len(xs)], emb[len(xs) :]
        prototypes = torch.stack([support[ys == c].mean(0) for c in range(N_WAY)])
        loss = F.cross_entropy(-(torch.cdist(query, prototypes) ** 2), yq)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step


def siamese_floor(data, pairs: int = 64) -> Callable[[int], None]:
    """One step of the hand-written Siamese loop (Koch et al.'s weighted L1 head), by step index."""
    model, scorer = minimal_conv4(), nn.Linear(64, 1)
    optimizer = torch.optim.Adam([*model.parameters(), *scorer.parameters()], lr=1e-3)
    sampler = PairSampler(data, range(data.num_classes), rotations=True, within_group=False, seed=0)

    def step(i: int) -> None:
        a, b, same = sampler.batch(i, pairs)
        emb = model(torch.cat([a, b]))
        logits = scorer((emb[:pairs] - emb[pairs:]).abs()).squeeze(-1)
        loss = F.binary_cross_entropy_with_logits(logits, same)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step


def reptile_floor(
    data, tasks: int = 5, inner_steps: int = 5, total_steps: int = 100_000
) -> Callable[[int], None]:
    """One step of the hand-written Reptile loop (a copy of the net per task), by step index."""
    model = minimal_conv4(out_features=N_WAY)
    sampler = _episodes(data, 5)

    def step(i: int) -> None:
        batch = sampler.batch(i * tasks, tasks)
        delta = [torch.zeros_like(p) for p in model.parameters()]
        for b in range(tasks):
            fast = copy.deepcopy(model)
            optimizer = torch.optim.SGD(fast.parameters(), lr=0.1)
            x = torch.cat([batch.x_support[b], batch.x_query[b]])
            y = torch.cat([batch.y_support[b], batch.y_query[b]])
            for _ in range(inner_steps):
                loss = F.cross_entropy(fast(x), y)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            with torch.no_grad():
                for d, p, q in zip(delta, fast.parameters(), model.parameters(), strict=True):
                    d += p - q
        with torch.no_grad():
            for d, p in zip(delta, model.parameters(), strict=True):
                p.add_(d, alpha=(1.0 - i / total_steps) / tasks)

    return step


FLOORS: dict[str, Callable[[Any], Callable[[int], None]]] = {
    "protonet": protonet_floor,
    "siamese": siamese_floor,
    "reptile": reptile_floor,
}


def floor_rate(algorithm: str, data, seconds: float) -> float:
    """Steps per second of the hand-written loop of ``algorithm`` for about ``seconds``."""
    torch.manual_seed(0)
    step = FLOORS[algorithm](data)
    steps, start = 0, time.perf_counter()
    while steps < 3 or time.perf_counter() - start < seconds:
        step(steps)
        steps += 1
    return steps / (time.perf_counter() - start)


def engine_rate(algorithm: str, data, seconds: float) -> float:
    """Steps per second of ``train()`` with the algorithm's defaults (no checkpoints) for ``seconds``."""
    config = {"algorithm": algorithm, "steps": 100_000, "checkpoint_every": 0, "device": "cpu"}
    start = time.perf_counter()
    result = train(config, data, should_stop=lambda: time.perf_counter() - start > seconds)
    return result.steps_done / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--algorithm", nargs="+", choices=list(FLOORS), default=list(FLOORS))
    parser.add_argument("--seconds", type=float, default=30.0, help="measuring time per loop")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds the seconds are split into")
    parser.add_argument("--no-record", action="store_true", help="print only; do not append to RESULTS.md")
    args = parser.parse_args()
    data = load_omniglot_zip(DATA)
    per_round = args.seconds / args.rounds
    rows = []
    for algorithm in args.algorithm:
        engine, floor = [], []
        for _ in range(args.rounds):
            engine.append(engine_rate(algorithm, data, per_round))
            floor.append(floor_rate(algorithm, data, per_round))
            print(f"{algorithm}: engine {engine[-1]:.2f} steps/s, floor {floor[-1]:.2f} steps/s", flush=True)
        e, f = statistics.median(engine), statistics.median(floor)
        rows += [
            [algorithm, "engine train()", f"{e:.2f}", f"{e / f:.2f}x"],
            [algorithm, "minimal hand-written loop (floor)", f"{f:.2f}", "1.00x"],
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
                f"Omniglot {DATA.name}, each algorithm's defaults, Conv4-64 (see the command's docstring for "
                f"each floor); {args.seconds:g} s per loop in {args.rounds} alternating rounds; both sample "
                "with the engine's samplers.",
                "The engine normalizes by batch statistics of its own (the support set's for ProtoNet), "
                "runs Reptile's tasks under vmap in chunks, and logs progress; the floors use "
                "nn.BatchNorm2d.",
            ],
        )
    )


if __name__ == "__main__":
    main()
