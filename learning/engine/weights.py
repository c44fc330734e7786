"""Trained weights as safetensors bytes, with the model config and algorithm in the header.

The file is what a MetaModel artifact stores: ``weights_to_bytes`` writes the tensors
and JSON metadata (``format``, ``model_config``, ``algorithm``); ``weights_from_bytes``
reads them back without unpickling anything; ``load_model`` rebuilds the net.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from learning.engine.checkpoints import CheckpointFormatError, pack_blob, unpack_blob
from learning.engine.model_configs import parse_model_config
from learning.engine.nets import build_model

WEIGHTS_FORMAT = "metakb-weights/1"

__all__ = ["WEIGHTS_FORMAT", "build_model", "load_model", "weights_from_bytes", "weights_to_bytes"]


def weights_to_bytes(weights: Mapping[str, Tensor], model_config: Mapping[str, Any], algorithm: str) -> bytes:
    """Safetensors bytes of ``weights`` (on CPU) with ``model_config`` and ``algorithm`` as metadata."""
    return pack_blob(
        weights, {"model_config": dict(model_config), "algorithm": algorithm}, fmt=WEIGHTS_FORMAT
    )


def weights_from_bytes(blob: bytes) -> tuple[dict[str, Tensor], dict[str, Any], str]:
    """``(weights on CPU, model_config, algorithm)`` from bytes written by :func:`weights_to_bytes`.

    Raises :class:`CheckpointFormatError` (a ``ValueError``) for anything else.
    """
    tensors, meta = unpack_blob(blob, fmt=WEIGHTS_FORMAT)
    config = meta.get("model_config")
    algorithm = meta.get("algorithm")
    if not isinstance(config, dict) or not isinstance(algorithm, str):
        raise CheckpointFormatError("weights file lacks model_config or algorithm metadata")
    return tensors, config, algorithm


def load_model(weights: Mapping[str, Tensor], model_config: Mapping[str, Any]) -> nn.Module:
    """The net of ``model_config`` with (copies of) ``weights``, in eval mode, on CPU.

    A stored ``model_config`` is untrusted: it is checked against its declaration first
    (:func:`parse_model_config`), and the net is built on the ``meta`` device, so nothing
    is allocated for it beyond the copies of ``weights`` it takes. Raises ``ValueError``
    (a :class:`ConfigError` for the config) when the weights do not fit.
    """
    config = parse_model_config(model_config)
    with torch.device("meta"):
        model = build_model(config)
    try:
        model.load_state_dict({k: v.detach().clone() for k, v in weights.items()}, strict=True, assign=True)
    except RuntimeError as exc:
        raise ValueError(f"weights do not match model config {config}: {exc}") from exc
    return model.eval()
