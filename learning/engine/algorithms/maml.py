"""MAML and first-order MAML (Finn et al., 2017) on images: Conv4 with an ``n_way`` linear head.

Each step samples ``meta_batch`` episodes (episode ``step * meta_batch + j`` of the
training sampler, so any step can be redrawn on resume), adapts to every support set
with ``inner_steps`` SGD steps of ``inner_lr`` (batched over tasks with vmap, see
:mod:`learning.engine.functional`), and updates the initialization with Adam
(``outer_lr``) on the mean query cross-entropy. ``maml`` differentiates through the
inner gradients (second order); ``fomaml`` does not.

For other models (e.g. the regression MLP) use :func:`learning.engine.functional.maml_train_step`
with :func:`learning.engine.loop.run_training` directly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from learning.engine.algorithms._common import episode_setup, task_chunk
from learning.engine.algorithms.registry import register_algorithm
from learning.engine.algorithms.settings import InnerLoopConfig
from learning.engine.checkpoints import CheckpointStore
from learning.engine.data import EpisodeData
from learning.engine.functional import (
    InnerLoop,
    batched_adapt_predict,
    check_functional_safe,
    maml_train_step,
)
from learning.engine.loop import ProgressFn, StepOutput, StopFn, Trainable, TrainResult, run_training
from learning.engine.nets import build_model


@dataclass(frozen=True)
class MAMLConfig(InnerLoopConfig):
    """MAML and first-order MAML on images (Conv4; the shared image settings and inner loop).

    The defaults are the Omniglot setting of Finn et al. 2017 (inner step 0.4, one step,
    32 tasks a batch, Adam 1e-3).
    """


def train_maml(
    config: dict[str, Any],
    data: EpisodeData,
    *,
    on_progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
    checkpoint: CheckpointStore | None = None,
) -> TrainResult:
    """MAML on ``data`` (first order when ``config["algorithm"]`` is ``fomaml``); ``config`` already
    validated. Returns the :class:`TrainResult`."""
    name = config["algorithm"]
    first_order = name == "fomaml"
    setup = episode_setup(config, data)
    sampler = setup.sampler(data, config["seed"])
    task = config["task"]
    adapt = {"inner_lr": config["eval_inner_lr"], "inner_steps": config["eval_inner_steps"]}
    model_config = setup.model_config(config, head="linear", out_features=task["n_way"], adapt=adapt)
    torch.manual_seed(config["seed"])
    model = build_model(model_config).to(setup.device)
    check_functional_safe(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=config["outer_lr"])
    meta_batch = config["meta_batch"]
    chunk = task_chunk(config, setup.device)
    inner = InnerLoop(F.cross_entropy, config["inner_lr"], config["inner_steps"], first_order=first_order)

    def step_fn(step: int, stop: StopFn) -> StepOutput:
        tasks = sampler.batch(step * meta_batch, meta_batch, setup.device)
        loss, outputs = maml_train_step(model, optimizer, tasks, inner, chunk=chunk, should_stop=stop)
        accuracy = (outputs.argmax(-1) == tasks.y_query).float().mean().item()
        return StepOutput(loss=loss, metrics={"query_accuracy": accuracy})

    return run_training(
        Trainable(
            algorithm=name,
            config=config,
            model=model,
            model_config=model_config,
            optimizer=optimizer,
            step_fn=step_fn,
            total_steps=config["steps"],
            examples_per_step=meta_batch * task["n_way"] * (task["k_shot"] + task["query"]),
            train_class_names=[data.class_names[c] for c in setup.train_classes],
        ),
        checkpoint_every=config["checkpoint_every"],
        on_progress=on_progress,
        should_stop=should_stop,
        checkpoint=checkpoint,
    )


def classify_adapted(
    model: nn.Module,
    xs: Tensor,
    ys: Tensor,
    xq: Tensor,
    adapt: Mapping[str, Any],
    *,
    should_stop: StopFn | None = None,
) -> Tensor:
    """Query logits ``(B, Q, N)`` after ``adapt["inner_steps"]`` SGD steps of size ``adapt["inner_lr"]``.

    The head has the training ``n_way`` outputs, so episodes must have that many ways.
    ``should_stop`` is polled before every inner step (``AdaptationStopped`` when it fires).
    """
    inner = InnerLoop(F.cross_entropy, float(adapt["inner_lr"]), int(adapt["inner_steps"]))
    if xs.device.type == "cuda":
        return batched_adapt_predict(model, xs, ys, xq, inner, should_stop=should_stop)
    # On CPU, vmap turns each episode's own adapted weights into grouped convolutions, which
    # ran 1.7x slower than one episode at a time (benchmarks/evaluation_speed.py).
    return torch.cat(
        [
            batched_adapt_predict(
                model, xs[b : b + 1], ys[b : b + 1], xq[b : b + 1], inner, should_stop=should_stop
            )
            for b in range(xs.shape[0])
        ]
    )


for _name, _label in (("maml", "MAML (second order)"), ("fomaml", "First-order MAML")):
    register_algorithm(
        _name,
        train_maml,
        config=MAMLConfig,
        label=_label,
        classify=classify_adapted,
        model={"arch": "conv4", "head": "linear"},
        adapts=True,
    )
