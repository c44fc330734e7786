"""The ``model_config`` a weights file carries, declared once per architecture.

A weights file can come from anyone (``POST /api/v1/models/``), so the config stored in it
is untrusted input like a job's config: :func:`parse_model_config` checks it against these
declarations before a net is built from it. The size bounds are the ones a job's config
has: the algorithms' settings use the same declarations (``CONV_HIDDEN``, ``MLP_HIDDEN``,
:class:`NPNetSection`, ...), so no stored config describes a net that no job could train.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from learning.engine.config import ConfigError
from learning.engine.nets import TEXT_ARCH, TEXT_TRANSFER_ARCH
from learning.engine.neural_process_nets import ARCH as NP_ARCH
from learning.engine.params import Param, as_dict, param, parse
from learning.engine.statistician_nets import ARCH as STATISTICIAN_ARCH

CONV_HIDDEN = Param(minimum=1, maximum=1024, help="channels of every conv block")
CONV_LAYERS = Param(minimum=1, maximum=6, help="conv blocks")
MLP_HIDDEN = Param(
    minimum=1, maximum=1024, distinct=False, min_items=1, max_items=8, help="widths of the hidden layers"
)
EVAL_INNER_LR = Param(
    minimum=0.0, exclusive_minimum=True, maximum=100.0, help="adaptation step size when the model is used"
)
EVAL_INNER_STEPS = Param(minimum=1, maximum=100, help="adaptation steps when the model is used")
CLASSES = Param(minimum=1, maximum=100_000, help="outputs of a classifier")
IN_CHANNELS = Param(minimum=1, maximum=4, help="channels of the input images")
IMAGE_SIDE = Param(minimum=1, maximum=512, help="side of the (square) input images, pixels")
FEATURES = Param(minimum=1, maximum=64, help="input or output size of a function")
EMBEDDING_FEATURES = Param(minimum=1, maximum=4096, help="size of a text embedding")


@dataclass(frozen=True)
class AdaptSection:
    """How a MAML-family model adapts to a support set when it is used."""

    inner_lr: float = EVAL_INNER_LR.field(0.4)
    inner_steps: int = EVAL_INNER_STEPS.field(1)


@dataclass(frozen=True)
class ConvBackbone:
    """The Conv4 backbone every image model has."""

    in_channels: int = IN_CHANNELS.field(1)
    image_size: int = IMAGE_SIDE.field(28)
    hidden: int = CONV_HIDDEN.field(64)
    layers: int = CONV_LAYERS.field(4)


@dataclass(frozen=True)
class Conv4Model(ConvBackbone):
    """A Conv4 (``head``: ``none`` for embeddings, ``linear`` for logits, ``siamese``)."""

    arch: str = param("conv4", choices=("conv4",))
    head: str = param("none", choices=("none", "linear", "siamese"))
    out_features: int = param(0, minimum=0, maximum=CLASSES.maximum)
    adapt: AdaptSection | None = param(None, help="adaptation settings (MAML family)")

    def check(self) -> None:
        if (self.head == "linear") != (self.out_features > 0):
            raise ConfigError(
                "model_config.out_features",
                f"must be >= 1 for a linear head and 0 otherwise, got {self.out_features}",
            )


@dataclass(frozen=True)
class TransferNetModel(ConvBackbone):
    """A Conv4 backbone with a linear classifier over a transfer run's classes."""

    arch: str = param("conv4_transfer", choices=("conv4_transfer",))
    classes: int = CLASSES.field(1)


@dataclass(frozen=True)
class MLPModel:
    """A ReLU MLP on function values."""

    arch: str = param("mlp", choices=("mlp",))
    in_features: int = FEATURES.field(1)
    hidden: tuple[int, ...] = MLP_HIDDEN.field((40, 40))
    out_features: int = FEATURES.field(1)
    adapt: AdaptSection | None = param(None, help="adaptation settings (MAML family)")


@dataclass(frozen=True)
class TextMLPModel:
    """An MLP over frozen sentence embeddings (``head``: ``none`` for embeddings, ``linear`` for logits)."""

    arch: str = param(TEXT_ARCH, choices=(TEXT_ARCH,))
    in_features: int = EMBEDDING_FEATURES.field(384)
    hidden: tuple[int, ...] = MLP_HIDDEN.field((256,))
    head: str = param("none", choices=("none", "linear"))
    out_features: int = param(0, minimum=0, maximum=CLASSES.maximum)
    adapt: AdaptSection | None = param(None, help="adaptation settings (MAML family)")

    def check(self) -> None:
        if (self.head == "linear") != (self.out_features > 0):
            raise ConfigError(
                "model_config.out_features",
                f"must be >= 1 for a linear head and 0 otherwise, got {self.out_features}",
            )


