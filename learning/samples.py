"""New images of a class drawn by a generative model (the Neural Statistician) from a user's examples.

Like ``learning.predict``, this only reads (the model's row and weights) and stores
nothing. The user's support images are checked and normalized by ``predict.read_images``
(the same limits as a prediction's); all of them are taken to show one class, which the
model summarizes into its context ``c`` before drawing each new image. Problems raise
``InvalidInput`` naming the field (``support``, ``count``, ``seed``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from learning.engine import predict as engine
from learning.engine.data import IMAGE_SIZE
from learning.errors import InvalidInput
from learning.heavy_work import raise_if_stopped
from learning.models import MetaModel
from learning.predict import Upload, png_data_uri, read_images
from learning.predictors import predictor_load

MAX_SUPPORT = 20
"""Examples of the one class a request may send."""
MAX_COUNT = 32
DEFAULT_COUNT = 8
MAX_SEED = 2**31 - 1


@dataclass(frozen=True)
class SamplesResult:
    """``samples`` ``(count, 28, 28)`` uint8 drawn with ``seed`` from ``support`` ``(S, 28, 28)``."""

    model: MetaModel
    seed: int
    support: np.ndarray
    samples: np.ndarray

    def as_dict(self) -> dict[str, Any]:
        """The API's response body: each sample as a 28x28 grayscale PNG data URI (ink dark)."""
        return {
            "model": self.model.pk,
            "algorithm": self.model.algorithm,
            "seed": self.seed,
            "count": len(self.samples),
            "samples": [png_data_uri(image, size=IMAGE_SIZE) for image in self.samples],
        }

    def support_thumbnails(self) -> list[str]:
        """For the page: the examples as the model saw them (PNG data URIs)."""
        return [png_data_uri(image) for image in self.support]

    def sample_thumbnails(self) -> list[str]:
        """For the page: the drawn images (PNG data URIs)."""
        return [png_data_uri(image) for image in self.samples]


def is_generative(model: MetaModel) -> bool:
    """Whether ``model``'s architecture draws samples (from its row; its weights are checked on use)."""
    return bool(model.weights_file) and engine.can_sample({"arch": model.architecture})


def bounded_int(value: Any, *, field: str, low: int, high: int, default: int) -> int:
    """``value`` (a form or JSON value; empty means ``default``) as an int in ``[low, high]``, else
    ``InvalidInput`` naming ``field``."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InvalidInput(f"{field} must be a whole number", field=field)
    try:
        number = int(value)
    except ValueError as exc:
        raise InvalidInput(f"{field} must be a whole number, got {str(value)[:20]!r}", field=field) from exc
    if not low <= number <= high:
        raise InvalidInput(f"{field} must be between {low} and {high}, got {number}", field=field)
    return number


def draw_samples(*, model: MetaModel, support: Sequence[Upload], count: Any, seed: Any) -> SamplesResult:
    """``count`` new images of the class the ``support`` images show; raises ``InvalidInput``."""
    count = bounded_int(count, field="count", low=1, high=MAX_COUNT, default=DEFAULT_COUNT)
    seed = bounded_int(seed, field="seed", low=0, high=MAX_SEED, default=0)
    predictor = predictor_load(model=model)
    if not engine.can_sample(predictor.model_config):
        raise InvalidInput(
            f"this {model.algorithm} model does not draw samples: only Neural Statistician models do"
        )
    if not support:
        raise InvalidInput("choose at least one image of the class to draw", field="support")
    if len(support) > MAX_SUPPORT:
        raise InvalidInput(f"at most {MAX_SUPPORT} images of the class, got {len(support)}", field="support")
    images, _ = read_images(support, field="support")
    raise_if_stopped()
    try:
        samples = engine.sample(predictor, images, count, seed)
    except engine.PredictError as exc:
        raise InvalidInput(exc.message, field=exc.field) from exc
    return SamplesResult(model, seed, images, samples)
