"""Conv4, the backbone of every image model, and its batch-statistics normalization.

Why a hand-written BatchNorm: ``torch.func.vmap`` over ``nn.BatchNorm2d`` in training mode
gives silently wrong second-order gradients (pytorch/functorch#534), and its running
statistics are in-place buffer updates that cannot be batched over tasks. Few-shot
methods use batch statistics anyway (never running averages), so :class:`BatchStatNorm`
computes them from plain ``mean``/``var`` ops, which vmap and double backward handle
correctly. Every net uses it, so a model behaves the same in ``train()`` and ``eval()`` mode.
Whose statistics a batch is normalized by is set with :func:`statistics_from`
(:mod:`learning.engine.nets` explains why a query is normalized by its support set's).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch
from torch import Tensor, nn

_STATISTICS_ROWS: ContextVar[int | None] = ContextVar("statistics_rows", default=None)
"""How many leading rows of a batch its normalization statistics come from (None: all)."""


@contextmanager
def statistics_from(rows: int | None) -> Iterator[None]:
    """Every :func:`batch_stat_norm` inside normalizes by the statistics of the first ``rows``
    rows of its batch (the support set), applied to all rows; None: of the whole batch."""
    token = _STATISTICS_ROWS.set(rows)
    try:
        yield
    finally:
        _STATISTICS_ROWS.reset(token)


def batch_stat_norm(x: Tensor, weight: Tensor, bias: Tensor, eps: float = 1e-5) -> Tensor:
    """Normalize ``x`` ``(B, C, *spatial)`` per channel with batch statistics, then scale and shift.

    Uses the biased variance over the batch and spatial dimensions (as ``nn.BatchNorm`` in
    training mode), of the whole batch or, inside :func:`statistics_from`, of its first rows.
    Returns a tensor of the shape of ``x``.
    """
    dims = [0, *range(2, x.dim())]
    rows = _STATISTICS_ROWS.get()
    reference = x if rows is None else x[:rows]
    var, mean = torch.var_mean(reference, dim=dims, correction=0, keepdim=True)
    shape = [1, -1] + [1] * (x.dim() - 2)
    # Folding the statistics into a per-channel scale and shift leaves one full-size op
    # (addcmul) instead of four, and the same for the backward and double-backward passes;
    # on CPU these memory-bound passes over the first layer's activations dominate MAML.
    scale = weight.view(shape) * torch.rsqrt(var + eps)
    shift = bias.view(shape) - mean * scale
    return torch.addcmul(shift, x, scale)


class BatchStatNorm(nn.Module):
    """BatchNorm with batch statistics only (no running stats, no buffers); safe under vmap."""

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))

    def forward(self, x: Tensor) -> Tensor:
        """The normalized ``x``, same shape ``(B, C, *spatial)``."""
        return batch_stat_norm(x, self.weight, self.bias, self.eps)


class Conv4(nn.Module):
    """``layers`` x [conv3x3 ``hidden`` filters, BatchStatNorm, ReLU, maxpool 2], then an optional head.

    (The ReLU is applied after the pooling, which is the same function; see the comment.)

    For 28x28 inputs and 4 layers the feature map is 64 x 1 x 1, so ``feature_dim = hidden``.
    ``forward`` returns logits ``(B, out_features)`` when ``out_features > 0``, else the
    features ``(B, feature_dim)``.
    """

    def __init__(
        self,
        in_channels: int = 1,
        hidden: int = 64,
        layers: int = 4,
        image_size: int = 28,
        out_features: int = 0,
    ) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        channels = in_channels
        side = image_size
        for _ in range(layers):
            # Max-pooling before the ReLU computes the same function as after it (ReLU is
            # monotonic, so it commutes with max) on a quarter of the elements, forward and backward.
            blocks += [
                nn.Conv2d(channels, hidden, kernel_size=3, padding=1),
                BatchStatNorm(hidden),
                nn.MaxPool2d(2),
                nn.ReLU(),
            ]
            channels = hidden
            side //= 2
        if side < 1:
            raise ValueError(f"{layers} pooling layers shrink a {image_size}px image to nothing")
        self.features = nn.Sequential(*blocks)
        self.feature_dim = hidden * side * side
        self.head: nn.Linear | None = nn.Linear(self.feature_dim, out_features) if out_features > 0 else None

    def embed(self, x: Tensor) -> Tensor:
        """Features ``(B, feature_dim)`` of images ``(B, in_channels, H, W)``."""
        return self.features(x).flatten(1)

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(B, out_features)`` or features ``(B, feature_dim)`` (no head)."""
        f = self.embed(x)
        return self.head(f) if self.head is not None else f
