"""Sinusoid regression (Finn et al., 2017, section 5.1): MAML versus a pretrained net, fine-tuned alike.

For each K (5 and 10) the command meta-trains the 1-40-40-1 MLP with MAML (K context and
K target points a task, 25 tasks a step, one inner SGD step of 0.01, Adam 1e-3) and
trains the same net on the pooled points of all tasks ("pretrained"), for the same
number of steps. Both are then fine-tuned on the K context points of each of the same
held-out tasks (the ``test`` stream) with SGD of 0.01, and scored by the MSE on 100
target points after 1 and after 10 steps: mean over tasks with its 95% CI, plus the
paired difference (pretrained - MAML) on identical tasks.

Run from the repository root::

    .venv/bin/python benchmarks/sinusoid.py                 # full budget, appends to RESULTS.md
    .venv/bin/python benchmarks/sinusoid.py --steps 200 --no-write   # a smoke run
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks._results import RESULTS, append_results, markdown_table  # noqa: E402
from learning.engine.algorithms import train  # noqa: E402
from learning.engine.functions import FunctionFamily, heldout_tasks  # noqa: E402
from learning.engine.regression_eval import (  # noqa: E402
    MIN_EVAL_TASKS,
    adapted_mse,
    mean_ci95,
    paired_difference,
)
from learning.engine.weights import load_model  # noqa: E402

INNER_LR = 0.01
"""Finn et al.'s inner step size, used for MAML's training and for every fine-tuning here."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=8000, help="training steps per model (default 8000)")
    parser.add_argument(
        "--shots", type=int, nargs="+", default=[5, 10], help="context sizes K (default 5 10)"
    )
    parser.add_argument("--tasks", type=int, default=MIN_EVAL_TASKS, help="held-out tasks (default 600)")
    parser.add_argument("--targets", type=int, default=100, help="target points per held-out task")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--no-write", action="store_true", help="print only; do not append to RESULTS.md")
    args = parser.parse_args(argv)
    if args.tasks < MIN_EVAL_TASKS and not args.no_write:
        parser.error(f"--tasks {args.tasks} is below {MIN_EVAL_TASKS}; use --no-write for such a run")
    torch.set_num_threads(args.threads)
    family = FunctionFamily.from_spec("sinusoid")
    headers = ["K", "model", "MSE after 1 step", "MSE after 10 steps", "train time (s)"]
    rows: list[list[object]] = []
    started = time.monotonic()
    for k in args.shots:
        tasks = heldout_tasks(family, seed=args.seed, n_tasks=args.tasks, k_context=k, n_target=args.targets)
        per: dict[str, dict[int, np.ndarray]] = {}
        for algorithm, label in (("maml", "MAML"), ("pretrain", "pretrained, fine-tuned")):
            config = {
                "algorithm": algorithm,
                "domain": "function",
                "steps": args.steps,
                "seed": args.seed,
                "meta_batch": 25,
                "outer_lr": 1e-3,
                "inner_lr": INNER_LR,
                "inner_steps": 1,
                "task": {"k_shot": k, "query": k},
                "checkpoint_every": 0,
                "validation": {"tasks": 0},
            }
            result = train(config, family)
            model = load_model(result.weights, result.model_config)
            per[label] = adapted_mse(model, tasks, inner_lr=INNER_LR, steps=(1, 10))
            seconds = f"{result.metrics['train_seconds']:.0f}"
            rows.append([k, label, mean_ci95(per[label][1]), mean_ci95(per[label][10]), seconds])
            print(" | ".join(str(c) for c in rows[-1]), flush=True)
        gaps = [paired_difference(per["pretrained, fine-tuned"][n], per["MAML"][n]) for n in (1, 10)]
        rows.append([k, "pretrained - MAML (paired, same tasks)", *gaps, ""])
    total = time.monotonic() - started
    notes = [
        f"Budget: {args.steps} training steps per model (25 tasks a step, K context + K target points each), "
        "one model per K and method; Finn et al. trained 70,000 steps, so absolute MSEs here are higher.",
        f"{args.tasks} held-out tasks (`test` stream, seed {args.seed}), {args.targets} target points each; "
        f"fine-tuning: SGD with step {INNER_LR} on the K context points, for both nets alike.",
        "Cells: mean over tasks ± 95% CI half-width. The paired row is positive where MAML is better.",
        f"Whole run: {total:.0f} s on CPU, {torch.get_num_threads()} torch thread(s).",
    ]
    print(markdown_table(headers, rows))
    print("\n".join(notes))
    if not args.no_write:
        append_results(
            "Sinusoid regression: MAML vs pretrained + fine-tuning",
            headers,
            rows,
            device=torch.device("cpu"),
            notes=notes,
            path=args.results,
        )
        print(f"appended to {args.results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
