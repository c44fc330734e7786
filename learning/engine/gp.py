"""Gaussian processes with an RBF kernel: sampling, and the exact posterior predictive.

The observation model is ``y = f(x) + eps`` with ``f ~ GP(0, k)``,
``k(x, x') = signal_variance * exp(-(x - x')^2 / (2 length_scale^2))`` and
``eps ~ N(0, noise_std^2 + JITTER * signal_variance)``. The tiny ``JITTER`` keeps the
covariance factorizable when ``noise_std`` is zero or inputs repeat; sampling and the
posterior use the same variance, so the posterior stays exact for the data it is given.

For ``gp-1d`` tasks the posterior predictive is the Bayes-optimal predictor: its
log-likelihood on held-out targets is the ceiling a neural process can approach.
All computation is float64 numpy, batched over tasks.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

JITTER = 1e-8
"""Added to the observation variance, in units of ``signal_variance``."""


class RBFParams(NamedTuple):
    """Hyper-parameters of an RBF-kernel GP with Gaussian observation noise."""

    length_scale: float
    signal_variance: float
    noise_std: float

    @property
    def observation_variance(self) -> float:
        """Variance of ``eps`` (units of ``y`` squared), jitter included."""
        return self.noise_std**2 + JITTER * self.signal_variance


def rbf_kernel(x1: np.ndarray, x2: np.ndarray, params: RBFParams) -> np.ndarray:
    """The noise-free kernel matrix between ``x1`` ``(..., N, 1)`` and ``x2`` ``(..., M, 1)``.

    Returns float64 of shape ``(..., N, M)``.
    """
    a = np.asarray(x1, dtype=np.float64)[..., :, 0]
    b = np.asarray(x2, dtype=np.float64)[..., :, 0]
    sq = (a[..., :, None] - b[..., None, :]) ** 2
    return params.signal_variance * np.exp(-0.5 * sq / params.length_scale**2)


def sample_gp(rng: np.random.Generator, x: np.ndarray, params: RBFParams) -> np.ndarray:
    """Noisy observations ``y`` at inputs ``x`` of shape ``(B, N, 1)``, one GP function per task.

    Returns float64 of shape ``(B, N, 1)``; draws ``B * N`` standard normals from ``rng``.
    """
    cov = rbf_kernel(x, x, params)
    n = cov.shape[-1]
    cov = cov + params.observation_variance * np.eye(n)
    chol = np.linalg.cholesky(cov)
    z = rng.standard_normal(size=(*x.shape[:-1], 1))
    return chol @ z


class GPPrediction(NamedTuple):
    """Posterior predictive of noisy targets; per-task float64 arrays."""

    mean: np.ndarray
    """Predictive mean, ``(B, T, 1)``."""
    std: np.ndarray
    """Marginal predictive standard deviation (noise included), ``(B, T, 1)``."""
    cov: np.ndarray
    """Joint predictive covariance (noise included), ``(B, T, T)``."""


def gp_predict(x_ctx: np.ndarray, y_ctx: np.ndarray, x_tgt: np.ndarray, params: RBFParams) -> GPPrediction:
    """Exact posterior predictive of ``y`` at ``x_tgt`` given context ``(x_ctx, y_ctx)``.

    Shapes: ``x_ctx, y_ctx`` ``(B, K, 1)``, ``x_tgt`` ``(B, T, 1)``. Returns
    :class:`GPPrediction` with mean ``k_tc (K_cc + s I)^-1 y_c`` and covariance
    ``K_tt + s I - k_tc (K_cc + s I)^-1 k_ct`` where ``s`` is the observation variance.
    """
    x_ctx = np.asarray(x_ctx, dtype=np.float64)
    y_ctx = np.asarray(y_ctx, dtype=np.float64)
    x_tgt = np.asarray(x_tgt, dtype=np.float64)
    if x_ctx.ndim != 3 or y_ctx.shape != x_ctx.shape or x_tgt.ndim != 3 or x_tgt.shape[0] != x_ctx.shape[0]:
        raise ValueError(
            "expected x_ctx, y_ctx (B, K, 1) and x_tgt (B, T, 1); "
            f"got {x_ctx.shape}, {y_ctx.shape}, {x_tgt.shape}"
        )
    s = params.observation_variance
    n_ctx, n_tgt = x_ctx.shape[1], x_tgt.shape[1]
    k_cc = rbf_kernel(x_ctx, x_ctx, params) + s * np.eye(n_ctx)
    k_ct = rbf_kernel(x_ctx, x_tgt, params)
    k_tt = rbf_kernel(x_tgt, x_tgt, params) + s * np.eye(n_tgt)
    chol = np.linalg.cholesky(k_cc)  # (B, K, K), batched
    # Solves with the triangular factor; the general batched solver is exact enough at these sizes.
    v = np.linalg.solve(chol, k_ct)  # L^-1 k_ct, (B, K, T)
    w = np.linalg.solve(chol, y_ctx)  # L^-1 y_c, (B, K, 1)
    mean = np.swapaxes(v, 1, 2) @ w
    cov = k_tt - np.swapaxes(v, 1, 2) @ v
    # The exact marginal variance is at least s; clipping only removes rounding below it.
    std = np.sqrt(np.maximum(np.diagonal(cov, axis1=1, axis2=2), s))[..., None]
    return GPPrediction(mean, std, cov)


def gaussian_log_density(y: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Element-wise ``log N(y; mean, std^2)`` in nats; shapes broadcast."""
    return -0.5 * math.log(2 * math.pi) - np.log(std) - 0.5 * ((y - mean) / std) ** 2


def gp_log_likelihood(
    x_ctx: np.ndarray,
    y_ctx: np.ndarray,
    x_tgt: np.ndarray,
    y_tgt: np.ndarray,
    params: RBFParams,
    *,
    joint: bool = False,
) -> np.ndarray:
    """Predictive log-likelihood of ``y_tgt`` ``(B, T, 1)`` under the exact posterior, per target point.

    With ``joint=False`` (default) the mean over targets of the marginal
    ``log p(y_t | x_t, context)``, the quantity a neural process with a factorized
    decoder estimates. With ``joint=True``, ``log p(y_1..y_T | x, context) / T``.
    Returns float64 of shape ``(B,)``, nats per target point.
    """
    return predictive_log_likelihood(gp_predict(x_ctx, y_ctx, x_tgt, params), y_tgt, joint=joint)


def predictive_log_likelihood(pred: GPPrediction, y_tgt: np.ndarray, *, joint: bool = False) -> np.ndarray:
    """:func:`gp_log_likelihood` from an existing prediction; returns ``(B,)`` nats per target point."""
    y_tgt = np.asarray(y_tgt, dtype=np.float64)
    if y_tgt.shape != pred.mean.shape:
        raise ValueError(f"y_tgt has shape {y_tgt.shape}, expected {pred.mean.shape}")
    if not joint:
        return gaussian_log_density(y_tgt, pred.mean, pred.std)[..., 0].mean(axis=1)
    n_tgt = y_tgt.shape[1]
    chol = np.linalg.cholesky(pred.cov)
    resid = np.linalg.solve(chol, y_tgt - pred.mean)[..., 0]  # (B, T)
    log_det = 2.0 * np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(axis=1)
    return -0.5 * (n_tgt * math.log(2 * math.pi) + log_det + (resid**2).sum(axis=1)) / n_tgt
