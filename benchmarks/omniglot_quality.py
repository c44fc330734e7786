"""Few-shot classification quality on Omniglot alphabets never seen in meta-training.

Meta-trains on every alphabet of ``images_background_small1`` (with rotations) and
tests on Japanese_(katakana), Sanskrit and Tagalog from ``images_background_small2``
(never on Greek or Latin, which both files share). Settings:

- ``5w1s``: 5-way 1-shot, classes from any test alphabet;
- ``5w5s``: 5-way 5-shot, likewise;
- ``20w1s``: 20-way 1-shot *within one alphabet* (Tagalog, with 17 characters, is skipped);
  trained on within-alphabet episodes too.

Each (algorithm, setting) trains until each of the ``--minutes`` milestones of training
time (the stop callback ends the run there) or ``--max-steps``, and is evaluated on
``--episodes`` test episodes (mean and 95% CI) at each milestone: time to accuracy. The run
then resumes from its checkpoint, exactly where it stopped, so the evaluations' time is not
counted as training.

Training time is CPU time of this process (``time.process_time``, all its threads), so a
milestone means the same work on a busy machine as on an idle one, and two single-thread
runs can share a 2-core machine; ``--clock wall`` measures wall-clock time instead.
``--set key=value`` overrides one config key for tuning (dots for sections, the value as
JSON), e.g. ``--set task.n_way=30``. Run from the repository root, e.g.:

    .venv/bin/python -m benchmarks.omniglot_quality --algorithm protonet --setting 5w1s \
        --minutes 5 10 20 --threads 1
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks._results import append_results
from learning.engine.algorithms import train
from learning.engine.checkpoints import InMemoryCheckpointStore
from learning.engine.device import resolve_device
from learning.engine.experiments import EpisodePlan, evaluate
from learning.engine.omniglot import load_omniglot_zip

DATA_DIR = Path(__file__).resolve().parents[2] / "shared/data/omniglot"
TEST_ALPHABETS = ("Japanese_(katakana)", "Sanskrit", "Tagalog")
SETTINGS: dict[str, dict[str, Any]] = {
    "5w1s": {"n_way": 5, "k_shot": 1, "within_group": False},
    "5w5s": {"n_way": 5, "k_shot": 5, "within_group": False},
    "20w1s": {"n_way": 20, "k_shot": 1, "within_group": True},
}
ALGORITHMS = ("protonet", "maml", "fomaml", "reptile", "siamese", "statistician")


def run_one(
    algorithm: str, setting: str, args: argparse.Namespace, train_data: Any, test_data: Any
) -> list[list[object]]:
    """Train one (algorithm, setting) to each milestone and evaluate there; returns a row per milestone."""
    spec = SETTINGS[setting]
    task: dict[str, Any] = {
        "n_way": spec["n_way"],
        "k_shot": spec["k_shot"],
        "within_group": spec["within_group"],
    }
    config: dict[str, Any] = {
        "algorithm": algorithm,
        "model": {"hidden": args.hidden},
        "task": task,
        "steps": args.max_steps,
        "seed": args.seed,
        "device": args.device,
        "checkpoint_every": 0,
        "rotations": True,
    }
    if args.meta_batch:
        config["meta_batch"] = args.meta_batch
    for override in args.set:
        key, value = override
        *sections, leaf = key.split(".")
        target = config
        for name in sections:
            target = target.setdefault(name, {})
        target[leaf] = value
    if algorithm in ("maml", "fomaml"):
        config["eval_inner_steps"] = 3
    classes = [c for c in range(test_data.num_classes) if test_data.class_groups[c] in TEST_ALPHABETS]
    plan = EpisodePlan(
        n_way=spec["n_way"],
        k_shot=spec["k_shot"],
        query=args.query,
        classes=classes,
        within_group=spec["within_group"],
        episodes=args.episodes,
        seed=args.seed,
        strict=not args.no_record,
    )
    clock = time.process_time if args.clock == "cpu" else time.monotonic
    store = InMemoryCheckpointStore()
    trained_s = 0.0
    rows: list[list[object]] = []
    for minutes in sorted(args.minutes):
        deadline = clock() + 60 * minutes - trained_s
        start = clock()
        result = train(config, train_data, should_stop=lambda d=deadline: clock() > d, checkpoint=store)
        trained_s += clock() - start
        t0 = time.monotonic()
        # Trained until the milestone on one file, scored on the other: the protocol's evaluation step.
        [score] = evaluate(
            algorithm,
            result.weights,
            result.model_config,
            test_data,
            plan,
            seen_class_names=result.train_class_names,
            device=args.device,
        )
        rows.append(
            [
                algorithm,
                setting,
                f"{100 * score.mean:.1f} ± {100 * score.ci95:.1f}",
                score.episodes,
                result.steps_done,
                f"{trained_s / 60:.1f}",
                f"{result.metrics.get('loss', float('nan')):.3f}",
                f"{(time.monotonic() - t0) / 60:.1f}",
            ]
        )
        print(rows[-1], flush=True)
        if not result.stopped:
            break  # --max-steps reached before this milestone
    return rows


def _override(text: str) -> tuple[str, Any]:
    """``key=value`` from the command line as ``(key, JSON value)``; a bare word is a string."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--algorithm", nargs="+", choices=ALGORITHMS, default=list(ALGORITHMS))
    parser.add_argument("--setting", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    parser.add_argument(
        "--minutes", type=float, nargs="+", default=[10.0], help="training-time milestones of each run"
    )
    parser.add_argument(
        "--clock", choices=("cpu", "wall"), default="cpu", help="what a training minute is (see above)"
    )
    parser.add_argument(
        "--set",
        type=_override,
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="override a config key (repeatable), e.g. task.n_way=30",
    )
    parser.add_argument("--max-steps", type=int, default=100_000, help="training steps if time allows")
    parser.add_argument("--episodes", type=int, default=600, help="test episodes (>= 600 for the protocol)")
    parser.add_argument("--query", type=int, default=5, help="test queries per class")
    parser.add_argument("--hidden", type=int, default=64, help="Conv4 filters")
    parser.add_argument("--meta-batch", type=int, default=0, help="override the algorithm's default")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    parser.add_argument(
        "--no-record", action="store_true", help="smoke run: print only, allow < 600 episodes, no RESULTS.md"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    train_data = load_omniglot_zip(args.data_dir / "images_background_small1.zip")
    test_data = load_omniglot_zip(args.data_dir / "images_background_small2.zip")
    rows = [
        row
        for a in args.algorithm
        for s in args.setting
        for row in run_one(a, s, args, train_data, test_data)
    ]
    headers = [
        "algorithm",
        "setting",
        "test accuracy % (95% CI)",
        "test episodes",
        "train steps",
        "train min",
        "final train loss",
        "eval min",
    ]
    notes = [
        "meta-train: all alphabets of images_background_small1 (rotations as extra classes); test: "
        "Japanese_(katakana), Sanskrit, Tagalog of images_background_small2 (20w1s within one alphabet; "
        "Tagalog skipped there).",
        f"milestones: {', '.join(f'{m:g}' for m in sorted(args.minutes))} min of training "
        f"({'CPU time of the process' if args.clock == 'cpu' else 'wall clock'}, "
        f"{torch.get_num_threads()} torch threads; evaluations not counted) or {args.max_steps} steps; "
        f"Conv4-{args.hidden}; {args.query} test queries per class; algorithm defaults otherwise "
        "(MAML/FOMAML: 3 inner steps at test)"
        + "".join(f"; {key}={json.dumps(value)}" for key, value in args.set)
        + ".",
    ]
    if args.no_record:
        return
    print(
        append_results(
            "Omniglot few-shot quality", headers, rows, device=resolve_device(args.device), notes=notes
        )
    )


if __name__ == "__main__":
    main()
