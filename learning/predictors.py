"""A catalog model ready to predict: its weights parsed once (and cached), a fresh net per request.

Only reads: the model's row and its weights file. A weights file that cannot be read, does
not match its recorded sha256, or cannot make predictions raises ``InvalidInput`` saying so.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import Any

from torch import Tensor

from learning.artifacts import artifact_read
from learning.engine import predict as engine
from learning.engine.checkpoints import CheckpointFormatError
from learning.engine.weights import weights_from_bytes
from learning.errors import InvalidInput
from learning.models import MetaModel


@lru_cache(maxsize=16)
def _weights(name: str, sha256: str) -> tuple[dict[str, Tensor], dict[str, Any], str]:
    """The parsed weights file (cached: a file's content never changes under its name and hash)."""
    try:
        blob = artifact_read(name)
    except OSError as exc:
        raise InvalidInput("this model's weights file cannot be read") from exc
    if sha256 and hashlib.sha256(blob).hexdigest() != sha256:
        raise InvalidInput("this model's weights file does not match its recorded sha256")
    try:
        return weights_from_bytes(blob)
    except CheckpointFormatError as exc:
        raise InvalidInput(f"this model's weights cannot make predictions: {exc}") from exc


def _parsed(model: MetaModel) -> tuple[dict[str, Tensor], dict[str, Any], str]:
    if not model.weights_file:
        raise InvalidInput("this model has no weights file")
    return _weights(model.weights_file, model.weights_sha256)


def predict_kind(*, model: MetaModel) -> str:
    """``"classification"`` or ``"regression"``; ``InvalidInput`` when the model cannot predict at all."""
    _, config, _ = _parsed(model)
    try:
        return engine.task_of(config)
    except engine.PredictError as exc:
        raise InvalidInput(exc.message) from exc


def predictor_load(*, model: MetaModel) -> engine.Predictor:
    """A fresh net with the model's weights (one per request: adaptation never shares state)."""
    weights, config, algorithm = _parsed(model)
    try:
        return engine.load_predictor(weights, config, algorithm)
    except engine.PredictError as exc:
        raise InvalidInput(exc.message) from exc


def fixed_ways(*, model: MetaModel) -> int | None:
    """How many labels the model's support sets must have (MAML-family heads), or None for any."""
    _, config, _ = _parsed(model)
    return engine.fixed_ways(config)
