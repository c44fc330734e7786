"""What every transfer method shares: the target split, minibatches, the run loop, the closing scores.

A method builds its net (a :class:`BackboneClassifier`) and optimizer and a step function, then hands them to
:func:`run_transfer`, which runs :func:`learning.engine.loop.run_training` with the source
weights' digest in the resume fingerprint and, at the end, scores the model's classifier
on the unused target examples (``target_accuracy``). Few-shot scores on new target classes
are the experiment protocol's (:mod:`learning.engine.experiments`), by :func:`classify_transfer`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from learning.engine.algorithms._common import resolve_classes
from learning.engine.algorithms.protonet import prototype_logits
from learning.engine.algorithms.transfer.data import TransferData, weights_digest
from learning.engine.checkpoints import CheckpointStore
from learning.engine.config import ConfigError
from learning.engine.data import EpisodeData, TextArrays
from learning.engine.device import resolve_device
from learning.engine.episodes import episode_rng
from learning.engine.loop import ProgressFn, StepOutput, StopFn, Trainable, TrainResult, run_training
from learning.engine.nets import BackboneClassifier, embed_episodes

TARGET_STREAM = 21
"""Episode-RNG stream of target minibatches (training samplers use 0, evaluation 7)."""
TARGET_EVAL_LIMIT = 2000
"""At most this many unused target examples are classified for ``target_accuracy``."""

Hooks = tuple[ProgressFn | None, StopFn | None, CheckpointStore | None]
"""``(on_progress, should_stop, checkpoint)`` of a train function, handed to :func:`run_transfer`."""


def to_tensor(images: np.ndarray, device: torch.device) -> Tensor:
    """Float32 ``(N, 1, H, W)`` in [0, 1] from uint8 ``(N, H, W)`` with ink high."""
    return torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1).to(device)


def examples(arrays: EpisodeData, idx: np.ndarray) -> np.ndarray:
    """The raw examples ``idx`` ``(M,)`` of a domain: uint8 images ``(M, H, W)``, or float32
    embeddings ``(M, D)``."""
    return arrays.embeddings[idx] if isinstance(arrays, TextArrays) else arrays.images[idx]


def inputs(arrays: EpisodeData, idx: np.ndarray, device: torch.device) -> Tensor:
    """The net inputs of examples ``idx`` ``(M,)`` of a domain: images ``(M, 1, H, W)`` float32 in
    [0, 1] (:func:`to_tensor`), or embeddings ``(M, D)`` float32 as they are."""
    if isinstance(arrays, TextArrays):
        return torch.from_numpy(examples(arrays, idx)).to(device)
    return to_tensor(examples(arrays, idx), device)


@dataclass
class TargetSetup:
    """The target split of a validated config.

    ``train_idx`` ``(M,)`` example indices used for training with labels ``train_y`` ``(M,)``
    in ``0..len(train_classes)-1``; ``heldout_idx`` / ``heldout_y`` the unused examples of the
    same classes (for ``target_accuracy``).
    """

    device: torch.device
    train_classes: list[int]
    train_idx: np.ndarray
    train_y: np.ndarray
    heldout_idx: np.ndarray
    heldout_y: np.ndarray


def target_setup(config: Mapping[str, Any], data: TransferData) -> TargetSetup:
    """The target split of ``config`` on ``data``, after checking that the data fit the config.

    Raises :class:`ConfigError` naming the field: ``domain`` (a target of another kind),
    ``source_model.*`` (a source other than the recorded one), ``target.*`` (the split).
    """
    if not isinstance(data, TransferData):
        raise ConfigError("domain", f"transfer methods need TransferData, got {type(data).__name__}")
    if data.domain != config["domain"]:
        raise ConfigError("domain", f"is {config['domain']!r} but the target is a {data.domain!r} domain")
    source = config["source_model"]
    if source is not None:
        if source["algorithm"] != data.source_algorithm:
            raise ConfigError(
                "source_model.algorithm",
                f"is {source['algorithm']!r} but the source weights come from {data.source_algorithm!r}",
            )
        if dict(source["model_config"]) != dict(data.source_model_config):
            raise ConfigError(
                "source_model.model_config",
                f"{source['model_config']} differs from the source weights' {dict(data.source_model_config)}",
            )
    target = data.target
    tcfg = config["target"]
    classes = resolve_classes(target, tcfg["train_classes"], tcfg["train_groups"], "target.train")
    if len(classes) < 2:
        raise ConfigError("target.train_classes", f"needs at least 2 target classes, got {len(classes)}")
    by_class = target.indices_by_class()
    k = tcfg["examples_per_class"]
    train_idx: list[np.ndarray] = []
    held_idx: list[np.ndarray] = []
    for c in classes:
        examples = by_class[c]
        if k and len(examples) < k:
            raise ConfigError(
                "target.examples_per_class",
                f"is {k} but class {target.class_names[c]!r} has {len(examples)} examples",
            )
        cut = k or len(examples)
        train_idx.append(examples[:cut])
        held_idx.append(examples[cut:])
    label_of = {c: i for i, c in enumerate(classes)}
    train = np.concatenate(train_idx)
    held = np.concatenate(held_idx)
    if len(held) > TARGET_EVAL_LIMIT:
        # An even spread over the classes, the same for every method and seed.
        held = held[np.linspace(0, len(held) - 1, TARGET_EVAL_LIMIT).round().astype(np.int64)]
    try:
        device = resolve_device(config["device"])
    except ValueError as exc:
        raise ConfigError("device", str(exc)) from exc
    return TargetSetup(
        device=device,
        train_classes=classes,
        train_idx=train,
        train_y=np.array([label_of[int(c)] for c in target.labels[train]], dtype=np.int64),
        heldout_idx=held,
        heldout_y=np.array([label_of[int(c)] for c in target.labels[held]], dtype=np.int64),
    )


def batch_indices(seed: int, stream: int, step: int, pool: int, size: int) -> np.ndarray:
    """``min(size, pool)`` distinct positions in ``0..pool-1``; a pure function of seed, stream and step."""
    return episode_rng(seed, stream, step).choice(pool, size=min(size, pool), replace=False)


def set_prototype_head(head: nn.Linear, feats: Tensor, labels: Tensor, n_classes: int) -> None:
    """Set ``head`` to the nearest-class-mean classifier of features ``(M, D)`` with labels ``(M,)``.

    ``-||f - p||^2 = 2 p.f - ||p||^2 - ||f||^2`` and the last term is the same for every class,
    so weights ``2 p`` and biases ``-||p||^2`` give exactly the prototype classifier's softmax.
    """
    onehot = F.one_hot(labels, n_classes).to(feats.dtype)
    protos = onehot.T @ feats / onehot.sum(0).clamp(min=1.0).unsqueeze(1)
    head.weight.copy_(2.0 * protos)
    head.bias.copy_(-(protos**2).sum(1))


def _classify_batches(model: BackboneClassifier, images: Tensor, batch: int, columns: int) -> np.ndarray:
    """Predicted labels ``(N,)`` (argmax over the first ``columns`` logits), in chunks of ``batch``."""
    out = []
    with torch.no_grad():
        for start in range(0, images.shape[0], batch):
            out.append(model(images[start : start + batch])[:, :columns].argmax(-1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def _finalize(
    config: Mapping[str, Any], setup: TargetSetup, data: TransferData, model: BackboneClassifier
) -> Callable[[], dict[str, float]]:
    """The run's closing measurement: ``target_accuracy`` on the unused examples of the training classes."""

    def finalize() -> dict[str, float]:
        out: dict[str, float] = {}
        n_classes = len(setup.train_classes)
        was_training = model.training
        model.eval()
        try:
            if len(setup.heldout_idx):
                x = inputs(data.target, setup.heldout_idx, setup.device)
                pred = _classify_batches(model, x, config["batch_size"], n_classes)
                out["target_accuracy"] = float((pred == setup.heldout_y).mean())
                out["target_examples"] = float(len(pred))
        finally:
            model.train(was_training)
        return out

    return finalize


