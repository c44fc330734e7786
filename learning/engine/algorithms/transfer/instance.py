"""Instance transfer (``instance``): target examples plus importance-weighted source examples.

The weights estimate how target-like each source example is, on the source model's
features: a target-vs-source logistic regression (:func:`domain_classifier_weights`) or
kernel mean matching (:func:`kmm_weights`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from scipy import optimize
from torch import nn
from torch.nn import functional as F

from learning.engine.algorithms._common import resolve_classes
from learning.engine.algorithms.transfer.common import (
    TARGET_STREAM,
    batch_indices,
    examples,
    inputs,
    run_transfer,
    target_setup,
)
from learning.engine.algorithms.transfer.data import TransferData, source_backbone
from learning.engine.checkpoints import CheckpointStore
from learning.engine.config import ConfigError
from learning.engine.data import EpisodeData, ImageArrays, TextArrays
from learning.engine.episodes import episode_rng
from learning.engine.loop import ProgressFn, StepOutput, StopFn, TrainResult
from learning.engine.transferability import features_of

__all__ = ["domain_classifier_weights", "joint_features", "kmm_weights", "train_instance"]

SOURCE_STREAM = 22
"""Stream of the source minibatches of ``instance``."""
WEIGHT_STREAM = 23
"""Stream of the permutation that mixes target and source examples for the instance weights' features."""