@dataclass(frozen=True)
class TextTransferNetModel:
    """An MLP backbone over sentence embeddings with a linear classifier over a transfer run's classes."""

    arch: str = param(TEXT_TRANSFER_ARCH, choices=(TEXT_TRANSFER_ARCH,))
    in_features: int = EMBEDDING_FEATURES.field(384)
    hidden: tuple[int, ...] = MLP_HIDDEN.field((256,))
    final_relu: bool = param(False, help="a ReLU after the backbone's last layer (a MAML-family body)")
    classes: int = CLASSES.field(1)


@dataclass(frozen=True)
class NPNetSection:
    """The networks of a Neural Process (:class:`NPConfig` without ``kind`` and the data's sizes)."""

    hidden: int = param(128, minimum=1, maximum=1024, help="width of every hidden layer and of r")
    encoder_layers: int = param(3, minimum=1, maximum=16)
    decoder_layers: int = param(3, minimum=1, maximum=16)
    latent_dim: int = param(64, minimum=1, maximum=1024, help="size of z (np only)")
    deterministic_path: bool = param(False, help="np only: also feed the deterministic r to the decoder")
    min_std: float = param(
        0.01, minimum=0.0, exclusive_minimum=True, maximum=0.999, help="floor of the predictive std"
    )


@dataclass(frozen=True)
class NeuralProcessModel(NPNetSection):
    """A Conditional (``cnp``) or latent (``np``) Neural Process."""

    arch: str = param(NP_ARCH, choices=(NP_ARCH,))
    kind: str = param("cnp", choices=("cnp", "np"))
    x_dim: int = FEATURES.field(1)
    y_dim: int = FEATURES.field(1)


@dataclass(frozen=True)
class StatisticianNetSection:
    """The sizes of a Neural Statistician's networks beyond its Conv4 encoder."""

    context_dim: int = param(64, minimum=1, maximum=1024, help="size of the set summary c")
    latent_dim: int = param(16, minimum=1, maximum=1024, help="size of each image's latent z")
    mlp_hidden: int = param(256, minimum=1, maximum=4096, help="width of the MLPs")


@dataclass(frozen=True)
class StatisticianModel(ConvBackbone, StatisticianNetSection):
    """A Neural Statistician on images."""

    arch: str = param(STATISTICIAN_ARCH, choices=(STATISTICIAN_ARCH,))


MODEL_CONFIGS: dict[str, type] = {
    "conv4": Conv4Model,
    "conv4_transfer": TransferNetModel,
    "mlp": MLPModel,
    TEXT_ARCH: TextMLPModel,
    TEXT_TRANSFER_ARCH: TextTransferNetModel,
    NP_ARCH: NeuralProcessModel,
    STATISTICIAN_ARCH: StatisticianModel,
}
"""``arch`` -> the declaration of its ``model_config``; every architecture a saved model can have."""


def parse_model_config(config: Any) -> dict[str, Any]:
    """``config`` checked against its architecture's declaration, defaults filled (an absent
    ``adapt`` stays absent).

    Raises :class:`ConfigError` naming the field (``model_config.hidden``) and the bad value.
    """
    if not isinstance(config, Mapping):
        raise ConfigError("model_config", f"must be an object, got {type(config).__name__}")
    arch = config.get("arch")
    declaration = MODEL_CONFIGS.get(arch) if isinstance(arch, str) else None
    if declaration is None:
        raise ConfigError("model_config.arch", f"must be one of {sorted(MODEL_CONFIGS)}, got {arch!r}")
    parsed = as_dict(parse(declaration, config, prefix="model_config"))
    if parsed.get("adapt", 0) is None:
        del parsed["adapt"]
    return parsed


__all__ = [
    "CONV_HIDDEN",
    "CONV_LAYERS",
    "EVAL_INNER_LR",
    "EVAL_INNER_STEPS",
    "MLP_HIDDEN",
    "MODEL_CONFIGS",
    "AdaptSection",
    "NPNetSection",
    "StatisticianNetSection",
    "TextMLPModel",
    "TextTransferNetModel",
    "parse_model_config",
]
