"""Networks: Siamese and transfer nets on the Conv4 backbone, the 2x40 MLP, the MLP over sentence
embeddings (:class:`TextMLP`) and its transfer net (:class:`TextTransferNet`), and :func:`build_model`.

The Conv4 backbone and its batch-statistics normalization live in :mod:`learning.engine.conv4`
(re-exported here). Whose statistics: a prediction must not depend on the other queries it is asked with, so
an episode's queries are normalized by the statistics of its *support set*
(:func:`embed_episode`, and the adapted predictions of :mod:`learning.engine.functional`).
The papers' transductive protocol (statistics of the support and queries together, or of
the queries alone) stays available under :func:`transductive_statistics`. MAML-family
meta-training keeps the transductive outer loss of Finn et al. (2017).

Models are built from a plain JSON-able ``model_config`` by :func:`build_model`, so a
saved weights file carries everything needed to rebuild its net; the Neural Process nets
(:mod:`learning.engine.neural_process_nets`) and the Neural Statistician
(:mod:`learning.engine.statistician_nets`) are built from here too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import torch
from torch import Tensor, nn

from learning.engine.conv4 import Conv4, statistics_from
from learning.engine.neural_process_nets import ARCH as NP_ARCH
from learning.engine.neural_process_nets import build_neural_process
from learning.engine.statistician_nets import ARCH as STATISTICIAN_ARCH
from learning.engine.statistician_nets import build_statistician

_TRANSDUCTIVE: ContextVar[bool] = ContextVar("transductive", default=False)


@contextmanager
def transductive_statistics() -> Iterator[None]:
    """Inside this block, :func:`embed_episode` and adapted predictions normalize support and
    queries by their joint statistics (or the queries' own) instead of the support's alone.

    That is the *transductive* protocol of the MAML and ProtoNet papers, where a query's score
    depends on the other queries of its episode; use it only to reproduce their numbers.
    """
    token = _TRANSDUCTIVE.set(True)
    try:
        yield
    finally:
        _TRANSDUCTIVE.reset(token)


def is_transductive() -> bool:
    """Whether :func:`transductive_statistics` is in force."""
    return _TRANSDUCTIVE.get()


def embed_episode(encode: Callable[[Tensor], Tensor], xs: Tensor, xq: Tensor) -> tuple[Tensor, Tensor]:
    """``(encode(xs), encode(xq))`` of one episode's support ``(S, ...)`` and queries ``(Q, ...)``,
    in one batch normalized by the support's statistics, so that a query's output depends on
    the support set and itself only (under :func:`transductive_statistics`: on the whole batch).
    """
    rows = None if is_transductive() else len(xs)
    with statistics_from(rows):
        out = encode(torch.cat([xs, xq]))
    return out[: len(xs)], out[len(xs) :]


def embed_episodes(encode: Callable[[Tensor], Tensor], xs: Tensor, xq: Tensor) -> tuple[Tensor, Tensor]:
    """:func:`embed_episode` of each episode of a batch: ``(B, S, D)`` and ``(B, Q, D)`` from
    ``xs`` ``(B, S, ...)`` and ``xq`` ``(B, Q, ...)``, each episode with its own statistics.

    One episode (tens of images) at a time keeps its activations in the CPU's caches: measured
    2x faster than 16 episodes in one batch (``benchmarks/evaluation_speed.py``).
    """
    pairs = [embed_episode(encode, s, q) for s, q in zip(xs, xq, strict=True)]
    return torch.stack([s for s, _ in pairs]), torch.stack([q for _, q in pairs])


def store_channels_last(model: nn.Module, enabled: bool = True) -> nn.Module:
    """``model``, changed in place: its 4-D (convolution) weights stored channels-last, or back in
    the default layout when ``enabled`` is False. The values do not change.

    A convolution's output follows its weight's layout, and on CPU oneDNN's convolutions and the
    max-pooling over channels-last activations ran twice as fast (``benchmarks/evaluation_speed.py``).
    """
    layout = torch.channels_last if enabled else torch.contiguous_format
    return model.to(memory_format=layout)  # type: ignore[call-overload]  # the stubs omit memory_format


@contextmanager
def channels_last(model: nn.Module) -> Iterator[nn.Module]:
    """:func:`store_channels_last` inside the block, the default layout after. For nets that only
    embed: adaptation by gradient steps keeps the default layout."""
    store_channels_last(model)
    try:
        yield model
    finally:
        store_channels_last(model, enabled=False)


class SiameseNet(nn.Module):
    """Koch et al. (2015) verification net: a shared Conv4 embedding, then ``sigmoid(w . |e1 - e2| + b)``.

    ``forward`` embeds a batch ``(B, C, H, W) -> (B, feature_dim)``; :meth:`pair_logits`
    scores embedded pairs.
    """

    def __init__(self, in_channels: int = 1, hidden: int = 64, layers: int = 4, image_size: int = 28) -> None:
        super().__init__()
        self.encoder = Conv4(in_channels, hidden, layers, image_size, out_features=0)
        self.scorer = nn.Linear(self.encoder.feature_dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        """Embeddings ``(B, feature_dim)``."""
        return self.encoder(x)

    def pair_logits(self, a: Tensor, b: Tensor) -> Tensor:
        """Same-class logits for embeddings ``a`` and ``b`` ``(..., D)`` (broadcast); shape ``(...)``.

        ``sigmoid`` of the result is the probability that the two images show the same class.
        """
        return self.scorer((a - b).abs()).squeeze(-1)


class BackboneClassifier(nn.Module):
    """A backbone (no head) and a linear ``classifier`` over a transfer run's target (and source) classes.

    The net of every transfer method (:mod:`learning.engine.algorithms.transfer`): a Conv4 over
    images (:class:`TransferNet`) or an MLP over sentence embeddings (:class:`TextTransferNet`).
    ``embed`` gives the backbone features ``(B, feature_dim)``; ``forward`` the logits ``(B, classes)``.
    The classifier is not called ``head`` on purpose: the few-shot evaluation refuses a net whose
    ``head`` does not match the episode's N, and this classifier is for the training classes only.
    """

    backbone: nn.Module
    classifier: nn.Linear

    def embed(self, x: Tensor) -> Tensor:
        """Backbone features ``(B, feature_dim)`` of inputs ``(B, ...)``."""
        return self.backbone(x)

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(B, classes)``."""
        return self.classifier(self.embed(x))


class TransferNet(BackboneClassifier):
    """A Conv4 backbone (no head) and a linear classifier over ``classes`` classes; images ``(B, C, H, W)``
    in, logits ``(B, classes)`` out."""

    def __init__(
        self, in_channels: int = 1, hidden: int = 64, layers: int = 4, image_size: int = 28, classes: int = 1
    ) -> None:
        super().__init__()
        self.backbone = Conv4(in_channels, hidden, layers, image_size, out_features=0)
        self.classifier = nn.Linear(self.backbone.feature_dim, classes)


def mlp_body(in_features: int, hidden: tuple[int, ...], final_relu: bool) -> nn.Sequential:
    """Linear layers ``in -> hidden[0] -> ... -> hidden[-1]`` with a ReLU between them, and after the
    last one when ``final_relu``; maps ``(..., in_features)`` to ``(..., hidden[-1])``."""
    if not hidden:
        raise ValueError("a text MLP needs at least one hidden width")
    layers: list[nn.Module] = []
    width = in_features
    for i, h in enumerate(hidden):
        layers.append(nn.Linear(width, h))
        if final_relu or i < len(hidden) - 1:
            layers.append(nn.ReLU())
        width = h
    return nn.Sequential(*layers)


class TextTransferNet(BackboneClassifier):
    """An MLP backbone over sentence embeddings ``(B, in_features)`` (a :class:`TextMLP`'s body:
    ``final_relu`` as a MAML-family body, without as a ProtoNet's) and a linear classifier over
    ``classes`` classes; ``embed`` gives ``(B, hidden[-1])``."""

    def __init__(self, in_features: int, hidden: tuple[int, ...], final_relu: bool, classes: int) -> None:
        super().__init__()
        self.backbone = mlp_body(in_features, hidden, final_relu)
        self.classifier = nn.Linear(hidden[-1], classes)


class MLP(nn.Module):
    """ReLU MLP ``in_features -> hidden[0] -> ... -> out_features`` (Finn et al. 2017 use 1-40-40-1)."""

    def __init__(
        self, in_features: int = 1, hidden: tuple[int, ...] = (40, 40), out_features: int = 1
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, out_features))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """Outputs ``(..., out_features)`` for inputs ``(..., in_features)``."""
        return self.net(x)


