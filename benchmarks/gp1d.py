"""GP-1d regression: CNP and latent NP log-likelihood next to the exact GP posterior (the oracle).

Functions come from a GP with an RBF kernel (length scale 0.4, signal variance 1, noise
std 0.02, x in [-2, 2]). The command trains a CNP and a latent NP (Garnelo et al., 2018;
128-wide MLPs, 3-layer encoder and decoder, batches of 16 tasks with 3..50 context and 50
more target points, Adam 5e-4), then scores them and the exact GP posterior on the same
held-out tasks (the ``test`` stream) for several context sizes K, with 50 target points
a task: per target point, the marginal predictive log-likelihood (nats), the joint one
(``log p(y_1..y_T | context) / T``; a CNP factorizes, so both are equal for it) and the
MSE of the predictive mean; mean over tasks with its 95% CI, plus the paired gap to the oracle.
The NP's likelihoods are Monte-Carlo estimates over 32 draws of z from q(z | context).

Run from the repository root::

    .venv/bin/python benchmarks/gp1d.py                    # full budget, appends to RESULTS.md
    .venv/bin/python benchmarks/gp1d.py --steps 200 --no-write     # a smoke run
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from benchmarks._results import RESULTS, append_results, markdown_table  # noqa: E402
from learning.engine.algorithms import train  # noqa: E402
from learning.engine.functions import FunctionFamily, heldout_tasks  # noqa: E402
from learning.engine.regression_eval import (  # noqa: E402
    MIN_EVAL_TASKS,
    RegressionReport,
    evaluate_gp_oracle,
    evaluate_neural_process,
    paired_difference,
)
from learning.engine.weights import load_model  # noqa: E402

MODELS: dict[str, tuple[str, dict[str, object]]] = {
    "cnp": ("CNP", {"algorithm": "cnp"}),
    "np": ("NP (latent path only, as Garnelo et al.)", {"algorithm": "np"}),
    "np-det": ("NP + deterministic path", {"algorithm": "np", "model": {"deterministic_path": True}}),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10000, help="training steps per model (default 10000)")
    parser.add_argument("--models", nargs="+", default=["cnp", "np"], choices=sorted(MODELS))
    parser.add_argument("--shots", type=int, nargs="+", default=[5, 10, 20], help="context sizes K")
    parser.add_argument("--tasks", type=int, default=MIN_EVAL_TASKS, help="held-out tasks (default 600)")
    parser.add_argument("--targets", type=int, default=50, help="target points per held-out task")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--no-write", action="store_true", help="print only; do not append to RESULTS.md")
    args = parser.parse_args(argv)
    if args.tasks < MIN_EVAL_TASKS and not args.no_write:
        parser.error(f"--tasks {args.tasks} is below {MIN_EVAL_TASKS}; use --no-write for such a run")
    torch.set_num_threads(args.threads)
    family = FunctionFamily.from_spec("gp-1d")
    started = time.monotonic()

    trained = {}
    train_seconds: dict[str, float] = {}
    for key in args.models:
        label, overrides = MODELS[key]
        config = {"steps": args.steps, "seed": args.seed, "checkpoint_every": 0, **overrides}
        result = train(config, family)
        trained[key] = load_model(result.weights, result.model_config)
        train_seconds[key] = result.metrics["train_seconds"]
        print(
            f"trained {label}: {train_seconds[key]:.0f} s, final loss {result.metrics['loss']:.3f}",
            flush=True,
        )

    headers = [
        "K",
        "model",
        "log-lik / point",
        "joint log-lik / point",
        "MSE",
        "oracle - model (log-lik, paired)",
    ]
    rows: list[list[object]] = []
    for k in args.shots:
        tasks = heldout_tasks(family, seed=args.seed, n_tasks=args.tasks, k_context=k, n_target=args.targets)
        oracle = evaluate_gp_oracle(family, tasks)
        reports: list[RegressionReport] = [oracle]
        for key in args.models:
            reports.append(evaluate_neural_process(MODELS[key][0], trained[key], tasks, seed=args.seed))
        for rep in reports:
            gap = (
                ""
                if rep is oracle
                else paired_difference(oracle.per_task["log_lik"], rep.per_task["log_lik"])
            )
            s = rep.scores
            rows.append([k, rep.model, s["log_lik"], s["joint_log_lik"], s["mse"], gap])
            print(" | ".join(str(c) for c in rows[-1]), flush=True)
    total = time.monotonic() - started
    spent = ", ".join(f"{MODELS[k][0]} {train_seconds[k]:.0f} s" for k in args.models)
    notes = [
        f"Budget: {args.steps} training steps per model (16 tasks a step, the `cnp` / `np` defaults); "
        f"training time on CPU: {spent}. Neural-process papers train for hundreds of thousands of steps, "
        "so the gap to the oracle here is larger than theirs.",
        f"{args.tasks} held-out tasks (`test` stream, seed {args.seed}), K context and {args.targets} target "
        f"points each, identical for every model; GP: {family.to_spec()['params']}.",
        "Log-likelihoods in nats per target point (marginal; joint = log p(all targets | context) / T). "
        "The NP's are Monte-Carlo estimates over 32 draws of z (biased low). Cells: mean ± 95% CI.",
        f"Whole run: {total:.0f} s on CPU, {torch.get_num_threads()} torch thread(s).",
    ]
    print(markdown_table(headers, rows))
    print("\n".join(notes))
    if not args.no_write:
        append_results(
            "GP-1d regression: CNP and NP vs the exact GP posterior",
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