def _seen_names(data: TransferData, setup: TargetSetup, extra: Sequence[str] = ()) -> list[str]:
    names = [data.target.class_names[c] for c in setup.train_classes]
    return list(dict.fromkeys([*names, *data.source_class_names, *extra]))


def run_transfer(
    algorithm: str,
    config: Mapping[str, Any],
    data: TransferData,
    setup: TargetSetup,
    model: BackboneClassifier,
    model_config: Mapping[str, Any],
    optimizer: torch.optim.Optimizer | None,
    step_fn: Callable[[int, StopFn], StepOutput],
    total_steps: int,
    examples_per_step: int,
    hooks: Hooks,
    extra_seen: Sequence[str] = (),
) -> TrainResult:
    on_progress, should_stop, checkpoint = hooks
    # The source weights are data, not config: their digest joins the resume fingerprint so a
    # checkpoint of a run from another source is never resumed onto this one.
    fingerprinted = {**config, "source_weights_sha256": weights_digest(data.source_weights)}
    return run_training(
        Trainable(
            algorithm=algorithm,
            config=fingerprinted,
            model=model,
            model_config=model_config,
            optimizer=optimizer,
            step_fn=step_fn,
            total_steps=total_steps,
            examples_per_step=examples_per_step,
            finalize=_finalize(config, setup, data, model),
            train_class_names=_seen_names(data, setup, extra_seen),
        ),
        checkpoint_every=config["checkpoint_every"],
        on_progress=on_progress,
        should_stop=should_stop,
        checkpoint=checkpoint,
    )


def classify_transfer(
    model: nn.Module,
    xs: Tensor,
    ys: Tensor,
    xq: Tensor,
    adapt: Mapping[str, Any],
    *,
    should_stop: StopFn | None = None,
) -> Tensor:
    """Scores ``(B, Q, N)``: minus squared distances from query features to the support class means.

    ``xs`` ``(B, S, C, H, W)`` (or embeddings ``(B, S, D)``), ``ys`` ``(B, S)`` in ``0..N-1``,
    ``xq`` ``(B, Q, C, H, W)`` (or ``(B, Q, D)``). Support
    and query of an episode are embedded as in ProtoNet (:func:`embed_episode`); the classifier
    head is not used, since the episode's classes are new.
    One forward pass per episode (:func:`embed_episodes`), so ``should_stop`` is not polled.
    """
    encode: Callable[[Tensor], Tensor] = model.embed if hasattr(model, "embed") else model  # type: ignore[assignment]
    support, query = embed_episodes(encode, xs, xq)
    return prototype_logits(support, ys, query, int(ys.max()) + 1)
