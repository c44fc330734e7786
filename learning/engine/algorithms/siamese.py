"""Siamese verification networks for one-shot classification (Koch, Zemel and Salakhutdinov, 2015).

Training: batches of ``meta_batch`` image pairs from the meta-training classes, half of
the same class and half of different classes; both images go through one shared Conv4
embedding, and ``sigmoid(w . |e1 - e2| + b)`` (the paper's weighted L1 distance) is
trained with binary cross-entropy. Classification: a query gets the class of the
support example it is most similar to (for K > 1, the best score within each class).

Deviations from the paper, on purpose: the Conv4 embedding on 28x28 images (the
paper used a larger net on 105x105) and Adam instead of per-layer SGD with momentum,
so the comparison with the other algorithms is about the method, not the backbone.
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
from learning.engine.algorithms.settings import META_BATCH, ImageConfig
from learning.engine.checkpoints import CheckpointStore
from learning.engine.config import ConfigError
from learning.engine.data import ImageArrays
from learning.engine.episodes import EpisodeError, PairSampler
from learning.engine.loop import ProgressFn, StepOutput, StopFn, Trainable, TrainResult, run_training
from learning.engine.nets import SiameseNet, build_model, embed_episode


@dataclass(frozen=True)
class SiameseConfig(ImageConfig):
    """Siamese verification networks (Koch et al. 2015); ``meta_batch`` is pairs per step."""

    meta_batch: int = META_BATCH.field(64, help="pairs per step (same and different)")

    def check(self) -> None:
        if self.meta_batch < 2:
            raise ConfigError(
                "meta_batch", f"siamese needs >= 2 pairs per step (same and different), got {self.meta_batch}"
            )


def train_siamese(
    config: dict[str, Any],
    data: ImageArrays,
    *,
    on_progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
    checkpoint: CheckpointStore | None = None,
) -> TrainResult:
    """Siamese verification training on ``data``; ``config`` already validated. Returns the TrainResult."""
    setup = episode_setup(config, data)
    try:
        pairs = PairSampler(
            data,
            setup.train_classes,
            rotations=config["rotations"],
            within_group=config["task"]["within_group"],
            seed=config["seed"],
        )
    except EpisodeError as exc:
        raise ConfigError(f"task.{exc.field}", str(exc).split(": ", 1)[-1]) from exc
    model_config = setup.model_config(config, head="siamese", out_features=0)
    torch.manual_seed(config["seed"])
    model = build_model(model_config).to(setup.device)
    if not isinstance(model, SiameseNet):
        raise TypeError(f"the siamese model config built a {type(model).__name__}")
    optimizer = torch.optim.Adam(model.parameters(), lr=config["outer_lr"])
    n_pairs = config["meta_batch"]

    def step_fn(step: int, stop: StopFn) -> StepOutput:
        a, b, same = pairs.batch(step, n_pairs, setup.device)
        emb = model(torch.cat([a, b]))
        logits = model.pair_logits(emb[:n_pairs], emb[n_pairs:])
        loss = F.binary_cross_entropy_with_logits(logits, same)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        accuracy = float(((logits.detach() > 0).float() == same).float().mean())
        return StepOutput(loss=float(loss.detach()), metrics={"pair_accuracy": accuracy})

    return run_training(
        Trainable(
            algorithm="siamese",
            config=config,
            model=model,
            model_config=model_config,
            optimizer=optimizer,
            step_fn=step_fn,
            total_steps=config["steps"],
            examples_per_step=2 * n_pairs,
            train_class_names=[data.class_names[c] for c in setup.train_classes],
        ),
        checkpoint_every=config["checkpoint_every"],
        on_progress=on_progress,
        should_stop=should_stop,
        checkpoint=checkpoint,
    )


def classify_siamese(
    model: nn.Module,
    xs: Tensor,
    ys: Tensor,
    xq: Tensor,
    adapt: Mapping[str, Any],
    *,
    should_stop: StopFn | None = None,
) -> Tensor:
    """Scores ``(B, Q, N)``: per class, the best same-class logit against its support images.

    One forward pass per episode, so ``should_stop`` is not polled.
    """
    if not isinstance(model, SiameseNet):
        raise TypeError(f"siamese classification needs a SiameseNet, got {type(model).__name__}")
    n_way = int(ys.max()) + 1
    out = []
    for b in range(xs.shape[0]):
        support, query = embed_episode(model, xs[b], xq[b])
        scores = model.pair_logits(query.unsqueeze(1), support.unsqueeze(0))  # (Q, S)
        per_class = torch.full((scores.shape[0], n_way), -torch.inf, dtype=scores.dtype, device=scores.device)
        per_class = per_class.scatter_reduce(1, ys[b].expand_as(scores), scores, reduce="amax")
        out.append(per_class)
    return torch.stack(out)


register_algorithm(
    "siamese",
    train_siamese,
    config=SiameseConfig,
    label="Siamese network",
    classify=classify_siamese,
    model={"arch": "conv4", "head": "siamese"},
)
