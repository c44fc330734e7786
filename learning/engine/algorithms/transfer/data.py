"""What a transfer run starts from: the target data, the source model and its backbone (a Conv4 for
images, an MLP body for text)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import torch
from torch import Tensor, nn

from learning.engine.config import ConfigError
from learning.engine.data import EpisodeData, ImageArrays, TextArrays
from learning.engine.nets import (
    TEXT_TRANSFER_ARCH,
    TRANSFER_ARCH,
    BackboneClassifier,
    Conv4,
    SiameseNet,
    TextMLP,
    TextTransferNet,
    TransferNet,
    build_model,
)
from learning.engine.statistician_nets import NeuralStatistician
from learning.engine.weights import load_model, weights_from_bytes

__all__ = ["BackboneShape", "TransferData", "source_backbone", "weights_digest"]


@dataclass(frozen=True)
class TransferData:
    """What a transfer run trains on.

    - ``target``: the target domain, images or embedded texts (its training classes are chosen by
      ``config["target"]``);
    - ``source_weights``, ``source_model_config``, ``source_algorithm``: the source model, as
      :func:`learning.engine.weights.weights_from_bytes` returns them from a MetaModel artifact;
    - ``source_data``: the source domain's examples (the target's kind of data), needed only by
      ``instance``;
    - ``source_class_names``: the classes the source model was trained on (its
      ``TrainResult.train_class_names``), added to the result's ``train_class_names`` so an
      evaluation can refuse classes the source already saw.
    """

    target: EpisodeData
    source_weights: Mapping[str, Tensor]
    source_model_config: Mapping[str, Any]
    source_algorithm: str
    source_data: EpisodeData | None = None
    source_class_names: tuple[str, ...] = field(default=())

    @property
    def domain(self) -> str:
        """``"text"`` for a target of sentence embeddings, else ``"image"``: the registry domain."""
        return "text" if isinstance(self.target, TextArrays) else "image"

    @classmethod
    def from_weights_bytes(
        cls,
        target: EpisodeData,
        blob: bytes,
        *,
        source_data: EpisodeData | None = None,
        source_class_names: Sequence[str] = (),
    ) -> TransferData:
        """A :class:`TransferData` whose source is the safetensors ``blob`` of a MetaModel artifact."""
        weights, model_config, algorithm = weights_from_bytes(blob)
        return cls(target, weights, model_config, algorithm, source_data, tuple(source_class_names))


@dataclass(frozen=True)
class BackboneShape:
    """How to build a transfer net on the source's kind of backbone: the arch and its
    ``model_config`` items other than ``classes``.

    ``arch`` :data:`TRANSFER_ARCH` (images): items ``in_channels``, ``image_size``, ``hidden``
    (filters of every conv block), ``layers``. :data:`TEXT_TRANSFER_ARCH` (text): items
    ``in_features``, ``hidden`` (the widths of the MLP's layers), ``final_relu``.
    """

    arch: str
    items: Mapping[str, Any]

    @property
    def domain(self) -> str:
        """``"text"`` or ``"image"``: the kind of inputs the backbone takes."""
        return "text" if self.arch == TEXT_TRANSFER_ARCH else "image"

    def model_config(self, classes: int, hidden: int | None = None) -> dict[str, Any]:
        """The ``model_config`` of a transfer net over ``classes`` classes.

        ``hidden`` (RKD's student) replaces the width: the filters of every conv block, or the
        width of every hidden layer of the MLP (as many layers as the source's).
        """
        items = dict(self.items)
        if hidden is not None:
            items["hidden"] = [hidden] * len(items["hidden"]) if self.domain == "text" else hidden
        return {"arch": self.arch, **items, "classes": classes}

    def build(self, classes: int, hidden: int | None = None) -> BackboneClassifier:
        """A freshly initialized transfer net (drawn from the torch RNG) of :meth:`model_config`."""
        return cast(BackboneClassifier, build_model(self.model_config(classes, hidden)))


def source_backbone(data: TransferData) -> tuple[nn.Module, BackboneShape]:
    """The source's backbone (a new head-less module with the source weights, in eval mode) and its shape.

    Images: a ``Conv4`` (from a Conv4, a Siamese net, a statistician's encoder, a transfer net);
    its features are ``(B, hidden * side^2)``. Text: the body of a :class:`TextMLP` or a text
    transfer net, an ``nn.Sequential`` mapping ``(B, D)`` embeddings to ``(B, hidden[-1])``.
    Raises :class:`ConfigError` (field ``source_model``) when the weights do not load, the model
    has no backbone for the target's kind of data, or its inputs differ from the target's.
    """
    try:
        model = load_model(data.source_weights, data.source_model_config)
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError("source_model", f"the source weights do not load: {exc}") from exc
    if data.domain == "text":
        layers, shape = _text_layers(model, data)
    else:
        layers, shape = _image_layers(model, data)
    fresh = shape.build(1).backbone
    target_layers = fresh if shape.domain == "text" else cast(nn.Module, fresh.features)
    target_layers.load_state_dict(layers.state_dict())
    return fresh.eval(), shape


def _image_layers(model: nn.Module, data: TransferData) -> tuple[nn.Module, BackboneShape]:
    """The conv layers (``features``) of an image source and the shape of its backbone."""
    if isinstance(model, TransferNet):
        net: nn.Module = model.backbone
    elif isinstance(model, SiameseNet | NeuralStatistician):
        net = model.encoder
    elif isinstance(model, Conv4):
        net = model
    else:
        raise ConfigError(
            "source_model", f"a {type(model).__name__} ({data.source_algorithm}) has no Conv4 backbone"
        )
    features = cast(nn.Sequential, net.features)
    convs = [m for m in features if isinstance(m, nn.Conv2d)]
    items = {
        "in_channels": convs[0].in_channels,
        "image_size": int(data.source_model_config.get("image_size", 28)),
        "hidden": convs[0].out_channels,
        "layers": len(convs),
    }
    side = int(cast(ImageArrays, data.target).images.shape[1])
    if items["in_channels"] != 1 or items["image_size"] != side:
        raise ConfigError(
            "source_model",
            f"the source takes {items['in_channels']}-channel {items['image_size']}px images; "
            f"the target has 1-channel {side}px images",
        )
    return features, BackboneShape(TRANSFER_ARCH, items)


def _text_layers(model: nn.Module, data: TransferData) -> tuple[nn.Module, BackboneShape]:
    """The MLP body of a text source and the shape of its backbone."""
    if isinstance(model, TextMLP):
        body = model.body
    elif isinstance(model, TextTransferNet):
        body = cast(nn.Sequential, model.backbone)
    else:
        raise ConfigError(
            "source_model",
            f"a {type(model).__name__} ({data.source_algorithm}) is not a text model; "
            "the target is a text domain of sentence embeddings",
        )
    linears = [m for m in body if isinstance(m, nn.Linear)]
    items = {
        "in_features": linears[0].in_features,
        "hidden": [m.out_features for m in linears],
        "final_relu": isinstance(body[-1], nn.ReLU),
    }
    dim = cast(TextArrays, data.target).dim
    if items["in_features"] != dim:
        raise ConfigError(
            "source_model",
            f"the source takes {items['in_features']}-d embeddings; the target's are {dim}-d",
        )
    return body, BackboneShape(TEXT_TRANSFER_ARCH, items)


def weights_digest(weights: Mapping[str, Tensor]) -> str:
    """SHA-256 hex of the tensors (names, dtypes, shapes and bytes), independent of dict order."""
    h = hashlib.sha256()
    for name in sorted(weights):
        t = weights[name].detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()
