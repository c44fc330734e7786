"""Transferability scores: how well a source model's features or labels suit a target task, without training.

All scores are plain numpy and take seconds on thousands of examples, so the knowledge
base can rank candidate source models for a target before spending any training on them.
Higher is better for every score.

- :func:`logme` (You et al., 2021, "LogME: Practical Assessment of Pre-trained Models
  for Transfer Learning"): the maximum log marginal likelihood (evidence) of a Bayesian
  linear model from the features to the labels, per example. For classification each
  class is a one-vs-rest 0/1 target and the per-class evidences are averaged.
- :func:`leep` (Nguyen et al., 2020, "LEEP: A New Measure to Evaluate Transferability of
  Learned Representations"): the mean log-likelihood of the target labels under the
  "expected empirical predictor" built from the source classifier's probabilities over
  the *source* labels.
- :func:`nce` (Tran et al., 2019, "Transferability and Hardness of Supervised
  Classification Tasks"): the negative conditional entropy ``-H(Y | Z)`` of the target
  labels given the source model's (argmax) labels, from their joint empirical distribution.

:func:`features_of` extracts the features these scores need from any engine model (images, or
sentence embeddings for a text model), :func:`outputs_of` a classifier's logits, and
:func:`prototype_probabilities` turns a source model without a classifier head (e.g. a
ProtoNet) into one over its source classes, for LEEP. :func:`kendall_tau` measures how
well a score ranks sources by their measured transfer accuracy.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from scipy import stats
from torch import Tensor, nn

_LOG_2PI = math.log(2.0 * math.pi)


def model_inputs(examples: np.ndarray | Tensor) -> Tensor:
    """The float32 net inputs of a batch of examples of either kind of domain.

    Images: ``(N, H, W)`` uint8 with ink high (an :class:`ImageArrays`' ``images``) become
    ``(N, 1, H, W)`` in [0, 1]; float ``(N, H, W)`` or ``(N, C, H, W)`` already in [0, 1] are kept
    (a channel added to 3-D ones). Sentence embeddings ``(N, D)`` float (a :class:`TextArrays`'
    ``embeddings``) are kept as they are.
    """
    if isinstance(examples, np.ndarray):
        if examples.dtype == np.uint8:
            x = torch.from_numpy(examples.astype(np.float32) / 255.0)
        else:
            x = torch.from_numpy(np.asarray(examples, dtype=np.float32))
    else:
        x = examples.float()
    return x.unsqueeze(1) if x.dim() == 3 else x


def _in_chunks(
    model: nn.Module, fn: Callable[[Tensor], Tensor], x: Tensor, batch_size: int, device: str | torch.device
) -> np.ndarray:
    """``fn`` of ``x`` in consecutive chunks of ``batch_size`` rows, with ``model`` in eval mode and no
    gradients; the outputs flattened to ``(N, F)`` float64 (``(0, 0)`` for no rows)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    was_training = model.training
    model.eval()
    chunks: list[np.ndarray] = []
    try:
        with torch.no_grad():
            for start in range(0, x.shape[0], batch_size):
                part = fn(x[start : start + batch_size].to(device))
                chunks.append(part.flatten(1).double().cpu().numpy())
    finally:
        model.train(was_training)
    if not chunks:
        return np.zeros((0, 0), dtype=np.float64)
    return np.concatenate(chunks)


def features_of(
    model: nn.Module,
    images: np.ndarray | Tensor,
    *,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Features ``(N, F)`` float64 of examples: ``model.embed(x)`` when the model has it, else ``model(x)``.

    ``images`` are images or, for a text model (a ``text_mlp`` or text transfer net), sentence
    embeddings ``(N, D)`` float32 (:func:`model_inputs` lists the forms). The image nets normalize
    with the statistics of the batch they see, so features are computed in consecutive chunks of
    ``batch_size`` in the given order (the same input always gives the same features).
    """
    encode: Callable[[Tensor], Tensor] = model.embed if hasattr(model, "embed") else model  # type: ignore[assignment]
    return _in_chunks(model, encode, model_inputs(images), batch_size, device)


def outputs_of(
    model: nn.Module,
    images: np.ndarray | Tensor,
    *,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """``model(x)`` ``(N, Z)`` float64 of the examples, as :func:`features_of` takes them: the logits of
    a net with a classifier head (a transfer net, a MAML-family net), for :func:`leep` and :func:`nce`
    (after a softmax); a head-less net gives its features."""
    return _in_chunks(model, model, model_inputs(images), batch_size, device)


def prototype_probabilities(
    features: np.ndarray, labels: np.ndarray, queries: np.ndarray, num_classes: int | None = None
) -> np.ndarray:
    """ProtoNet class probabilities ``(M, Z)``: softmax of minus squared distances to the class means.

    ``features`` ``(N, D)`` with ``labels`` ``(N,)`` in ``0..Z-1`` define the prototypes;
    ``queries`` is ``(M, D)``. A class without examples gets probability 0.
    """
    z = int(num_classes if num_classes is not None else labels.max() + 1)
    counts = np.bincount(labels, minlength=z).astype(np.float64)
    sums = np.zeros((z, features.shape[1]))
    np.add.at(sums, labels, features)
    present = counts > 0
    protos = sums[present] / counts[present, None]
    d2 = ((queries[:, None, :] - protos[None, :, :]) ** 2).sum(-1)
    logits = -d2 - (-d2).max(axis=1, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    out = np.zeros((queries.shape[0], z))
    out[:, present] = p
    return out


def _check_labels(labels: np.ndarray, n: int, name: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {labels.shape}")
    if n and (not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0):
        raise ValueError(f"{name} must be non-negative integers")
    return labels.astype(np.int64)


_PRECISION_MIN, _PRECISION_MAX = 1e-12, 1e12
"""Bounds of LogME's precisions ``alpha`` and ``beta`` (see :func:`logme_evidence`)."""


def logme_evidence(
    features: np.ndarray, y: np.ndarray, *, max_iter: int = 100, tol: float = 1e-10
) -> tuple[float, float, float]:
    """The maximized evidence of Bayesian linear regression ``y ~ N(F w, 1/beta)``, ``w ~ N(0, 1/alpha)``.

    ``features`` ``F`` is ``(N, D)``, ``y`` ``(N,)`` real. Runs LogME's fixed-point updates
    ``gamma = sum(beta s_i^2 / (alpha + beta s_i^2))``, ``alpha = gamma / m'm``,
    ``beta = (N - gamma) / ||y - F m||^2`` (MacKay's evidence approximation) from
    ``alpha = beta = 1`` (each kept within ``[1e-12, 1e12]``) until the relative change of both
    is below ``tol``. Everything is done in the thin SVD ``F = U diag(s) V'``, so one update
    costs ``O(min(N, D))``.
    Returns ``(log evidence / N, alpha, beta)``.
    """
    f = np.asarray(features, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n, d = f.shape
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    s2 = s**2
    z = u.T @ y
    # The part of y outside F's column space is left unexplained whatever m is.
    residual_out = max(float(y @ y - z @ z), 0.0)
    alpha, beta = 1.0, 1.0
    for _ in range(max_iter):
        denom = alpha + beta * s2
        gamma = float((beta * s2 / denom).sum())
        m2 = float(((beta * s * z / denom) ** 2).sum())
        res2 = residual_out + float(((alpha * z / denom) ** 2).sum())
        # Kept inside [1e-12, 1e12]: with fewer examples than features (a text domain's sample),
        # the one-vs-rest target can be fitted exactly and the updates run alpha to 0 otherwise.
        new_alpha = min(max(gamma / max(m2, 1e-300), _PRECISION_MIN), _PRECISION_MAX)
        new_beta = min(max((n - gamma) / max(res2, 1e-300), _PRECISION_MIN), _PRECISION_MAX)
        done = abs(new_alpha - alpha) <= tol * alpha and abs(new_beta - beta) <= tol * beta
        alpha, beta = new_alpha, new_beta
        if done:
            break
    denom = alpha + beta * s2
    m2 = float(((beta * s * z / denom) ** 2).sum())
    res2 = residual_out + float(((alpha * z / denom) ** 2).sum())
    logdet = float(np.log(denom).sum()) + (d - len(s)) * math.log(alpha)
    evidence = (
        0.5 * n * math.log(beta)
        + 0.5 * d * math.log(alpha)
        - 0.5 * n * _LOG_2PI
        - 0.5 * beta * res2
        - 0.5 * alpha * m2
        - 0.5 * logdet
    )
    return evidence / n, alpha, beta


def logme(features: np.ndarray, labels: np.ndarray) -> float:
    """LogME of ``features`` ``(N, D)`` for class ``labels`` ``(N,)``: the mean over classes of the
    per-example maximum log evidence of the one-vs-rest 0/1 target (nats per example; higher is better)."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] == 0:
        raise ValueError(f"features must be a non-empty (N, D) array, got shape {f.shape}")
    y = _check_labels(labels, f.shape[0], "labels")
    classes = np.unique(y)
    return float(np.mean([logme_evidence(f, (y == c).astype(np.float64))[0] for c in classes]))


def leep(source_probs: np.ndarray, target_labels: np.ndarray) -> float:
    """LEEP score: mean log-likelihood of ``target_labels`` ``(N,)`` under the expected empirical predictor.

    ``source_probs`` ``(N, Z)`` are the source classifier's probabilities over its ``Z``
    source labels for each target example. With the empirical joint
    ``P(y, z) = (1/N) sum_i probs[i, z] [y_i = y]`` and ``P(y | z) = P(y, z) / P(z)``, returns
    ``(1/N) sum_i log sum_z P(y_i | z) probs[i, z]`` (<= 0; higher is better).
    """
    p = np.asarray(source_probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] == 0:
        raise ValueError(f"source_probs must be a non-empty (N, Z) array, got shape {p.shape}")
    if (p < 0).any() or not np.allclose(p.sum(1), 1.0, atol=1e-6):
        raise ValueError("each row of source_probs must be a probability distribution")
    y = _check_labels(target_labels, p.shape[0], "target_labels")
    n = p.shape[0]
    onehot = np.zeros((n, int(y.max()) + 1))
    onehot[np.arange(n), y] = 1.0
    joint = onehot.T @ p / n  # (Y, Z)
    marginal = joint.sum(0)  # (Z,)
    # A source label no example ever puts mass on contributes nothing to the sum anyway.
    conditional = np.divide(joint, marginal, out=np.zeros_like(joint), where=marginal > 0)
    eep = (p @ conditional.T)[np.arange(n), y]
    return float(np.mean(np.log(eep)))


def nce(source_labels: np.ndarray, target_labels: np.ndarray) -> float:
    """NCE ``-H(Y | Z)`` (nats, <= 0; higher is better) of target labels ``(N,)`` given source ``(N,)``.

    ``source_labels`` are the source model's hard (argmax) predictions for the target
    examples; the entropy is that of the empirical joint distribution of the two labelings.
    """
    z = np.asarray(source_labels)
    n = z.shape[0] if z.ndim == 1 else -1
    if n <= 0:
        raise ValueError(f"source_labels must be a non-empty (N,) array, got shape {z.shape}")
    z = _check_labels(z, n, "source_labels")
    y = _check_labels(target_labels, n, "target_labels")
    joint = np.zeros((int(y.max()) + 1, int(z.max()) + 1))
    np.add.at(joint, (y, z), 1.0)
    joint /= n
    marginal = joint.sum(0, keepdims=True)
    nz = joint > 0
    return float((joint[nz] * np.log(joint[nz] / np.broadcast_to(marginal, joint.shape)[nz])).sum())


def kendall_tau(predicted: np.ndarray | list[float], measured: np.ndarray | list[float]) -> float:
    """Kendall's tau-b in [-1, 1] between predicted scores and measured results of the same sources.

    1 means the score ranks the sources exactly as their measured transfer results do.
    Raises ``ValueError`` for fewer than two sources or unequal lengths.
    """
    a = np.asarray(predicted, dtype=np.float64)
    b = np.asarray(measured, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or len(a) < 2:
        raise ValueError(f"need two equal-length 1-D sequences of >= 2 values, got {a.shape} and {b.shape}")
    return float(stats.kendalltau(a, b).statistic)


__all__ = [
    "features_of",
    "kendall_tau",
    "leep",
    "logme",
    "logme_evidence",
    "model_inputs",
    "nce",
    "outputs_of",
    "prototype_probabilities",
]
