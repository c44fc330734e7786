"""The Neural Statistician (Edwards and Storkey, 2017) on image sets.

Meta-training maximizes the ELBO of sets: every class of every sampled episode is one set
of ``k_shot + query`` images of one class (5 images in the defaults, as in the paper's
Omniglot experiment), so the statistic network learns to summarize a class into ``c``
(the nets are in :mod:`learning.engine.statistician_nets`). Adam with ``outer_lr``
minimizes the negative ELBO per pixel. No labels beyond "these images belong together"
are used: the training is generative.

Few-shot classification as in the paper: each class's support set is summarized into
``q(c | D_k)``, each query alone into ``q(c | x)``, and the query's score for class ``k`` is
``-KL(q(c | x) || q(c | D_k))`` (nats). The encoder normalizes an episode by its support
set's statistics (:func:`learning.engine.nets.embed_episodes`), so a query's scores depend
on the support set and itself only. :func:`samples_like` draws new images of a class from
its support images.

It is registered for images only. On function families, a statistic network over a
task's ``(x, y)`` points with a decoder of ``y`` given ``x`` and the summary is the latent
Neural Process (``np``, :mod:`learning.engine.algorithms.neural_process`) that the engine
already offers, so a second one would add a name without adding a model.
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
from learning.engine.data import ImageArrays
from learning.engine.loop import ProgressFn, StepOutput, StopFn, Trainable, TrainResult, run_training
from learning.engine.model_configs import StatisticianNetSection
from learning.engine.nets import build_model, embed_episodes
from learning.engine.params import section
from learning.engine.statistician_nets import ARCH, NeuralStatistician, gaussian_kl


@dataclass(frozen=True)
class StatisticianConfig(ImageConfig):
    """The Neural Statistician: every class of an episode is one set of ``k_shot + query`` images."""

    task: EpisodeSection = section(lambda: episodes(query=4), "the episodes (a set per class)")
    meta_batch: int = META_BATCH.field(4, help="episodes per step")
    nets: StatisticianNetSection = section(StatisticianNetSection, "the set and image networks")


_SEED_STRIDE = 0x9E3779B97F4A7C15
"""Odd multiplier (2^64 / golden ratio) that spreads the per-step noise seeds apart."""


def _as_sets(x: Tensor, y: Tensor, n_way: int) -> Tensor:
    """Images ``(B, M, C, H, W)`` with labels ``(B, M)`` (each label equally often) regrouped into
    ``(B * n_way, M / n_way, C, H, W)``: one set per class of each episode."""
    order = y.argsort(dim=1, stable=True)
    grouped = torch.take_along_dim(x, order.view(*order.shape, 1, 1, 1), dim=1)
    return grouped.reshape(x.shape[0] * n_way, x.shape[1] // n_way, *x.shape[2:])


def summary_logits(
    model: NeuralStatistician, support: Tensor, y_support: Tensor, query: Tensor, n_way: int
) -> Tensor:
    """``-KL(q(c | x) || q(c | D_k))`` ``(..., Q, N)`` for query features ``(..., Q, D)`` and support
    features ``(..., S, D)`` with labels ``(..., S)`` in ``0..n_way-1``; leading dimensions are episodes."""
    onehot = F.one_hot(y_support, n_way).to(support.dtype)
    pooled = onehot.transpose(-1, -2) @ model.pre_pool(support) / onehot.sum(-2).unsqueeze(-1)
    per_class = model.context_of_pooled(pooled)  # (..., N, C)
    per_query = model.context_of_pooled(model.pre_pool(query))  # (..., Q, C)
    q = type(per_query)(per_query.mean.unsqueeze(-2), per_query.logvar.unsqueeze(-2))
    p = type(per_class)(per_class.mean.unsqueeze(-3), per_class.logvar.unsqueeze(-3))
    return -gaussian_kl(q, p)


def train_statistician(
    config: dict[str, Any],
    data: ImageArrays,
    *,
    on_progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
    checkpoint: CheckpointStore | None = None,
) -> TrainResult:
    """The Neural Statistician on ``data``; ``config`` already validated. Returns the :class:`TrainResult`."""
    setup = episode_setup(config, data)
    sampler = setup.sampler(data, config["seed"])
    task = config["task"]
    model_config = {**setup.model_config(config), "arch": ARCH, **config["nets"]}
    torch.manual_seed(config["seed"])
    model = build_model(model_config).to(setup.device)
    if not isinstance(model, NeuralStatistician):
        raise TypeError(f"the statistician model config built a {type(model).__name__}")
    optimizer = torch.optim.Adam(model.parameters(), lr=config["outer_lr"])
    meta_batch = config["meta_batch"]
    n_way = task["n_way"]
    set_size = task["k_shot"] + task["query"]
    pixels = setup.image_size**2
    generator = torch.Generator(device=setup.device)

    def step_fn(step: int, stop: StopFn) -> StepOutput:
        # The noise of step n depends on (seed, n) only, so a resumed run draws what it would have.
        generator.manual_seed((config["seed"] + step * _SEED_STRIDE) % 2**63)
        tasks = sampler.batch(step * meta_batch, meta_batch, setup.device)
        x = torch.cat([tasks.x_support, tasks.x_query], 1)
        y = torch.cat([tasks.y_support, tasks.y_query], 1)
        terms = model.elbo_terms(_as_sets(x, y, n_way), generator)
        per_set = terms.reconstruction + terms.kl_z + terms.kl_c
        loss = per_set.mean() / (set_size * pixels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            # The sets' own features, first image of each set as the query: a cheap training signal
            # of whether the summaries separate classes (not the evaluation protocol).
            features = terms.features.view(meta_batch, n_way, set_size, -1)
            labels = torch.arange(n_way, device=x.device).repeat_interleave(set_size - 1)
            support = features[:, :, 1:].reshape(meta_batch, -1, features.shape[-1])
            logits = summary_logits(model, support, labels.expand(meta_batch, -1), features[:, :, 0], n_way)
            accuracy = float((logits.argmax(-1) == torch.arange(n_way, device=x.device)).float().mean())
        return StepOutput(
            loss=float(loss.detach()),
            metrics={
                "nats_per_image": float(per_set.detach().mean()) / set_size,
                "kl_c": float(terms.kl_c.detach().mean()),
                "set_accuracy": accuracy,
            },
        )

    return run_training(
        Trainable(
            algorithm="statistician",
            config=config,
            model=model,
            model_config=model_config,
            optimizer=optimizer,
            step_fn=step_fn,
            total_steps=config["steps"],
            examples_per_step=meta_batch * n_way * set_size,
            train_class_names=[data.class_names[c] for c in setup.train_classes],
        ),
        checkpoint_every=config["checkpoint_every"],
        on_progress=on_progress,
        should_stop=should_stop,
        checkpoint=checkpoint,
    )


def classify_statistician(
    model: nn.Module,
    xs: Tensor,
    ys: Tensor,
    xq: Tensor,
    adapt: Mapping[str, Any],
    *,
    should_stop: StopFn | None = None,
) -> Tensor:
    """Scores ``(B, Q, N)``: ``-KL(q(c | query) || q(c | support of class k))`` in nats.

    One forward pass per episode (:func:`embed_episodes`), so ``should_stop`` is not polled.
    """
    if not isinstance(model, NeuralStatistician):
        raise TypeError(f"statistician classification needs a NeuralStatistician, got {type(model).__name__}")
    support, query = embed_episodes(model.embed, xs, xq)
    return summary_logits(model, support, ys, query, int(ys.max()) + 1)


def samples_like(model: nn.Module, support: Tensor, count: int, seed: int = 0) -> Tensor:
    """``count`` new images ``(count, C, H, W)`` (pixel probabilities in [0, 1]) of the class shown by
    ``support`` ``(S, C, H, W)`` in [0, 1], drawn with ``seed``; the support alone sets the encoder's
    normalization statistics."""
    if not isinstance(model, NeuralStatistician):
        raise TypeError(f"sampling needs a NeuralStatistician, got {type(model).__name__}")
    generator = torch.Generator(device=support.device).manual_seed(seed)
    with torch.no_grad():
        return model.sample_like(model.embed(support), count, generator)


register_algorithm(
    "statistician",
    train_statistician,
    config=StatisticianConfig,
    label="Neural Statistician",
    classify=classify_statistician,
    model={"arch": ARCH},
)
