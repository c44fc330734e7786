"""Reptile (Nichol, Achiam and Schulman, 2018) on images: Conv4 with an ``n_way`` linear head.

Each step samples ``meta_batch`` episodes and, for each, trains a copy of the weights
with ``inner_steps`` full-batch SGD steps of ``inner_lr`` on all the episode's examples
(support and query, as Reptile's "train shots"); the tasks run batched with vmap. The
initialization then moves towards the adapted weights:
``theta <- theta + eps_t * mean_i(phi_i - theta)`` with ``eps_t = outer_lr * (1 - t / steps)``
(the paper's linearly annealed meta step size). At evaluation the net adapts to the
support set with ``eval_inner_steps`` SGD steps of ``eval_inner_lr``.

Deviation from the paper, on purpose: the inner optimizer is plain SGD (the paper used
Adam with beta1 = 0), so the inner loop shares :func:`learning.engine.functional.adapt`
with MAML and needs no per-task optimizer state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.func import functional_call, grad_and_value, vmap
from torch.nn import functional as F

from learning.engine.algorithms._common import episode_setup, task_chunk
from learning.engine.algorithms.maml import classify_adapted
from learning.engine.algorithms.registry import register_algorithm
from learning.engine.algorithms.settings import (
    EVAL_INNER_STEPS,
    INNER_LR,
    INNER_STEPS,
    META_BATCH,
    OUTER_LR,
    InnerLoopConfig,
)
from learning.engine.checkpoints import CheckpointStore
from learning.engine.data import EpisodeData
from learning.engine.functional import Params, check_functional_safe, model_params
from learning.engine.loop import (
    ProgressFn,
    StepInterrupted,
    StepOutput,
    StopFn,
    Trainable,
    TrainResult,
    run_training,
)
from learning.engine.nets import build_model


@dataclass(frozen=True)
class ReptileConfig(InnerLoopConfig):
    """Reptile on images (Nichol et al. 2018): 5 SGD steps of 0.1 per task, 5 tasks a step.

    ``outer_lr`` is the initial meta step size (1.0), annealed linearly to 0.
    """

    meta_batch: int = META_BATCH.field(5)
    outer_lr: float = OUTER_LR.field(1.0, help="initial meta step size, annealed linearly to 0")
    inner_lr: float = INNER_LR.field(0.1)
    inner_steps: int = INNER_STEPS.field(5)
    eval_inner_steps: int = EVAL_INNER_STEPS.field(10)


def train_reptile(
    config: dict[str, Any],
    data: EpisodeData,
    *,
    on_progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
    checkpoint: CheckpointStore | None = None,
) -> TrainResult:
    """Reptile on ``data``; ``config`` already validated. Returns the :class:`TrainResult`."""
    setup = episode_setup(config, data)
    sampler = setup.sampler(data, config["seed"])
    task = config["task"]
    adapt_cfg = {"inner_lr": config["eval_inner_lr"], "inner_steps": config["eval_inner_steps"]}
    model_config = setup.model_config(config, head="linear", out_features=task["n_way"], adapt=adapt_cfg)
    torch.manual_seed(config["seed"])
    model = build_model(model_config).to(setup.device)
    check_functional_safe(model)
    params, buffers = model_params(model)
    meta_batch = config["meta_batch"]
    chunk = task_chunk(config, setup.device)
    total_steps = config["steps"]

    def adapt_one(theta: Params, x: Tensor, y: Tensor) -> tuple[Params, Tensor]:
        def loss(p: Params) -> Tensor:
            return F.cross_entropy(functional_call(model, (p, buffers), (x,)), y)

        last = torch.zeros((), device=x.device, dtype=x.dtype)
        for _ in range(config["inner_steps"]):
            g, last = grad_and_value(loss)(theta)
            theta = {k: theta[k] - config["inner_lr"] * g[k] for k in theta}
        return theta, last

    def step_fn(step: int, stop: StopFn) -> StepOutput:
        tasks = sampler.batch(step * meta_batch, meta_batch, setup.device)
        x = torch.cat([tasks.x_support, tasks.x_query], dim=1)
        y = torch.cat([tasks.y_support, tasks.y_query], dim=1)
        theta = {k: p.detach() for k, p in params.items()}
        delta = {k: torch.zeros_like(p) for k, p in theta.items()}
        loss_sum = 0.0
        with torch.no_grad():
            for start in range(0, meta_batch, chunk):
                if start > 0 and stop():
                    raise StepInterrupted()
                fast, last = vmap(adapt_one, in_dims=(None, 0, 0))(
                    theta, x[start : start + chunk], y[start : start + chunk]
                )
                for k in delta:
                    delta[k] += (fast[k] - theta[k].unsqueeze(0)).sum(0)
                loss_sum += float(last.sum())
            eps = config["outer_lr"] * (1.0 - step / total_steps)
            for k, p in params.items():
                p.add_(delta[k], alpha=eps / meta_batch)
        return StepOutput(loss=loss_sum / meta_batch, metrics={"meta_step_size": eps})

    return run_training(
        Trainable(
            algorithm="reptile",
            config=config,
            model=model,
            model_config=model_config,
            step_fn=step_fn,
            total_steps=total_steps,
            examples_per_step=meta_batch * task["n_way"] * (task["k_shot"] + task["query"]),
            train_class_names=[data.class_names[c] for c in setup.train_classes],
        ),
        checkpoint_every=config["checkpoint_every"],
        on_progress=on_progress,
        should_stop=should_stop,
        checkpoint=checkpoint,
    )


register_algorithm(
    "reptile",
    train_reptile,
    config=ReptileConfig,
    label="Reptile",
    classify=classify_adapted,
    model={"arch": "conv4", "head": "linear"},
    adapts=True,
)
