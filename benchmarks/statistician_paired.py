"""The Neural Statistician against ProtoNet on identical held-out Omniglot episodes, paired.

Both meta-train on every alphabet of ``images_background_small1`` (with rotations) for
the same ``--minutes`` of CPU time, with their defaults otherwise, and are tested on the
same ``--episodes`` episodes of Japanese_(katakana), Sanskrit and Tagalog from
``images_background_small2`` (the split of :mod:`benchmarks.omniglot_quality`), 5-way
1-shot and 5-shot. The table gives each one's accuracy (mean and 95 % CI) and the paired
per-episode difference (statistician minus ProtoNet) with its 95 % CI and paired t-test
p-value (:func:`learning.engine.evaluation.paired_comparison`). Run from the repository
root, e.g.:

    .venv/bin/python -m benchmarks.statistician_paired --minutes 10 --threads 1
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from benchmarks._results import append_results
from benchmarks.omniglot_quality import DATA_DIR, TEST_ALPHABETS
from learning.engine.algorithms import train
from learning.engine.device import resolve_device
from learning.engine.evaluation import EvalResult, evaluate_model, paired_comparison
from learning.engine.omniglot import load_omniglot_zip
from learning.engine.weights import load_model

ALGORITHMS = ("statistician", "protonet")
SHOTS = (1, 5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="CPU minutes of training for each")
    parser.add_argument("--episodes", type=int, default=600, help="test episodes (>= 600 for the protocol)")
    parser.add_argument("--query", type=int, default=5, help="test queries per class")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    parser.add_argument(
        "--no-record", action="store_true", help="smoke run: print only, allow < 600 episodes, no RESULTS.md"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device("cpu")
    train_data = load_omniglot_zip(args.data_dir / "images_background_small1.zip")
    test_data = load_omniglot_zip(args.data_dir / "images_background_small2.zip")
    classes = [c for c in range(test_data.num_classes) if test_data.class_groups[c] in TEST_ALPHABETS]

    results: dict[tuple[str, int], EvalResult] = {}
    trained: dict[str, str] = {}
    for algorithm in ALGORITHMS:
        config = {
            "algorithm": algorithm,
            "steps": 200_000,
            "seed": args.seed,
            "device": "cpu",
            "checkpoint_every": 0,
            "rotations": True,
        }
        deadline = time.process_time() + 60 * args.minutes
        result = train(config, train_data, should_stop=lambda d=deadline: time.process_time() > d)
        trained[algorithm] = f"{result.steps_done} steps"
        model = load_model(result.weights, result.model_config)
        for k_shot in SHOTS:
            results[algorithm, k_shot] = evaluate_model(
                algorithm,
                model,
                test_data,
                classes=classes,
                n_way=5,
                k_shot=k_shot,
                query=args.query,
                episodes=args.episodes,
                seed=args.seed,
                device=device,
                strict=not args.no_record,
                seen_class_names=result.train_class_names,
            )
            print(algorithm, k_shot, results[algorithm, k_shot].as_dict(), flush=True)

    rows = []
    for k_shot in SHOTS:
        ours, theirs = results["statistician", k_shot], results["protonet", k_shot]
        paired = paired_comparison(ours, theirs)
        rows.append(
            [
                f"5w{k_shot}s",
                f"{100 * ours.mean:.1f} ± {100 * ours.ci95:.1f}",
                f"{100 * theirs.mean:.1f} ± {100 * theirs.ci95:.1f}",
                f"{100 * paired['mean_diff']:+.1f} ± {100 * paired['ci95']:.1f}",
                f"{paired['p_value']:.2g}",
                ours.episodes,
            ]
        )
    print(rows)
    if args.no_record:
        return
    headers = [
        "setting",
        "statistician % (95% CI)",
        "protonet % (95% CI)",
        "paired difference, points (95% CI)",
        "paired t-test p",
        "episodes (identical for both)",
    ]
    notes = [
        f"training: {args.minutes:g} CPU-minutes each on all alphabets of images_background_small1 "
        f"(rotations as extra classes), {torch.get_num_threads()} torch threads, defaults otherwise; "
        + ", ".join(f"{a} {trained[a]}" for a in ALGORITHMS)
        + ".",
        f"test: 5-way episodes of {', '.join(TEST_ALPHABETS)} (images_background_small2), "
        f"{args.query} queries per class, seed {args.seed}; the same episodes for both models.",
    ]
    print(
        append_results(
            "Neural Statistician against ProtoNet, paired on held-out Omniglot",
            headers,
            rows,
            device=device,
            notes=notes,
        )
    )


if __name__ == "__main__":
    main()
