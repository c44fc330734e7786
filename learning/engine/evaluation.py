"""The classification evaluation protocol by algorithm name, and paired comparisons.

The protocol (as in the few-shot literature): episodes drawn only from classes never
seen in meta-training, at least :data:`MIN_PROTOCOL_EPISODES` of them, reported as the
mean query accuracy with a 95% confidence interval ``1.96 * sample std / sqrt(n)`` (the
normal approximation; with >= 600 episodes it differs from the t-based interval by
< 0.2%). Episodes come from their own stream (:data:`EVAL_STREAM`) of the given seed,
so the same spec and seed give the very same episodes to every model, which is what
:func:`paired_comparison` needs.

The episode loop and the statistics live in :mod:`learning.engine.episode_eval`; this
module finds the algorithm's classify function in the registry
(:func:`learning.engine.algorithms.get_entry`) and rebuilds saved models.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from learning.engine.algorithms import get_entry
from learning.engine.data import ImageArrays
from learning.engine.episode_eval import (
    EVAL_STREAM,
    MIN_PROTOCOL_EPISODES,
    EvalResult,
    evaluate_episodes,
    mean_ci95,
    paired_comparison,
)
from learning.engine.progress import EvaluationStopped, ProgressFn, StopFn
from learning.engine.weights import load_model

__all__ = [
    "EVAL_STREAM",
    "MIN_PROTOCOL_EPISODES",
    "EvalResult",
    "EvaluationStopped",
    "evaluate_classifier",
    "evaluate_model",
    "mean_ci95",
    "paired_comparison",
]


def evaluate_model(
    algorithm: str,
    model: nn.Module,
    data: ImageArrays,
    *,
    classes: Sequence[int],
    n_way: int,
    k_shot: int,
    query: int = 15,
    episodes: int = MIN_PROTOCOL_EPISODES,
    within_group: bool = False,
    seed: int = 0,
    adapt: Mapping[str, Any] | None = None,
    batch_episodes: int = 16,
    device: str | torch.device | None = None,
    strict: bool = True,
    seen_class_names: Collection[str] | None = None,
    on_progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
    progress_interval_s: float = 0.5,
) -> EvalResult:
    """Query accuracy of ``model`` (trained by ``algorithm``) on N-way K-shot episodes of ``classes``.

    ``adapt`` holds MAML-family settings (``inner_lr``, ``inner_steps``). ``strict``
    enforces the protocol's minimum of 600 episodes; ``seen_class_names`` (the names of
    the meta-training classes) makes any overlap with ``classes`` an error. Episodes are
    never rotated.

    Episodes run ``batch_episodes`` at a time. ``on_progress`` receives
    ``{"done", "total", "eta_seconds", "episodes_per_sec"}`` (episodes, seconds) after the
    first batch, after the last one, and otherwise at most every ``progress_interval_s``
    seconds; see :mod:`learning.engine.progress`. ``should_stop`` is polled before each
    batch. Neither changes the episodes or the numbers.

    Raises ``ValueError`` for a protocol breach, :class:`EpisodeError` for impossible
    episodes, :class:`EvaluationStopped` when ``should_stop()`` returned True. Returns an
    :class:`EvalResult`.
    """
    entry = get_entry(algorithm, "image")
    if entry.classify is None:
        raise ValueError(f"algorithm {algorithm!r} has no classifier")
    return evaluate_episodes(
        entry.classify,
        model,
        data,
        classes=classes,
        n_way=n_way,
        k_shot=k_shot,
        query=query,
        episodes=episodes,
        within_group=within_group,
        seed=seed,
        adapt=adapt,
        batch_episodes=batch_episodes,
        device=device,
        strict=strict,
        seen_class_names=seen_class_names,
        on_progress=on_progress,
        should_stop=should_stop,
        progress_interval_s=progress_interval_s,
    )


def evaluate_classifier(
    algorithm: str,
    weights: Mapping[str, Tensor],
    model_config: Mapping[str, Any],
    data: ImageArrays,
    *,
    classes: Sequence[int],
    n_way: int,
    k_shot: int,
    query: int = 15,
    episodes: int = MIN_PROTOCOL_EPISODES,
    within_group: bool = False,
    seed: int = 0,
    adapt: Mapping[str, Any] | None = None,
    device: str | torch.device | None = None,
    strict: bool = True,
    seen_class_names: Collection[str] | None = None,
    on_progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
    progress_interval_s: float = 0.5,
) -> EvalResult:
    """:func:`evaluate_model` on the net rebuilt from ``weights`` and ``model_config``.

    ``adapt`` defaults to ``model_config["adapt"]`` (the settings saved at training).
    ``on_progress``, ``should_stop`` and ``progress_interval_s`` work as in
    :func:`evaluate_model`. Returns an :class:`EvalResult`; raises
    :class:`EvaluationStopped` when stopped.
    """
    model = load_model(weights, model_config)
    return evaluate_model(
        algorithm,
        model,
        data,
        classes=classes,
        n_way=n_way,
        k_shot=k_shot,
        query=query,
        episodes=episodes,
        within_group=within_group,
        seed=seed,
        adapt=adapt if adapt is not None else model_config.get("adapt", {}),
        device=device,
        strict=strict,
        seen_class_names=seen_class_names,
        on_progress=on_progress,
        should_stop=should_stop,
        progress_interval_s=progress_interval_s,
    )