class TextMLP(nn.Module):
    """A ReLU MLP over frozen sentence embeddings ``(..., in_features)``, the net of text domains.

    ``head`` ``"none"`` (ProtoNet): ``in -> hidden[0] -> ... -> hidden[-1]``, ReLU between the
    layers and none after the last, whose outputs are the embedding (with one hidden width, a
    linear projection). ``"linear"`` (MAML family): the same layers with a ReLU after each,
    then ``head``, a linear layer to ``out_features`` logits (the few-shot evaluation checks
    its size against the episodes' N, as for a Conv4). :meth:`embed` gives the features
    before the head ``(..., hidden[-1])``.
    """

    def __init__(
        self, in_features: int, hidden: tuple[int, ...], head: str = "none", out_features: int = 0
    ) -> None:
        super().__init__()
        if head not in ("none", "linear") or (head == "linear") != (out_features > 0):
            raise ValueError(f"head {head!r} with out_features {out_features} is not a text MLP")
        self.body = mlp_body(in_features, hidden, final_relu=head == "linear")
        self.head = nn.Linear(hidden[-1], out_features) if head == "linear" else None

    def embed(self, x: Tensor) -> Tensor:
        """Features ``(..., hidden[-1])``."""
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        """Embeddings ``(..., hidden[-1])`` (head ``none``) or logits ``(..., out_features)``."""
        features = self.body(x)
        return features if self.head is None else self.head(features)


