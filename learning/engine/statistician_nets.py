"""The networks of the Neural Statistician (Edwards and Storkey, 2017) for image sets.

A set ``D`` of images of one class is summarized into a context ``c``; each image ``x`` has
its own latent ``z``. The generative model is ``p(c) p(z | c) p(x | z, c)`` with
``p(c) = N(0, I)``; inference uses ``q(c | D)`` and ``q(z | x, c)``:

- ``encoder``: a Conv4 (the backbone the other image algorithms have) maps each image to
  features ``h`` (``(B, feature_dim)``);
- ``statistic``: an MLP applied to each ``h`` of a set, averaged over the set (so the
  summary ignores order and size), then an MLP to the mean and log-variance of ``q(c | D)``;
- ``inference``: an MLP of ``(h, c)`` to ``q(z | x, c)``; ``latent_prior``: an MLP of ``c``
  to ``p(z | c)``;
- ``decoder``: an MLP of ``(z, c)`` to a ``hidden x side/4 x side/4`` map, then two
  transposed convolutions to per-pixel Bernoulli logits ``(B, C, side, side)``.

Simplified from the paper on purpose: one stochastic layer ``z`` instead of a hierarchy of
three, and the Conv4 encoder instead of the paper's larger one, so that its accuracy is
compared with ProtoNet's on the same backbone. :func:`build_statistician` builds one from
its ``model_config`` (``arch`` = :data:`ARCH`); :mod:`learning.engine.nets` registers it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from learning.engine.conv4 import Conv4

ARCH = "statistician"
"""``model_config["arch"]`` of a Neural Statistician."""

_LOGVAR_LIMIT = 8.0
"""Log-variances are clamped to +-this, so that early steps cannot overflow ``exp``."""


class Gaussian(NamedTuple):
    """A diagonal Gaussian: ``mean`` and ``logvar`` of the same shape ``(..., D)``."""

    mean: Tensor
    logvar: Tensor

    def sample(self, generator: torch.Generator | None = None) -> Tensor:
        """A reparameterized sample ``(..., D)``."""
        noise = torch.randn(
            self.mean.shape, generator=generator, dtype=self.mean.dtype, device=self.mean.device
        )
        return self.mean + noise * torch.exp(0.5 * self.logvar)


def gaussian_kl(q: Gaussian, p: Gaussian) -> Tensor:
    """``KL(q || p)`` in nats, summed over the last dimension; broadcasts over the leading ones."""
    ratio = q.logvar - p.logvar
    return 0.5 * (torch.exp(ratio) + (q.mean - p.mean) ** 2 * torch.exp(-p.logvar) - 1.0 - ratio).sum(-1)


def standard_normal_kl(q: Gaussian) -> Tensor:
    """``KL(q || N(0, I))`` in nats, summed over the last dimension."""
    return 0.5 * (torch.exp(q.logvar) + q.mean**2 - 1.0 - q.logvar).sum(-1)


def _gaussian(out: Tensor) -> Gaussian:
    mean, logvar = out.chunk(2, dim=-1)
    return Gaussian(mean, logvar.clamp(-_LOGVAR_LIMIT, _LOGVAR_LIMIT))


def _mlp(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))


class ElboTerms(NamedTuple):
    """The negative ELBO of each set, in nats: ``(B,)`` tensors."""

    reconstruction: Tensor
    """``-log p(x | z, c)`` summed over the set's images and pixels."""
    kl_z: Tensor
    """``KL(q(z | x, c) || p(z | c))`` summed over the set's images."""
    kl_c: Tensor
    """``KL(q(c | D) || p(c))``, once per set."""
    features: Tensor
    """The encoder features of the sets' images, ``(B, S, feature_dim)``."""


