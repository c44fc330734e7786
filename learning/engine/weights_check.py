"""A weights file from outside, checked from its header alone before anything is built from it.

``POST /api/v1/models/`` stores files that anyone made; :func:`check_weights_file` decides
whether one is a model this site can use, reading only the safetensors header (no tensor
is loaded and no net allocated):

- it is a MetaKB weights file (``format`` ``metakb-weights/1``, with ``model_config`` and
  ``algorithm`` in its metadata);
- its ``model_config`` passes :func:`learning.engine.model_configs.parse_model_config`,
  with the bounds a job's config has;
- its algorithm is the one declared, is registered for the architecture's kind of data,
  and saves models of this shape (the registry entry's ``model`` and ``adapts``);
- its tensors are exactly the net's: the net is built on the ``meta`` device (shapes, no
  memory) and every name, shape and dtype must match.
"""

from __future__ import annotations

from typing import Any

import torch

from learning.engine.algorithms import REGISTRY
from learning.engine.checkpoints import read_blob_header
from learning.engine.config import ConfigError
from learning.engine.model_configs import parse_model_config
from learning.engine.nets import build_model
from learning.engine.weights import WEIGHTS_FORMAT

DOMAIN_OF_ARCH = {
    "conv4": "image",
    "conv4_transfer": "image",
    "mlp": "function",
    "neural_process": "function",
    "statistician": "image",
    "text_mlp": "text",
    "text_transfer": "text",
}
"""The kind of data each architecture's models take."""

_SAFETENSORS_DTYPES = {torch.float32: "F32", torch.float64: "F64", torch.float16: "F16", torch.int64: "I64"}


def check_weights_file(blob: bytes, *, algorithm: str, architecture: str) -> dict[str, Any]:
    """The parsed ``model_config`` of ``blob``, a weights file declared as ``algorithm`` on
    ``architecture``.

    Raises :class:`ConfigError` whose ``field`` is ``weights`` (the file itself or its
    tensors), ``model_config.<setting>``, ``algorithm`` or ``architecture``.
    """
    try:
        tensors, metadata = read_blob_header(blob, fmt=WEIGHTS_FORMAT)
    except ValueError as exc:
        raise ConfigError(
            "weights", f"not a MetaKB weights file ({exc}); write one with weights_to_bytes"
        ) from exc
    config = parse_model_config(metadata.get("model_config"))
    saved_algorithm = metadata.get("algorithm")
    if saved_algorithm != algorithm:
        raise ConfigError("algorithm", f"the weights file says {saved_algorithm!r}, not {algorithm!r}")
    if config["arch"] != architecture:
        raise ConfigError("architecture", f"the weights file says {config['arch']!r}, not {architecture!r}")
    _check_algorithm_saves(algorithm, config)
    _check_tensors(tensors, config)
    return config


def _check_algorithm_saves(algorithm: str, config: dict[str, Any]) -> None:
    domain = DOMAIN_OF_ARCH[config["arch"]]
    entry = REGISTRY.get((algorithm, domain))
    if entry is None:
        known = sorted(name for name, d in REGISTRY if d == domain)
        raise ConfigError(
            "algorithm", f"{algorithm!r} has no models of architecture {config['arch']!r}; known: {known}"
        )
    for key, value in entry.model.items():
        if config.get(key) != value:
            raise ConfigError(
                f"model_config.{key}",
                f"{algorithm} models have {key} {value!r}, but the weights file says {config.get(key)!r}",
            )
    if entry.adapts and "adapt" not in config:
        raise ConfigError("model_config.adapt", f"{algorithm} models record their adaptation settings")


def _check_tensors(tensors: dict[str, tuple[str, tuple[int, ...]]], config: dict[str, Any]) -> None:
    try:
        with torch.device("meta"):
            expected = build_model(config).state_dict()
    except ValueError as exc:
        raise ConfigError("model_config", str(exc)) from exc
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise ConfigError(
            "weights", f"the tensors do not fit the model_config: missing {missing}, unexpected {unexpected}"
        )
    for name, tensor in expected.items():
        dtype, shape = tensors[name]
        want = (_SAFETENSORS_DTYPES.get(tensor.dtype, str(tensor.dtype)), tuple(tensor.shape))
        if (dtype, shape) != want:
            raise ConfigError(
                "weights",
                f"tensor {name!r} is {dtype} {list(shape)}; the model_config needs {want[0]} {list(want[1])}",
            )