ModelBuilder = Callable[[Mapping[str, Any]], nn.Module]

CONV4_DEFAULTS: dict[str, Any] = {
    "arch": "conv4",
    "in_channels": 1,
    "image_size": 28,
    "hidden": 64,
    "layers": 4,
    "head": "none",
    "out_features": 0,
}
MLP_DEFAULTS: dict[str, Any] = {"arch": "mlp", "in_features": 1, "hidden": [40, 40], "out_features": 1}
TRANSFER_ARCH = "conv4_transfer"
"""``model_config["arch"]`` of a :class:`TransferNet` (keys ``in_channels``, ``hidden``, ``layers``,
``image_size``, ``classes``)."""


def _build_conv4(cfg: Mapping[str, Any]) -> nn.Module:
    c = {**CONV4_DEFAULTS, **cfg}
    if c["head"] == "siamese":
        return SiameseNet(c["in_channels"], c["hidden"], c["layers"], c["image_size"])
    if c["head"] == "linear":
        if c["out_features"] < 1:
            raise ValueError(f"a linear head needs out_features >= 1, got {c['out_features']}")
        return Conv4(c["in_channels"], c["hidden"], c["layers"], c["image_size"], c["out_features"])
    if c["head"] == "none":
        return Conv4(c["in_channels"], c["hidden"], c["layers"], c["image_size"], 0)
    raise ValueError(f"unknown conv4 head {c['head']!r}; use 'none', 'linear' or 'siamese'")


def _build_mlp(cfg: Mapping[str, Any]) -> nn.Module:
    c = {**MLP_DEFAULTS, **cfg}
    return MLP(int(c["in_features"]), tuple(int(h) for h in c["hidden"]), int(c["out_features"]))


def _build_transfer_net(cfg: Mapping[str, Any]) -> nn.Module:
    return TransferNet(
        int(cfg.get("in_channels", 1)),
        int(cfg.get("hidden", 64)),
        int(cfg.get("layers", 4)),
        int(cfg.get("image_size", 28)),
        int(cfg["classes"]),
    )


TEXT_ARCH = "text_mlp"
"""``model_config["arch"]`` of a :class:`TextMLP` (keys ``in_features``, ``hidden``, ``head``,
``out_features``)."""


def _build_text_mlp(cfg: Mapping[str, Any]) -> nn.Module:
    return TextMLP(
        int(cfg["in_features"]),
        tuple(int(h) for h in cfg["hidden"]),
        str(cfg.get("head", "none")),
        int(cfg.get("out_features", 0)),
    )


TEXT_TRANSFER_ARCH = "text_transfer"
"""``model_config["arch"]`` of a :class:`TextTransferNet` (keys ``in_features``, ``hidden``,
``final_relu``, ``classes``)."""


def _build_text_transfer_net(cfg: Mapping[str, Any]) -> nn.Module:
    return TextTransferNet(
        int(cfg["in_features"]),
        tuple(int(h) for h in cfg["hidden"]),
        bool(cfg.get("final_relu", False)),
        int(cfg["classes"]),
    )


MODEL_BUILDERS: dict[str, ModelBuilder] = {
    "conv4": _build_conv4,
    "mlp": _build_mlp,
    TEXT_ARCH: _build_text_mlp,
    TRANSFER_ARCH: _build_transfer_net,
    TEXT_TRANSFER_ARCH: _build_text_transfer_net,
    NP_ARCH: build_neural_process,
    STATISTICIAN_ARCH: build_statistician,
}
"""``model_config["arch"]`` -> builder: every architecture a saved model can have.

A new architecture is added here (its net defined in this module or one it imports), so that
any saved model is rebuilt without importing the algorithms."""


def build_model(model_config: Mapping[str, Any]) -> nn.Module:
    """A freshly initialized model for ``model_config`` (uses the torch RNG for initialization).

    Raises ``ValueError`` for an unknown ``arch``. Extra keys (e.g. ``adapt`` settings for
    evaluation) are ignored by the builders.
    """
    arch = model_config.get("arch")
    if arch not in MODEL_BUILDERS:
        raise ValueError(f"unknown model arch {arch!r}; known: {sorted(MODEL_BUILDERS)}")
    return MODEL_BUILDERS[arch](model_config)