class NeuralStatistician(nn.Module):
    """The statistic network, inference networks and decoder of the module docstring."""

    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 28,
        hidden: int = 64,
        layers: int = 4,
        context_dim: int = 64,
        latent_dim: int = 16,
        mlp_hidden: int = 256,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.image_size = image_size
        self.hidden = hidden
        self.encoder = Conv4(in_channels, hidden, layers, image_size, out_features=0)
        features = self.encoder.feature_dim
        self.pre_pool = nn.Sequential(nn.Linear(features, mlp_hidden), nn.ReLU())
        self.post_pool = _mlp(mlp_hidden, mlp_hidden, 2 * context_dim)
        self.inference = _mlp(features + context_dim, mlp_hidden, 2 * latent_dim)
        self.latent_prior = _mlp(context_dim, mlp_hidden, 2 * latent_dim)
        self._side = max(1, image_size // 4)
        self.decoder_in = nn.Sequential(
            nn.Linear(latent_dim + context_dim, mlp_hidden),
            nn.ReLU(),
            nn.Linear(mlp_hidden, hidden * self._side * self._side),
            nn.ReLU(),
        )
        self.decoder_conv = nn.Sequential(
            nn.ConvTranspose2d(hidden, hidden, kernel_size=4, stride=2, padding=1),
            nn.ReLU(),
            nn.ConvTranspose2d(hidden, in_channels, kernel_size=4, stride=2, padding=1),
        )

    def embed(self, x: Tensor) -> Tensor:
        """Encoder features ``(B, feature_dim)`` of images ``(B, C, H, W)`` in [0, 1]."""
        return self.encoder(x)

    def forward(self, x: Tensor) -> Tensor:
        """The encoder features, as :meth:`embed` (what transfer and scoring read)."""
        return self.embed(x)

    def context(self, features: Tensor) -> Gaussian:
        """``q(c | D)`` of sets of encoder features ``(..., S, feature_dim)``: ``(..., context_dim)``."""
        return self.context_of_pooled(self.pre_pool(features).mean(-2))

    def context_of_pooled(self, pooled: Tensor) -> Gaussian:
        """``q(c | D)`` from the set's mean of ``pre_pool(features)``, ``(..., mlp_hidden)``.

        Split from :meth:`context` so that several sets of unequal size can be pooled at once.
        """
        return _gaussian(self.post_pool(pooled))

    def decode(self, z: Tensor, c: Tensor) -> Tensor:
        """Bernoulli logits ``(B, C, side, side)`` of ``p(x | z, c)`` for ``z`` and ``c`` ``(B, .)``."""
        h = self.decoder_in(torch.cat([z, c], -1)).view(-1, self.hidden, self._side, self._side)
        logits = self.decoder_conv(h)
        if logits.shape[-1] != self.image_size:
            logits = F.interpolate(logits, size=(self.image_size, self.image_size), mode="bilinear")
        return logits

    def elbo_terms(self, sets: Tensor, generator: torch.Generator | None = None) -> ElboTerms:
        """The negative ELBO's terms for ``B`` sets of ``S`` images ``(B, S, C, H, W)`` in [0, 1].

        All ``B * S`` images are encoded in one batch (its statistics normalize the encoder).
        """
        b, s = sets.shape[:2]
        flat = sets.reshape(b * s, *sets.shape[2:])
        features = self.embed(flat).view(b, s, -1)
        q_c = self.context(features)
        c = q_c.sample(generator)  # (B, context)
        c_each = c.unsqueeze(1).expand(b, s, c.shape[-1])
        q_z = _gaussian(self.inference(torch.cat([features, c_each], -1)))
        p_z = _gaussian(self.latent_prior(c_each))
        z = q_z.sample(generator)
        logits = self.decode(z.reshape(b * s, -1), c_each.reshape(b * s, -1))
        bce = F.binary_cross_entropy_with_logits(logits, flat, reduction="none")
        return ElboTerms(
            reconstruction=bce.view(b, -1).sum(-1),
            kl_z=gaussian_kl(q_z, p_z).sum(-1),
            kl_c=standard_normal_kl(q_c),
            features=features,
        )

    def sample_like(self, features: Tensor, count: int, generator: torch.Generator | None = None) -> Tensor:
        """``count`` new images ``(count, C, H, W)``, pixel probabilities in [0, 1], of the class
        whose set of encoder features ``(S, feature_dim)`` is given: ``c ~ q(c | D)`` once,
        then for each image ``z ~ p(z | c)`` and the decoder's mean."""
        c = self.context(features).sample(generator).expand(count, -1)
        z = _gaussian(self.latent_prior(c)).sample(generator)
        return torch.sigmoid(self.decode(z, c))


def build_statistician(cfg: Mapping[str, Any]) -> NeuralStatistician:
    """A freshly initialized :class:`NeuralStatistician` for its ``model_config`` (defaults as above)."""
    return NeuralStatistician(
        in_channels=int(cfg.get("in_channels", 1)),
        image_size=int(cfg.get("image_size", 28)),
        hidden=int(cfg.get("hidden", 64)),
        layers=int(cfg.get("layers", 4)),
        context_dim=int(cfg.get("context_dim", 64)),
        latent_dim=int(cfg.get("latent_dim", 16)),
        mlp_hidden=int(cfg.get("mlp_hidden", 256)),
    )