def domain_classifier_weights(
    source_features: np.ndarray, target_features: np.ndarray, *, l2: float = 1.0, max_weight: float = 10.0
) -> np.ndarray:
    """Importance weights ``(Ns,)`` of source examples from a target-vs-source logistic regression.

    Fits ``p(target | x) = sigmoid(w . x + b)`` on standardized features (source ``(Ns, D)``
    labelled 0, target ``(Nt, D)`` labelled 1; L2 penalty ``l2/2 ||w||^2``; L-BFGS from zero,
    so deterministic), then returns the density ratio
    ``p_target(x) / p_source(x) = p(t|x) / p(s|x) * Ns / Nt`` clipped to ``[0, max_weight]``.
    """
    xs = np.asarray(source_features, dtype=np.float64)
    xt = np.asarray(target_features, dtype=np.float64)
    x = np.concatenate([xs, xt])
    mu = x.mean(0)
    sd = x.std(0)
    sd[sd == 0] = 1.0
    x = (x - mu) / sd
    y = np.r_[np.zeros(len(xs)), np.ones(len(xt))]
    d = x.shape[1]

    def loss_grad(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = theta[:d], theta[d]
        z = x @ w + b
        # log(1 + e^z) - y z, written stably.
        loss = float((np.logaddexp(0.0, z) - y * z).sum() + 0.5 * l2 * w @ w)
        r = 1.0 / (1.0 + np.exp(-z)) - y
        return loss, np.r_[x.T @ r + l2 * w, r.sum()]

    fit = optimize.minimize(loss_grad, np.zeros(d + 1), jac=True, method="L-BFGS-B")
    logit = x[: len(xs)] @ fit.x[:d] + fit.x[d]
    ratio = np.exp(np.clip(logit, -50.0, 50.0)) * len(xs) / len(xt)
    return np.clip(ratio, 0.0, max_weight)


def _project_box_sum(v: np.ndarray, upper: float, low_sum: float, high_sum: float) -> np.ndarray:
    """Euclidean projection of ``v`` onto ``{0 <= b <= upper, low_sum <= sum(b) <= high_sum}``."""
    b = np.clip(v, 0.0, upper)
    total = b.sum()
    if low_sum <= total <= high_sum:
        return b
    goal = high_sum if total > high_sum else low_sum
    # The projection is clip(v - lam) for the shift lam that meets the violated bound; the
    # clipped sum falls monotonically in lam, so bisection finds it.
    lo, hi = float(v.min() - upper), float(v.max())
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if np.clip(v - mid, 0.0, upper).sum() > goal:
            lo = mid
        else:
            hi = mid
    return np.clip(v - 0.5 * (lo + hi), 0.0, upper)


def kmm_weights(
    source_features: np.ndarray,
    target_features: np.ndarray,
    *,
    max_weight: float = 10.0,
    eps: float | None = None,
    sigma: float | None = None,
    iterations: int = 300,
    tol: float = 1e-6,
) -> np.ndarray:
    """Kernel mean matching weights ``(Ns,)`` (Huang et al., 2007): source ``(Ns, D)``, target ``(Nt, D)``.

    Solves ``min_b 1/2 b'Kb - kappa'b`` s.t. ``0 <= b_i <= max_weight``,
    ``|sum(b) - Ns| <= Ns eps`` with the Gaussian kernel ``k(x, x') = exp(-||x - x'||^2 / (2 sigma^2))``,
    ``K`` over source pairs and ``kappa_i = Ns/Nt sum_j k(x_i, t_j)``: the weights that make the
    weighted source mean in the kernel's feature space match the target mean. ``eps`` defaults
    to ``(sqrt(Ns) - 1) / sqrt(Ns)`` (the paper's choice), ``sigma`` to the median distance
    between all points. Solved by accelerated projected gradient (FISTA) from ``b = 1`` for at most
    ``iterations`` steps, stopping once no weight moves by more than ``tol * max_weight``.
    """
    xs = np.asarray(source_features, dtype=np.float64)
    xt = np.asarray(target_features, dtype=np.float64)
    ns, nt = len(xs), len(xt)

    def sqdist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T, 0.0)

    d_ss = sqdist(xs, xs)
    d_st = sqdist(xs, xt)
    if sigma is None:
        both = np.concatenate([d_ss.ravel(), d_st.ravel()])
        # The median of a fixed, evenly strided subset: the same heuristic at a bounded cost.
        both = both[:: max(1, len(both) // 200_000)]
        sigma = float(np.median(np.sqrt(both[both > 0]))) if (both > 0).any() else 1.0
    # float32 halves the cost of the matrix-vector products that dominate the solve; the weights
    # need nowhere near float64 precision.
    k = np.exp(-d_ss / (2.0 * sigma**2)).astype(np.float32)
    kappa = (ns / nt) * np.exp(-d_st / (2.0 * sigma**2)).sum(1)
    if eps is None:
        eps = (np.sqrt(ns) - 1.0) / np.sqrt(ns)
    low, high = ns * (1.0 - eps), ns * (1.0 + eps)
    # The gradient's Lipschitz constant is K's largest eigenvalue; power iteration finds it in
    # O(Ns^2) per round where a full eigendecomposition would cost O(Ns^3). K is non-negative,
    # so starting from the all-ones vector converges to the top eigenvector (Perron-Frobenius);
    # the 1% margin covers the estimate's shortfall.
    v = np.ones(ns) / np.sqrt(ns)
    lipschitz = 1.0
    for _ in range(100):
        kv = (k @ v.astype(np.float32)).astype(np.float64)
        estimate = float(np.linalg.norm(kv))
        v = kv / max(estimate, 1e-300)
        if abs(estimate - lipschitz) <= 1e-6 * estimate:
            break
        lipschitz = estimate
    lipschitz = 1.01 * max(estimate, lipschitz)
    step = 1.0 / max(lipschitz, 1e-12)
    b = _project_box_sum(np.ones(ns), max_weight, low, high)
    z = b.copy()
    t = 1.0
    for _ in range(iterations):
        kz = (k @ z.astype(np.float32)).astype(np.float64)
        b_next = _project_box_sum(z - step * (kz - kappa), max_weight, low, high)
        t_next = 0.5 * (1.0 + np.sqrt(1.0 + 4.0 * t * t))
        z = b_next + ((t - 1.0) / t_next) * (b_next - b)
        moved = float(np.abs(b_next - b).max())
        b, t = b_next, t_next
        if moved <= tol * max_weight:
            break
    return b


def train_instance(
    config: dict[str, Any],
    data: TransferData,
    *,
    on_progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
    checkpoint: CheckpointStore | None = None,
) -> TrainResult:
    """Instance transfer: a fresh model on target plus importance-weighted source examples (extra classes)."""
    setup = target_setup(config, data)
    if data.source_data is None:
        # Not a config setting, but the Django side must supply it: name it as the missing input.
        raise ConfigError(
            "source_data", "instance transfer needs the source examples (TransferData.source_data)"
        )
    source = data.source_data
    _check_source_data(source, data.target)
    src_classes = resolve_classes(source, config["source_classes"], config["source_groups"], "source")
    if not src_classes:
        raise ConfigError("source_classes", "the source split is empty")
    by_class = source.indices_by_class()
    src_idx = np.concatenate([by_class[c] for c in src_classes])
    src_label = {c: i for i, c in enumerate(src_classes)}
    n_t = len(setup.train_classes)
    src_y = np.array([n_t + src_label[int(c)] for c in source.labels[src_idx]], dtype=np.int64)

    backbone, shape = source_backbone(data)
    batch = config["batch_size"]
    tgt_feats, src_feats = joint_features(
        backbone, examples(data.target, setup.train_idx), examples(source, src_idx), batch, config["seed"]
    )
    if config["weighting"] == "kmm":
        weights = kmm_weights(src_feats, tgt_feats, max_weight=config["max_weight"])
    else:
        weights = domain_classifier_weights(src_feats, tgt_feats, max_weight=config["max_weight"])

    model_config = shape.model_config(n_t + len(src_classes))
    torch.manual_seed(config["seed"])
    model = shape.build(n_t + len(src_classes)).to(setup.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config["lr"])
    xt_all = inputs(data.target, setup.train_idx, setup.device)
    yt_all = torch.from_numpy(setup.train_y).to(setup.device)
    xs_all = inputs(source, src_idx, setup.device)
    ys_all = torch.from_numpy(src_y).to(setup.device)
    ws_all = torch.from_numpy(weights.astype(np.float32)).to(setup.device)
    sbatch = config["source_batch"]

    def step_fn(step: int, stop: StopFn) -> StepOutput:
        it = torch.from_numpy(batch_indices(config["seed"], TARGET_STREAM, step, len(yt_all), batch))
        js = torch.from_numpy(batch_indices(config["seed"], SOURCE_STREAM, step, len(ys_all), sbatch))
        it, js = it.to(setup.device), js.to(setup.device)
        # One joint batch: the batch-statistics norm sees source and target together, as the
        # importance-weighted risk mixes them.
        logits = model(torch.cat([xt_all[it], xs_all[js]]))
        ce = F.cross_entropy(logits, torch.cat([yt_all[it], ys_all[js]]), reduction="none")
        w = torch.cat([torch.ones(len(it), device=setup.device), ws_all[js]])
        loss = (w * ce).sum() / w.sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        target_acc = float((logits[: len(it), :n_t].argmax(-1) == yt_all[it]).float().mean())
        return StepOutput(
            loss=float(loss.detach()),
            metrics={"train_accuracy": target_acc, "source_weight": float(ws_all[js].mean())},
        )

    result = run_transfer(
        "instance",
        config,
        data,
        setup,
        model,
        model_config,
        optimizer,
        step_fn,
        config["steps"],
        min(batch, len(yt_all)) + min(sbatch, len(ys_all)),
        (on_progress, should_stop, checkpoint),
        extra_seen=[source.class_names[c] for c in src_classes],
    )
    result.metrics["source_weight_mean"] = float(weights.mean())
    result.metrics["source_effective_fraction"] = float(
        weights.sum() ** 2 / max((weights**2).sum(), 1e-300) / len(weights)
    )
    return result


def _check_source_data(source: EpisodeData, target: EpisodeData) -> None:
    """Raise :class:`ConfigError` unless the source examples are the target's kind and size of input."""
    if isinstance(source, TextArrays) and isinstance(target, TextArrays):
        if source.dim != target.dim:
            raise ConfigError(
                "source_data", f"source embeddings are {source.dim}-d, target embeddings {target.dim}-d"
            )
    elif isinstance(source, ImageArrays) and isinstance(target, ImageArrays):
        if source.images.shape[1:] != target.images.shape[1:]:
            raise ConfigError(
                "source_classes",
                f"source images are {source.images.shape[1:]}, target images {target.images.shape[1:]}",
            )
    else:
        raise ConfigError(
            "source_data",
            f"the source examples are {type(source).__name__}, the target's {type(target).__name__}",
        )


def joint_features(
    backbone: nn.Module, target: np.ndarray, source: np.ndarray, batch: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Features ``((Nt, F), (Ns, F))`` float64 of target and source examples (uint8 images ``(N, H, W)``
    or float32 embeddings ``(N, D)``, as :func:`.common.examples` gives them), computed in mixed batches.

    The Conv4 nets normalize with the statistics of each batch; batches of one domain only would
    each be normalized to the same statistics, erasing the very shift the instance weights must
    measure (it is what AdaBN exploits to *remove* a shift). So both sets are shuffled together
    (a fixed permutation from ``seed``) and embedded in chunks of ``batch``, like the joint
    training batches. (A text MLP has no such norm; the mixing leaves its features unchanged.)
    """
    images = np.concatenate([target, source])
    order = episode_rng(seed, WEIGHT_STREAM, 0).permutation(len(images))
    shuffled = features_of(backbone, images[order], batch_size=batch)
    feats = np.empty_like(shuffled)
    feats[order] = shuffled
    return feats[: len(target)], feats[len(target) :]
