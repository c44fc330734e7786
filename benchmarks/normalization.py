"""Whose batch statistics normalize a query: the support set's (each query scored on its own,
the site's protocol) or the whole episode's (the papers' transductive protocol).

Meta-trains on ``images_background_small1`` and scores 5-way 1-shot episodes of the held-out
alphabets of ``images_background_small2`` (as ``benchmarks/omniglot_quality.py``), each
evaluation on the very same episodes, with the paired difference's 95% CI:

- ProtoNet trained and scored with support statistics (what the site does now), and trained
  and scored transductively (what it did before), then that model scored with support statistics;
- MAML (its meta-training keeps the transductive outer loss), scored both ways.

    .venv/bin/python -m benchmarks.normalization --minutes 2 --episodes 600
"""

from __future__ import annotations

import argparse
import contextlib
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks._results import append_results
from learning.engine.algorithms import train
from learning.engine.evaluation import evaluate_classifier, mean_ci95
from learning.engine.nets import transductive_statistics
from learning.engine.omniglot import load_omniglot_zip

DATA_DIR = Path(__file__).resolve().parents[2] / "shared/data/omniglot"
TEST_ALPHABETS = ("Japanese_(katakana)", "Sanskrit", "Tagalog")


def _train(algorithm: str, data: Any, args: argparse.Namespace, *, transductive: bool) -> Any:
    config: dict[str, Any] = {
        "algorithm": algorithm,
        "model": {"hidden": args.hidden},
        "task": {"n_way": 5, "k_shot": 1},
        "steps": 100_000,
        "seed": args.seed,
        "checkpoint_every": 0,
    }
    deadline = time.monotonic() + 60 * args.minutes
    with transductive_statistics() if transductive else contextlib.nullcontext():
        return train(config, data, should_stop=lambda: time.monotonic() > deadline)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=2.0, help="training time per model")
    parser.add_argument("--episodes", type=int, default=600)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    train_data = load_omniglot_zip(DATA_DIR / "images_background_small1.zip")
    test_data = load_omniglot_zip(DATA_DIR / "images_background_small2.zip")
    classes = [c for c in range(test_data.num_classes) if test_data.class_groups[c] in TEST_ALPHABETS]

    def score(result: Any, algorithm: str, transductive: bool) -> Any:
        return evaluate_classifier(
            algorithm,
            result.weights,
            result.model_config,
            test_data,
            classes=classes,
            n_way=5,
            k_shot=1,
            query=5,
            episodes=args.episodes,
            seed=args.seed,
            strict=args.episodes >= 600,
            seen_class_names=result.train_class_names,
            transductive=transductive,
        )

    rows = []
    runs = [
        ("protonet", False, False),
        ("protonet", True, True),
        ("protonet", True, False),
        ("maml", True, True),
        ("maml", True, False),
    ]
    trained: dict[tuple[str, bool], Any] = {}
    reference: dict[str, np.ndarray] = {}
    for algorithm, train_transductive, eval_transductive in runs:
        key = (algorithm, train_transductive)
        if key not in trained:
            # MAML's own training is transductive whatever the context; train it once.
            trained[key] = _train(algorithm, train_data, args, transductive=train_transductive)
        result = trained[key]
        t0 = time.monotonic()
        evaluation = score(result, algorithm, eval_transductive)
        per_episode = evaluation.per_episode
        diff = ""
        if algorithm in reference:
            mean, ci = mean_ci95(per_episode - reference[algorithm])
            diff = f"{100 * mean:+.1f} ± {100 * ci:.1f}"
        else:
            reference[algorithm] = per_episode
        rows.append(
            [
                algorithm,
                "transductive" if train_transductive else "support",
                "transductive" if eval_transductive else "support",
                f"{100 * evaluation.mean:.1f} ± {100 * evaluation.ci95:.1f}",
                diff,
                evaluation.episodes,
                result.steps_done,
                f"{(time.monotonic() - t0) / 60:.1f}",
            ]
        )
        print(rows[-1], flush=True)
    print(
        append_results(
            "Normalization statistics: the support's (each query on its own) vs transductive",
            [
                "algorithm",
                "trained with statistics of",
                "scored with statistics of",
                "5-way 1-shot accuracy % (95% CI)",
                "paired difference vs the first row of the algorithm, points",
                "episodes",
                "train steps",
                "eval min",
            ],
            rows,
            device=torch.device("cpu"),
            notes=[
                f"Omniglot small1 -> held-out alphabets of small2, Conv4 hidden {args.hidden}, "
                f"{args.minutes:g} min of training per model, 5 queries per class, "
                "the same episodes for every row",
            ],
        )
    )


if __name__ == "__main__":
    main()
