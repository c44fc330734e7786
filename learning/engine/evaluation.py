"""The classification evaluation protocol and paired comparisons.

The protocol (as in the few-shot literature): episodes drawn only from classes never
seen in meta-training, at least :data:`MIN_PROTOCOL_EPISODES` of them, reported as the
mean query accuracy with a 95% confidence interval ``1.96 * sample std / sqrt(n)`` (the
normal approximation; with >= 600 episodes it differs from the t-based interval by
< 0.2%). Episodes come from their own stream (:data:`EVAL_STREAM`) of the given seed,
so the same spec and seed give the very same episodes to every model, which is what
:func:`paired_comparison` needs. An algorithm's classify function comes from the
registry (:func:`learning.engine.algorithms.get_entry`).

Each query is scored from the support set and itself only: batch normalization takes the
support's statistics (:func:`learning.engine.nets.embed_episode`), so the score does not
depend on the other queries of the episode, as a user's prediction must not. The papers'
transductive variant (statistics of support and queries together, or of the queries) is
``transductive=True``; a number measured that way must say so.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy import stats
from torch import Tensor, nn

from learning.engine.algorithms import get_entry
from learning.engine.data import EpisodeData, TextArrays
from learning.engine.device import resolve_device
from learning.engine.episodes import EpisodeSampler, EpisodeSpec
from learning.engine.nets import channels_last, transductive_statistics
from learning.engine.progress import EvaluationStopped, ProgressFn, ProgressMeter, StopFn, check_stop
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

MIN_PROTOCOL_EPISODES = 600
EVAL_STREAM = 7
"""Episode stream of evaluations; training samplers use stream 0, so a shared seed draws other episodes."""
Z95 = 1.959963984540054


@dataclass(frozen=True)
class EvalResult:
    """Accuracy over ``episodes`` episodes: ``mean`` and ``ci95`` as fractions in [0, 1].

    ``per_episode`` is ``(episodes,)`` float64, the query accuracy of each episode;
    ``episode_key`` identifies the episodes (classes, spec, seed, count).
    """

    mean: float
    ci95: float
    episodes: int
    per_episode: np.ndarray
    episode_key: str

    def as_dict(self) -> dict[str, Any]:
        """JSON-able summary (no per-episode array)."""
        return {
            "mean": self.mean,
            "ci95": self.ci95,
            "episodes": self.episodes,
            "episode_key": self.episode_key,
        }


def mean_ci95(values: np.ndarray) -> tuple[float, float]:
    """``(mean, 1.96 * std(ddof=1) / sqrt(n))`` of a 1-D array; the half-width is 0 for one value."""
    n = len(values)
    if n == 0:
        raise ValueError("no values")
    mean = float(np.mean(values))
    if n == 1:
        return mean, 0.0
    return mean, float(Z95 * np.std(values, ddof=1) / math.sqrt(n))


def _episode_key(
    data: EpisodeData, classes: Sequence[int], spec: EpisodeSpec, seed: int, episodes: int
) -> str:
    payload = {
        "classes": [data.class_names[c] for c in classes],
        "spec": [spec.n_way, spec.k_shot, spec.query, spec.within_group],
        "seed": seed,
        "episodes": episodes,
        "stream": EVAL_STREAM,
    }
    return hashlib.sha256(json.dumps(payload).encode()).hexdigest()[:32]


def evaluate_model(
    algorithm: str,
    model: nn.Module,
    data: EpisodeData,
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
    transductive: bool = False,
) -> EvalResult:
    """Query accuracy of ``model`` (trained by ``algorithm``) on N-way K-shot episodes of ``classes``
    of an image domain or an embedded text domain (the algorithm's ``text`` variant classifies).

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
    entry = get_entry(algorithm, "text" if isinstance(data, TextArrays) else "image")
    if entry.classify is None:
        raise ValueError(f"algorithm {algorithm!r} has no classifier")
    if strict and episodes < MIN_PROTOCOL_EPISODES:
        raise ValueError(f"the protocol needs >= {MIN_PROTOCOL_EPISODES} episodes, got {episodes}")
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    if seen_class_names is not None:
        seen = set(seen_class_names)
        overlap = sorted(data.class_names[c] for c in classes if data.class_names[c] in seen)
        if overlap:
            raise ValueError(
                f"{len(overlap)} evaluation classes were seen in meta-training, e.g. {overlap[:5]}"
            )
    head = getattr(model, "head", None)
    if isinstance(head, nn.Linear) and head.out_features != n_way:
        raise ValueError(f"the model's head has {head.out_features} outputs but the episodes are {n_way}-way")
    spec = EpisodeSpec(n_way=n_way, k_shot=k_shot, query=query, within_group=within_group, rotations=False)
    sampler = EpisodeSampler(data, classes, spec, seed, stream=EVAL_STREAM)
    dev = torch.device(device) if isinstance(device, torch.device) else resolve_device(device or "auto")
    model = model.to(dev)
    was_training = model.training
    model.eval()
    accuracies = np.empty(episodes, dtype=np.float64)
    meter = ProgressMeter(episodes, on_progress, interval_s=progress_interval_s)
    layout = contextlib.nullcontext() if entry.adapts else channels_last(model)
    normalization = transductive_statistics() if transductive else contextlib.nullcontext()
    try:
        with layout, normalization, torch.no_grad():
            for start in range(0, episodes, batch_episodes):
                check_stop(should_stop, start, episodes)
                count = min(batch_episodes, episodes - start)
                tasks = sampler.batch(start, count, dev)
                scores: Tensor = entry.classify(
                    model, tasks.x_support, tasks.y_support, tasks.x_query, adapt or {}
                )
                correct = (scores.argmax(-1) == tasks.y_query).double().mean(-1)
                accuracies[start : start + count] = correct.cpu().numpy()
                meter.advance(count)
    finally:
        model.train(was_training)
    mean, ci = mean_ci95(accuracies)
    return EvalResult(mean, ci, episodes, accuracies, _episode_key(data, classes, spec, seed, episodes))


def evaluate_classifier(
    algorithm: str,
    weights: Mapping[str, Tensor],
    model_config: Mapping[str, Any],
    data: EpisodeData,
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
    transductive: bool = False,
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
        transductive=transductive,
        progress_interval_s=progress_interval_s,
    )


def paired_comparison(a: EvalResult, b: EvalResult) -> dict[str, float]:
    """Compare two evaluations on identical episodes: ``a`` minus ``b``.

    Returns ``{"mean_diff", "ci95", "p_value", "episodes"}``: the mean per-episode
    accuracy difference, its 95% half-width (``1.96 * std / sqrt(n)`` of the differences)
    and the two-sided paired t-test p-value (1.0 when all differences are zero). Raises
    ``ValueError`` unless both results come from the same episodes.
    """
    if a.episode_key != b.episode_key or a.episodes != b.episodes:
        raise ValueError("paired comparison needs identical episodes (same classes, spec, seed and count)")
    diff = a.per_episode - b.per_episode
    mean, ci = mean_ci95(diff)
    if a.episodes < 2 or float(np.std(diff)) == 0.0:
        p_value = 1.0 if mean == 0.0 else 0.0
    else:
        p_value = float(stats.ttest_rel(a.per_episode, b.per_episode).pvalue)
    return {"mean_diff": mean, "ci95": ci, "p_value": p_value, "episodes": float(a.episodes)}
