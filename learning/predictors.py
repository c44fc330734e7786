"""A catalog model ready to predict: weights parsed once, the net shared when predictions only read it.

Only reads: the model's row and its weights file. A weights file that cannot be read, does
not match its recorded sha256, or cannot make predictions raises ``InvalidInput`` saying so.
Pages that use many models at once go through :func:`each_usable`, which skips (and names)
a model whose weights fail, so one bad model never breaks the page for everyone.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, TypeVar

from torch import Tensor, nn

from learning.artifacts import artifact_read
from learning.engine import predict as engine
from learning.engine.checkpoints import CheckpointFormatError
from learning.engine.weights import load_model, weights_from_bytes
from learning.errors import InvalidInput
from learning.models import MetaModel

logger = logging.getLogger(__name__)

T = TypeVar("T")

UNUSABLE_WEIGHTS: tuple[type[BaseException], ...] = (
    InvalidInput,
    OSError,
    ValueError,
    RuntimeError,
    KeyError,
    TypeError,
    IndexError,
    MemoryError,
)
"""What using a model's weights may raise: they are untrusted input (an uploaded file whose
config, tensors and declared algorithm need not agree), so any of these means "this model
cannot be used", never "this page is broken"."""


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


@lru_cache(maxsize=16)
def _predictor(name: str, sha256: str) -> engine.Predictor:
    weights, config, algorithm = _weights(name, sha256)
    try:
        return engine.load_predictor(weights, config, algorithm)
    except engine.PredictError as exc:
        raise InvalidInput(exc.message) from exc


def predictor_load(*, model: MetaModel) -> engine.Predictor:
    """The model's net with its weights: built once and shared by every request when its
    predictions only read it (see ``Predictor.shareable``), else a fresh one per request."""
    if not model.weights_file:
        raise InvalidInput("this model has no weights file")
    cached = _predictor(model.weights_file, model.weights_sha256)
    if cached.shareable:
        return cached
    weights, config, algorithm = _parsed(model)
    return engine.load_predictor(weights, config, algorithm)


def input_kind(*, model: MetaModel) -> str:
    """What the model takes: ``"image"``, ``"text"`` or ``"function"``; ``InvalidInput`` if it cannot
    predict at all."""
    predict_kind(model=model)
    _, config, _ = _parsed(model)
    return engine.domain_of(config)


def fixed_ways(*, model: MetaModel) -> int | None:
    """How many labels the model's support sets must have (MAML-family heads), or None for any."""
    _, config, _ = _parsed(model)
    return engine.fixed_ways(config)


def net_load(*, model: MetaModel) -> nn.Module:
    """The model's net with its weights, in eval mode, on CPU; ``InvalidInput`` when they do not fit."""
    weights, config, algorithm = _parsed(model)
    if algorithm != model.algorithm:
        raise InvalidInput(f"this model's weights are of algorithm {algorithm!r}, not {model.algorithm!r}")
    try:
        return load_model(weights, config)
    except (ValueError, TypeError, KeyError) as exc:
        raise InvalidInput("this model's weights do not fit the net their config describes") from exc


@dataclass(frozen=True)
class SkippedModel:
    """A model that a page using many models left out, and why (in words fit to show the user)."""

    model: MetaModel
    reason: str


def each_usable(
    models: Iterable[MetaModel], use: Callable[[MetaModel], T]
) -> tuple[list[T], list[SkippedModel]]:
    """``use(model)`` for each model, and the models skipped because using them failed.

    A model whose weights cannot be read, parsed or used (see ``UNUSABLE_WEIGHTS``) is
    logged as a warning and skipped with its reason: ``InvalidInput``'s message, or for
    anything else only the kind of failure (its details, such as paths, stay in the log).
    """
    results: list[T] = []
    skipped: list[SkippedModel] = []
    for model in models:
        try:
            results.append(use(model))
        except UNUSABLE_WEIGHTS as exc:
            if isinstance(exc, InvalidInput):
                reason = exc.message
            else:
                reason = f"this model's weights failed when used ({type(exc).__name__})"
            logger.warning("model %s (%r) skipped: %s", model.pk, model.name, reason, exc_info=exc)
            skipped.append(SkippedModel(model=model, reason=reason))
    return results, skipped
