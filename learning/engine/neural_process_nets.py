"""The networks of the Conditional and latent Neural Processes (Garnelo et al., 2018).

Both map a context set ``{(x_i, y_i)}`` and target inputs ``x_t`` to a Gaussian per
target point, ``N(mean(x_t), std(x_t)^2)``:

- ``cnp``: an encoder MLP embeds each ``(x_i, y_i)``, the embeddings are averaged into
  ``r`` (so the model is invariant to the order and the number of context points), and a
  decoder MLP maps ``(r, x_t)`` to the mean and ``std = min_std + (1 - min_std) * softplus(.)``.
- ``np``: a latent path embeds, averages and maps the set to a diagonal Gaussian
  ``q(z | set)``; the decoder sees ``(z, x_t)`` (and ``r`` too when ``deterministic_path``
  is on).

:func:`build_neural_process` builds one from its ``model_config`` (``arch`` =
:data:`ARCH`); :mod:`learning.engine.nets` registers it, so ``build_model`` rebuilds saved
neural processes. Training lives in :mod:`learning.engine.algorithms.neural_process`,
scoring in :mod:`learning.engine.regression_eval`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

ARCH = "neural_process"
"""``model_config["arch"]`` of every neural process."""


def _mlp(in_dim: int, hidden: int, layers: int, out_dim: int) -> nn.Sequential:
    """``layers`` linear layers with ReLUs between, hidden width ``hidden``, ``in_dim`` to ``out_dim``."""
    mods: list[nn.Module] = []
    width = in_dim
    for _ in range(layers - 1):
        mods += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    mods.append(nn.Linear(width, out_dim))
    return nn.Sequential(*mods)


@dataclass(frozen=True)
class NPConfig:
    """Architecture of a CNP or latent NP; every field is recorded in the model config."""

    kind: str = "cnp"
    """``cnp`` or ``np``."""
    x_dim: int = 1
    y_dim: int = 1
    hidden: int = 128
    """Width of every hidden layer and of the representation ``r``."""
    encoder_layers: int = 3
    decoder_layers: int = 3
    latent_dim: int = 64
    """Size of ``z`` (``np`` only)."""
    deterministic_path: bool = False
    """``np`` only: also feed the mean-aggregated deterministic ``r`` to the decoder."""
    min_std: float = 0.01
    """Floor of the predictive standard deviation, in units of ``y``."""

    def __post_init__(self) -> None:
        if self.kind not in ("cnp", "np"):
            raise ValueError(f"neural process kind must be 'cnp' or 'np', got {self.kind!r}")
        for name in ("x_dim", "y_dim", "hidden", "encoder_layers", "decoder_layers", "latent_dim"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not 0.0 < self.min_std < 1.0:
            raise ValueError(f"min_std must lie in (0, 1), got {self.min_std}")

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> NPConfig:
        """The config from a mapping with a subset of the field names; unknown keys are an error."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown neural process settings {unknown}; known: {sorted(known)}")
        return cls(**d)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


class GaussianLatent:
    """A diagonal Gaussian over ``z``; ``mean`` and ``std`` of shape ``(B, latent_dim)``."""

    def __init__(self, mean: Tensor, std: Tensor) -> None:
        self.mean = mean
        self.std = std

    def rsample(self, eps: Tensor) -> Tensor:
        """Reparameterized samples for given standard-normal ``eps`` ``(S, B, latent_dim)``; same shape."""
        return self.mean + self.std * eps

    def kl_to(self, other: GaussianLatent) -> Tensor:
        """``KL(self || other)`` in nats, summed over latent dimensions; shape ``(B,)``."""
        var_ratio = (self.std / other.std) ** 2
        diff = ((self.mean - other.mean) / other.std) ** 2
        return 0.5 * (var_ratio + diff - 1.0 - torch.log(var_ratio)).sum(-1)


class NPLoss(NamedTuple):
    """One training objective evaluation; all scalars, nats per target point."""

    loss: Tensor
    """What is minimized: ``-log_lik`` (cnp) or ``kl - log_lik`` (np)."""
    log_lik: Tensor
    """Mean log-likelihood of the targets (context included)."""
    kl: Tensor
    """``KL(q(z|C+T) || q(z|C))`` per target point; zero for a cnp."""


