"""Prototypical Networks (Snell, Swersky and Zemel, 2017): Conv4 embedding, squared Euclidean distance.

Each step samples ``meta_batch`` episodes; for each, support and query images are
embedded in one batch normalized by the support set's statistics (as at test time,
so no query sees another), each class prototype is the mean of its support
embeddings, and the query logits are minus the squared Euclidean distances to the
prototypes. Adam with ``outer_lr`` minimizes the query cross-entropy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from learning.engine.algorithms._common import episode_setup
from learning.engine.algorithms.registry import register_algorithm
from learning.engine.algorithms.settings import META_BATCH, EpisodeSection, ImageConfig, episodes
from learning.engine.checkpoints import CheckpointStore
from learning.engine.data import EpisodeData
from learning.engine.loop import ProgressFn, StepOutput, StopFn, Trainable, TrainResult, run_training
from learning.engine.nets import build_model, embed_episode, embed_episodes
from learning.engine.params import section


@dataclass(frozen=True)
class ProtoNetConfig(ImageConfig):
    """Prototypical Networks on images: one episode a step with 15 queries per class, as in the paper."""

    task: EpisodeSection = section(lambda: episodes(query=15), "the meta-training episodes")
    meta_batch: int = META_BATCH.field(1)


def prototype_logits(support: Tensor, y_support: Tensor, query: Tensor, n_way: int) -> Tensor:
    """Minus squared Euclidean distances ``(..., Q, N)`` from query embeddings ``(..., Q, D)`` to
    class means of ``support`` ``(..., S, D)``, whose labels ``y_support`` ``(..., S)`` are in
    ``0..n_way-1``; leading dimensions are episodes.
    """
    onehot = F.one_hot(y_support, n_way).to(support.dtype)
    prototypes = onehot.transpose(-1, -2) @ support / onehot.sum(-2).unsqueeze(-1)
    return -((query.unsqueeze(-2) - prototypes.unsqueeze(-3)) ** 2).sum(-1)


def _episode_logits(model: nn.Module, xs: Tensor, ys: Tensor, xq: Tensor, n_way: int) -> Tensor:
    support, query = embed_episode(model, xs, xq)
    return prototype_logits(support, ys, query, n_way)


def train_protonet(
    config: dict[str, Any],
    data: EpisodeData,
    *,
    on_progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
    checkpoint: CheckpointStore | None = None,
) -> TrainResult:
    """ProtoNet on ``data``; ``config`` already validated. Returns the :class:`TrainResult`."""
    setup = episode_setup(config, data)
    sampler = setup.sampler(data, config["seed"])
    task = config["task"]
    model_config = setup.model_config(config, head="none", out_features=0)
    torch.manual_seed(config["seed"])
    model = build_model(model_config).to(setup.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config["outer_lr"])
    meta_batch = config["meta_batch"]
    n_way = task["n_way"]

    def step_fn(step: int, stop: StopFn) -> StepOutput:
        tasks = sampler.batch(step * meta_batch, meta_batch, setup.device)
        losses = []
        correct = 0.0
        for b in range(meta_batch):
            logits = _episode_logits(model, tasks.x_support[b], tasks.y_support[b], tasks.x_query[b], n_way)
            losses.append(F.cross_entropy(logits, tasks.y_query[b]))
            correct += float((logits.argmax(-1) == tasks.y_query[b]).float().mean())
        loss = torch.stack(losses).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return StepOutput(loss=float(loss.detach()), metrics={"query_accuracy": correct / meta_batch})

    return run_training(
        Trainable(
            algorithm="protonet",
            config=config,
            model=model,
            model_config=model_config,
            optimizer=optimizer,
            step_fn=step_fn,
            total_steps=config["steps"],
            examples_per_step=meta_batch * n_way * (task["k_shot"] + task["query"]),
            train_class_names=[data.class_names[c] for c in setup.train_classes],
        ),
        checkpoint_every=config["checkpoint_every"],
        on_progress=on_progress,
        should_stop=should_stop,
        checkpoint=checkpoint,
    )


def classify_protonet(
    model: nn.Module,
    xs: Tensor,
    ys: Tensor,
    xq: Tensor,
    adapt: Mapping[str, Any],
    *,
    should_stop: StopFn | None = None,
) -> Tensor:
    """Logits ``(B, Q, N)``: minus squared distances to the prototypes of each episode's support.

    One forward pass per episode (:func:`embed_episodes`), so ``should_stop`` is not polled.
    """
    support, query = embed_episodes(model, xs, xq)
    return prototype_logits(support, ys, query, int(ys.max()) + 1)


register_algorithm(
    "protonet",
    train_protonet,
    config=ProtoNetConfig,
    label="Prototypical Networks",
    classify=classify_protonet,
    model={"arch": "conv4", "head": "none"},
)
