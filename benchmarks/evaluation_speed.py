"""Evaluation speed: the protocol's 600 episodes against the floor of the same convolutions.

ProtoNet, 5-way 1-shot, 15 queries per class: 600 episodes are 48,000 images through a
Conv4-64. The floor is the same images through the net's convolutions, max-pooling and
ReLUs alone (no normalization, no episodes, no prototypes), timed in the same run;
the arithmetic (multiply-adds of the convolutions) gives the rate both reach. MAML-family
evaluation adapts on each support set first, so its rows are expected to cost more in
proportion to their inner steps. The weights are a fresh initialization: the time does not
depend on their values.

    .venv/bin/python -m benchmarks.evaluation_speed [--episodes 600] [--threads 0]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from benchmarks._results import append_results
from learning.engine.evaluation import evaluate_model
from learning.engine.nets import build_model, channels_last
from learning.engine.omniglot import load_omniglot_zip

DATA = Path(__file__).resolve().parents[2] / "shared/data/omniglot/images_background_small2.zip"
N_WAY, K_SHOT, QUERY = 5, 1, 15


def conv4_macs(size: int = 28, hidden: int = 64, layers: int = 4, channels: int = 1) -> int:
    """Multiply-adds of one image through the convolutions of a Conv4 (3x3, padding 1, max-pool 2)."""
    macs, c_in = 0, channels
    for _ in range(layers):
        macs += size * size * hidden * c_in * 9
        size, c_in = size // 2, hidden
    return macs


def floor_seconds(model: torch.nn.Module, images: torch.Tensor, batch: int) -> float:
    """Seconds for ``images`` ``(n, 1, 28, 28)`` through the convolutions, max-pooling and ReLUs of
    the Conv4 ``model`` alone (no normalization, no episodes), ``batch`` images a call, with
    channels-last weights (the fastest layout here), after one warm-up call."""
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]

    def forward(x: torch.Tensor) -> torch.Tensor:
        for conv in convs:
            x = F.relu(F.max_pool2d(conv(x), 2))
        return x

    with channels_last(model), torch.no_grad():
        forward(images[:batch])
        start = time.perf_counter()
        for i in range(0, len(images), batch):
            forward(images[i : i + batch])
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--episodes", type=int, default=600)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--no-record", action="store_true", help="print only; do not append to RESULTS.md")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    data = load_omniglot_zip(DATA)
    classes = list(range(data.num_classes))
    images = args.episodes * N_WAY * (K_SHOT + QUERY)
    gmacs = images * conv4_macs() / 1e9
    torch.manual_seed(0)
    rows = []

    embedder = build_model({"arch": "conv4", "head": "none"}).eval()
    pixels = torch.from_numpy(data.images[np.arange(images) % len(data.images)]).float().div(255).unsqueeze(1)
    floor = floor_seconds(embedder, pixels, batch=N_WAY * (K_SHOT + QUERY))
    rows.append(
        [
            "floor: the convolutions, pooling and ReLUs alone, an episode's images a call",
            "",
            f"{floor:.1f}",
            f"{gmacs / floor:.1f}",
            "",
        ]
    )
    print(rows[-1], flush=True)

    runs = [
        ("protonet", {"arch": "conv4", "head": "none"}, {}),
        ("maml", {"arch": "conv4", "out_features": N_WAY}, {"inner_lr": 0.4, "inner_steps": 1}),
        ("maml", {"arch": "conv4", "out_features": N_WAY}, {"inner_lr": 0.4, "inner_steps": 3}),
    ]
    for algorithm, model_config, adapt in runs:
        model = build_model(model_config)
        start = time.perf_counter()
        result = evaluate_model(
            algorithm,
            model,
            data,
            classes=classes,
            n_way=N_WAY,
            k_shot=K_SHOT,
            query=QUERY,
            episodes=args.episodes,
            adapt=adapt,
            strict=False,
        )
        seconds = time.perf_counter() - start
        steps = f", {adapt['inner_steps']} inner step(s)" if adapt else ""
        rows.append(
            [
                f"{algorithm}{steps}",
                result.episodes,
                f"{seconds:.1f}",
                f"{gmacs / seconds:.1f}",
                f"{seconds / floor:.2f}x",
            ]
        )
        print(rows[-1], flush=True)

    headers = ["what", "episodes", "seconds", "conv GMAC/s (forward only)", "vs floor"]
    notes = [
        f"Omniglot {DATA.name}, all classes, {N_WAY}-way {K_SHOT}-shot, {QUERY} queries per class: "
        f"{images} images, {gmacs:.0f} GMAC of convolution forward "
        f"({conv4_macs() / 1e6:.1f} M a 28x28 image).",
        "evaluate_model as jobs run it (default batch of episodes); each query normalized by its "
        "support's statistics; MAML rows also differentiate through the support set, which the "
        "forward-only GMAC/s column does not count.",
    ]
    if args.no_record:
        print(headers, notes)
        return
    print(
        append_results(
            "Evaluation speed: 600 episodes vs the convolutions-alone floor",
            headers,
            rows,
            device=torch.device("cpu"),
            notes=notes,
        )
    )


if __name__ == "__main__":
    main()