class NeuralProcess(nn.Module):
    """A CNP (``config.kind == "cnp"``) or latent NP (``"np"``); see the module docstring."""

    def __init__(self, config: NPConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        pair = c.x_dim + c.y_dim
        self.uses_latent = c.kind == "np"
        self.uses_deterministic = c.kind == "cnp" or c.deterministic_path
        dec_in = c.x_dim
        if self.uses_deterministic:
            self.det_encoder = _mlp(pair, c.hidden, c.encoder_layers, c.hidden)
            dec_in += c.hidden
        if self.uses_latent:
            self.latent_encoder = _mlp(pair, c.hidden, c.encoder_layers, c.hidden)
            # From the aggregated set embedding to (mean, raw std) of z.
            self.latent_head = nn.Sequential(
                nn.ReLU(), nn.Linear(c.hidden, c.hidden), nn.ReLU(), nn.Linear(c.hidden, 2 * c.latent_dim)
            )
            dec_in += c.latent_dim
        self.decoder = _mlp(dec_in, c.hidden, c.decoder_layers, 2 * c.y_dim)

    def deterministic_representation(self, x_ctx: Tensor, y_ctx: Tensor) -> Tensor:
        """Mean-aggregated context embedding ``r``; inputs ``(B, K, ·)``, returns ``(B, hidden)``."""
        return self.det_encoder(torch.cat([x_ctx, y_ctx], dim=-1)).mean(dim=1)

    def latent(self, x: Tensor, y: Tensor) -> GaussianLatent:
        """``q(z | {(x_i, y_i)})`` for a set ``(B, N, ·)``; std in ``(0.1, 1)`` as in Garnelo et al."""
        s = self.latent_encoder(torch.cat([x, y], dim=-1)).mean(dim=1)
        mean, raw = self.latent_head(s).chunk(2, dim=-1)
        return GaussianLatent(mean, 0.1 + 0.9 * torch.sigmoid(raw))

    def decode(self, x_tgt: Tensor, r: Tensor | None, z: Tensor | None) -> tuple[Tensor, Tensor]:
        """Predictive mean and std at ``x_tgt`` ``(B, T, x_dim)``.

        ``r`` is ``(B, hidden)`` or None; ``z`` is ``(S, B, latent_dim)`` or None. Returns two
        tensors of shape ``(S, B, T, y_dim)`` (``S = 1`` without a latent), units of ``y``.
        """
        n_samples = 1 if z is None else z.shape[0]
        batch, n_tgt = x_tgt.shape[0], x_tgt.shape[1]
        parts = [x_tgt.unsqueeze(0).expand(n_samples, -1, -1, -1)]
        if r is not None:
            parts.append(r[None, :, None, :].expand(n_samples, batch, n_tgt, -1))
        if z is not None:
            parts.append(z[:, :, None, :].expand(-1, -1, n_tgt, -1))
        out = self.decoder(torch.cat(parts, dim=-1))
        mean, raw = out.chunk(2, dim=-1)
        floor = self.config.min_std
        return mean, floor + (1.0 - floor) * F.softplus(raw)

    def predict(
        self, x_ctx: Tensor, y_ctx: Tensor, x_tgt: Tensor, eps: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Predictions from the context alone: mean and std of shape ``(S, B, T, y_dim)``.

        For ``np``, ``z`` comes from the prior ``q(z | context)`` with the given standard
        normal ``eps`` ``(S, B, latent_dim)``, required; for ``cnp`` ``eps`` is ignored and ``S = 1``.
        """
        r = self.deterministic_representation(x_ctx, y_ctx) if self.uses_deterministic else None
        z = None
        if self.uses_latent:
            if eps is None:
                raise ValueError("a latent NP needs eps to sample z")
            z = self.latent(x_ctx, y_ctx).rsample(eps)
        return self.decode(x_tgt, r, z)

    def training_loss(
        self, x_ctx: Tensor, y_ctx: Tensor, x_tgt: Tensor, y_tgt: Tensor, eps: Tensor | None = None
    ) -> NPLoss:
        """The training objective on one batch, as :class:`NPLoss` (scalars, nats per target point).

        Targets are the context plus ``(x_tgt, y_tgt)``. ``cnp``: negative mean
        log-likelihood. ``np``: negative ELBO per target point, with ``z`` drawn from the
        posterior ``q(z | C + T)`` using ``eps`` of shape ``(S, B, latent_dim)``.
        """
        x_all = torch.cat([x_ctx, x_tgt], dim=1)
        y_all = torch.cat([y_ctx, y_tgt], dim=1)
        r = self.deterministic_representation(x_ctx, y_ctx) if self.uses_deterministic else None
        if not self.uses_latent:
            mean, std = self.decode(x_all, r, None)
            log_lik = gaussian_log_prob(y_all, mean, std).mean()
            return NPLoss(-log_lik, log_lik, torch.zeros_like(log_lik))
        if eps is None:
            raise ValueError("a latent NP needs eps to sample z")
        prior = self.latent(x_ctx, y_ctx)
        posterior = self.latent(x_all, y_all)
        mean, std = self.decode(x_all, r, posterior.rsample(eps))
        # Sum over y dimensions, average over samples and points: nats per target point.
        log_lik = gaussian_log_prob(y_all, mean, std).sum(-1).mean()
        kl = (posterior.kl_to(prior) / x_all.shape[1]).mean()
        return NPLoss(kl - log_lik, log_lik, kl)


def gaussian_log_prob(y: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """Element-wise ``log N(y; mean, std^2)`` in nats; shapes broadcast."""
    return -0.5 * math.log(2 * math.pi) - torch.log(std) - 0.5 * ((y - mean) / std) ** 2


def build_neural_process(model_config: Mapping[str, Any]) -> NeuralProcess:
    """A freshly initialized :class:`NeuralProcess` for a ``model_config`` (``arch`` = :data:`ARCH`)."""
    fields = {k: v for k, v in model_config.items() if k != "arch"}
    return NeuralProcess(NPConfig.from_dict(fields))
