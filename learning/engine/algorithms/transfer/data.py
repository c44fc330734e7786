"""What a transfer run starts from: the target data, the source model and its Conv4 backbone."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import torch
from torch import Tensor, nn

from learning.engine.config import ConfigError
from learning.engine.data import ImageArrays
from learning.engine.nets import Conv4, SiameseNet, TransferNet
from learning.engine.statistician_nets import NeuralStatistician
from learning.engine.weights import load_model, weights_from_bytes

__all__ = ["BackboneShape", "TransferData", "source_backbone", "weights_digest"]


@dataclass(frozen=True)
class TransferData:
    """What a transfer run trains on.

    - ``target``: the target image domain (its training classes are chosen by ``config["target"]``);
    - ``source_weights``, ``source_model_config``, ``source_algorithm``: the source model, as
      :func:`learning.engine.weights.weights_from_bytes` returns them from a MetaModel artifact;
    - ``source_data``: the source domain's examples, needed only by ``instance``;
    - ``source_class_names``: the classes the source model was trained on (its
      ``TrainResult.train_class_names``), added to the result's ``train_class_names`` so an
      evaluation can refuse classes the source already saw.
    """

    target: ImageArrays
    source_weights: Mapping[str, Tensor]
    source_model_config: Mapping[str, Any]
    source_algorithm: str
    source_data: ImageArrays | None = None
    source_class_names: tuple[str, ...] = field(default=())

    @classmethod
    def from_weights_bytes(
        cls,
        target: ImageArrays,
        blob: bytes,
        *,
        source_data: ImageArrays | None = None,
        source_class_names: Sequence[str] = (),
    ) -> TransferData:
        """A :class:`TransferData` whose source is the safetensors ``blob`` of a MetaModel artifact."""
        weights, model_config, algorithm = weights_from_bytes(blob)
        return cls(target, weights, model_config, algorithm, source_data, tuple(source_class_names))


@dataclass(frozen=True)
class BackboneShape:
    """The Conv4 backbone's size: channels in, filters, conv blocks, image side (pixels)."""

    in_channels: int
    hidden: int
    layers: int
    image_size: int


def source_backbone(data: TransferData) -> tuple[Conv4, BackboneShape]:
    """The source's Conv4 backbone (a new head-less ``Conv4``, source weights, eval mode) and its shape.

    Raises :class:`ConfigError` (field ``source_model``) when the weights do not load or the
    model has no Conv4 backbone, or its input size differs from the target's images.
    """
    try:
        model = load_model(data.source_weights, data.source_model_config)
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError("source_model", f"the source weights do not load: {exc}") from exc
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
    shape = BackboneShape(
        in_channels=convs[0].in_channels,
        hidden=convs[0].out_channels,
        layers=len(convs),
        image_size=int(data.source_model_config.get("image_size", 28)),
    )
    side = int(data.target.images.shape[1])
    if shape.in_channels != 1 or shape.image_size != side:
        raise ConfigError(
            "source_model",
            f"the source takes {shape.in_channels}-channel {shape.image_size}px images; "
            f"the target has 1-channel {side}px images",
        )
    backbone = Conv4(shape.in_channels, shape.hidden, shape.layers, shape.image_size, out_features=0)
    backbone.features.load_state_dict(features.state_dict())
    return backbone.eval(), shape


def weights_digest(weights: Mapping[str, Tensor]) -> str:
    """SHA-256 hex of the tensors (names, dtypes, shapes and bytes), independent of dict order."""
    h = hashlib.sha256()
    for name in sorted(weights):
        t = weights[name].detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()
