"""Transfer gains: each transfer method against training from scratch, on identical few-shot episodes.

The source is a ProtoNet meta-trained on every alphabet of Omniglot ``images_background_small1``
(with rotations). The target is small2's alphabets that small1 lacks: Japanese_(katakana),
Sanskrit and Tagalog (never Greek or Latin, which both files share). In each target alphabet
the first half of the characters are the target's TRAINING classes (``--target-shots``
examples each: few target examples); the second half are NEW classes, used only for the
evaluation: 5-way 1-shot and 5-way 5-shot episodes (``--episodes``, >= 600), classified by
nearest prototype on each model's backbone features. Each method runs through the experiment
protocol (:func:`learning.engine.experiments.transfer_and_compare`): it trains for ``--steps``
steps (batch ``--batch``), so does its from-scratch baseline, and the two are compared
episode by episode: the gain is the mean accuracy difference with its 95% CI. ``target acc``
is each model's own classifier on the unused examples of the target training classes;
``run s`` is the method's whole run (transfer, baseline and evaluation).

Run from the repository root, e.g.:

    .venv/bin/python -m benchmarks.transfer_gains --source-steps 400 --steps 200 --episodes 600
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks._results import append_results
from learning.engine.algorithms import train
from learning.engine.algorithms.transfer import TransferData
from learning.engine.device import resolve_device
from learning.engine.experiments import EpisodePlan, transfer_and_compare
from learning.engine.omniglot import load_omniglot_zip
from learning.engine.transferability import features_of, leep, logme, nce, prototype_probabilities
from learning.engine.weights import load_model

DATA_DIR = Path(__file__).resolve().parents[2] / "shared/data/omniglot"
TEST_ALPHABETS = ("Japanese_(katakana)", "Sanskrit", "Tagalog")
METHODS: list[tuple[str, str, dict[str, Any]]] = [
    ("finetune (all layers)", "finetune", {}),
    ("finetune (head only)", "finetune", {"layers": "head"}),
    ("finetune + L2-SP (alpha 0.1)", "finetune", {"l2sp": 0.1}),
    ("feature (logistic head)", "feature", {"head": "logistic"}),
    ("instance (domain classifier)", "instance", {"weighting": "domain_classifier"}),
    ("instance (KMM)", "instance", {"weighting": "kmm"}),
    ("rkd (D 25, A 50)", "rkd", {"distance_weight": 25.0, "angle_weight": 50.0}),
]
SHOTS = (1, 5)
"""5-way 1-shot and 5-way 5-shot episodes."""


def split(data: Any) -> tuple[list[int], list[int]]:
    """(target training classes, new evaluation classes): halves of each test alphabet's characters."""
    train_classes: list[int] = []
    eval_classes: list[int] = []
    for alphabet in TEST_ALPHABETS:
        members = [c for c in range(data.num_classes) if data.class_groups[c] == alphabet]
        train_classes += members[: len(members) // 2]
        eval_classes += members[len(members) // 2 :]
    return train_classes, eval_classes


def fmt(mean: float | None, ci: float | None) -> str:
    return f"{100 * (mean or 0.0):.1f} ± {100 * (ci or 0.0):.1f}"


def _target_accuracy(metrics: dict[str, float]) -> str:
    return f"{100 * metrics.get('target_accuracy', float('nan')):.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--source-steps", type=int, default=400, help="ProtoNet meta-training episodes")
    parser.add_argument("--hidden", type=int, default=16, help="Conv4 filters per layer")
    parser.add_argument("--steps", type=int, default=200, help="training steps of every method")
    parser.add_argument("--batch", type=int, default=32, help="target examples per step")
    parser.add_argument("--target-shots", type=int, default=5, help="examples per target training class")
    parser.add_argument("--episodes", type=int, default=600)
    parser.add_argument("--query", type=int, default=5, help="query examples per class and episode")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (the machine is shared)")
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    started = time.monotonic()

    source_data = load_omniglot_zip(DATA_DIR / "images_background_small1.zip")
    target_data = load_omniglot_zip(DATA_DIR / "images_background_small2.zip")
    train_classes, eval_classes = split(target_data)

    t0 = time.monotonic()
    source_config = {
        "algorithm": "protonet",
        "model": {"hidden": args.hidden},
        "task": {"n_way": 5, "k_shot": 1, "query": 5},
        "steps": args.source_steps,
        "seed": args.seed,
        "device": args.device,
        "checkpoint_every": 0,
    }
    source = train(source_config, source_data)
    source_seconds = time.monotonic() - t0
    print(f"source: protonet {args.source_steps} episodes in {source_seconds:.0f}s", flush=True)
    data = TransferData(
        target_data, source.weights, source.model_config, "protonet", source_data, source.train_class_names
    )

    base = {
        "target": {"train_classes": train_classes, "examples_per_class": args.target_shots},
        "steps": args.steps,
        "batch_size": args.batch,
        "seed": args.seed,
        "device": args.device,
        "checkpoint_every": 0,
    }
    plan = EpisodePlan(
        n_way=5, k_shot=1, query=args.query, classes=eval_classes, episodes=args.episodes, seed=args.seed
    )
    rows = []
    for label, algorithm, extra in METHODS:
        t0 = time.monotonic()
        report = transfer_and_compare({"algorithm": algorithm, **base, **extra}, data, plan, SHOTS)
        seconds = time.monotonic() - t0
        if not rows:
            # The baseline of a plain fine-tune is the scratch run every method is compared with.
            assert report.baseline is not None
            row: list[object] = ["scratch", _target_accuracy(report.baseline.metrics)]
            for score in report.scores:
                row += [fmt(score.baseline_mean, score.baseline_ci95), "—"]
            rows.append([*row, "—"])
        row = [label, _target_accuracy(report.transferred.metrics)]
        for score in report.scores:
            row += [fmt(score.mean, score.ci95), fmt(score.mean - score.baseline_mean, score.gain_ci95)]
        rows.append([*row, f"{seconds:.0f}"])
        print(row, flush=True)

    # Transferability of the source for the target, from its features of the training examples.
    model = load_model(source.weights, source.model_config)
    idx = np.concatenate(
        [np.flatnonzero(target_data.labels == c)[: args.target_shots] for c in train_classes]
    )
    labels = np.repeat(np.arange(len(train_classes)), args.target_shots)
    feats = features_of(model, target_data.images[idx], batch_size=args.batch)
    source_feats = features_of(model, source_data.images, batch_size=args.batch)
    probs = prototype_probabilities(source_feats, source_data.labels, feats, source_data.num_classes)
    scores = (
        f"LogME {logme(feats, labels):.3f}, LEEP {leep(probs, labels):.3f}, "
        f"NCE {nce(probs.argmax(1), labels):.3f}"
    )

    headers = ["method", "target acc %", "5w1s acc %", "5w1s gain", "5w5s acc %", "5w5s gain", "run s"]
    notes = [
        f"source: ProtoNet, Conv4-{args.hidden}, {args.source_steps} 5-way 1-shot episodes on all of "
        f"small1 with rotations ({source_seconds:.0f}s)",
        f"target: {len(train_classes)} training classes (first half of each of {', '.join(TEST_ALPHABETS)}), "
        f"{args.target_shots} examples each; evaluation on the other {len(eval_classes)} classes",
        f"budget of every method: {args.steps} steps of {args.batch} target examples (instance: plus "
        f"{args.batch} source examples per step), Adam lr 1e-3, seed {args.seed}",
        f"{args.episodes} episodes per setting, {args.query} queries per class, identical for every "
        "method; gain = method - scratch per episode, mean ± 95% CI (percentage points)",
        f"transferability of the source for the target training examples: {scores}",
        f"total wall time {time.monotonic() - started:.0f}s",
    ]
    title = "Transfer gains: Omniglot small1 -> held-out small2 alphabets, each method vs scratch"
    if args.no_write:
        from benchmarks._results import markdown_table

        print(markdown_table(headers, rows))
        print("\n".join(notes))
    else:
        print(append_results(title, headers, rows, device=device, notes=notes))


if __name__ == "__main__":
    main()
