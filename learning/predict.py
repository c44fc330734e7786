"""Predictions with a catalog model on a user's own examples: check the request, then ask the engine.

This module only reads (the model's row and weights); it writes no rows and no files,
so a failed or successful prediction leaves the database and artifact storage as they
were. Every problem with the input raises ``InvalidInput`` whose ``field`` names the
input (``support``, ``support_labels``, ``query``) and whose message names the problem.

Limits (also in the API docs): at most ``MAX_SUPPORT`` support and ``MAX_QUERY`` query
items, ``MAX_IMAGE_BYTES`` per image, images Pillow can verify in one of
``images.IMAGE_FORMATS``; at least two distinct labels, one label per support
image; finite numbers for regression, as many ``y`` as ``x`` values.

Images are normalized exactly as uploaded domains are (``images.normalize_image``:
28x28 grayscale, ink high), so a model sees predict inputs as it saw its training data.
An image whose header declares more than ``images.MAX_IMAGE_PIXELS`` pixels is
refused before it is decoded; a message names it by field, index and file name
(``query[3] big.png: image is 20000x20000 pixels, ...``). The model's weights are read
and cached by ``learning.predictors``; the "Try it" page's form is read by
``learning.predict_page``.
How each algorithm adapts to the support set, and how probabilities are computed, is
described in ``learning.engine.predict``. MAML-family regressors give a point prediction:
their ``std`` is null.

Views run these functions through ``learning.heavy_work.run_heavy``: decoding polls its
deadline between images, and the engine between inner steps, so an abandoned prediction
ends with ``heavy_work.DeadlineExceeded`` (or ``ClientGone``) instead of running on.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from learning.engine import predict as engine
from learning.errors import InvalidInput
from learning.heavy_work import raise_if_stopped, should_stop
from learning.images import THUMBNAIL_SIZE, normalize_image, thumbnail_png
from learning.models import MetaModel
from learning.predictors import fixed_ways, input_kind, predict_kind, predictor_load

MAX_SUPPORT = 100
MAX_QUERY = 500
MAX_IMAGE_BYTES = 1024 * 1024
MAX_LABEL_LENGTH = 100

CLASSIFICATION = engine.CLASSIFICATION
REGRESSION = engine.REGRESSION


class Upload(Protocol):
    """What the views pass in: a Django ``UploadedFile`` (a name, a size and ``read()``)."""

    name: str | None
    size: int | None

    def read(self, size: int = -1) -> bytes: ...


# --- Classification --------------------------------------------------------------------


@dataclass(frozen=True)
class ClassificationResult:
    """Probabilities ``(Q, N)`` over ``labels`` for each query, with the images the model saw."""

    model: MetaModel
    labels: list[str]
    probabilities: np.ndarray
    query_names: list[str]
    query_images: np.ndarray
    support_images: np.ndarray
    support_label_index: np.ndarray
    """The label of each support image, as an index into ``labels``."""

    def as_dict(self) -> dict[str, Any]:
        """The API's response body: predictions in query order."""
        return {
            "model": self.model.pk,
            "algorithm": self.model.algorithm,
            "task": CLASSIFICATION,
            "labels": self.labels,
            "predictions": prediction_dicts(self.query_names, self.labels, self.probabilities),
        }

    def support_gallery(self) -> list[tuple[str, list[str]]]:
        """For the page: each label with its support images as the model saw them (PNG data URIs)."""
        return [
            (label, [png_data_uri(img) for img in self.support_images[self.support_label_index == i]])
            for i, label in enumerate(self.labels)
        ]

    def rows(self, top: int = 3) -> list[dict[str, Any]]:
        """For the page: each query's name, thumbnail (a PNG data URI), label and top probabilities."""
        return [
            {"name": name, "thumbnail": png_data_uri(image), **ranked(self.labels, row, top)}
            for name, image, row in zip(self.query_names, self.query_images, self.probabilities, strict=True)
        ]


def prediction_dicts(queries: Sequence[str], labels: list[str], probabilities: np.ndarray) -> list[dict]:
    """The API's predictions in query order: each query's name, its label and every label's probability."""
    return [
        {
            "query": query,
            "label": labels[int(row.argmax())],
            "probabilities": {label: float(p) for label, p in zip(labels, row, strict=True)},
        }
        for query, row in zip(queries, probabilities, strict=True)
    ]


def ranked(labels: list[str], row: np.ndarray, top: int) -> dict[str, Any]:
    """For a page: the ``label`` of one query's probabilities ``row`` and its ``top`` (label, p) pairs."""
    order = np.argsort(-row, kind="stable")[:top]
    return {"label": labels[int(order[0])], "top": [(labels[int(i)], float(row[i])) for i in order]}


def png_data_uri(image: np.ndarray, *, size: int = THUMBNAIL_SIZE) -> str:
    """One ink-high image as a ``size`` x ``size`` PNG (``images.thumbnail_png``) in a data URI."""
    return "data:image/png;base64," + base64.b64encode(thumbnail_png(image, size=size)).decode()


def read_images(uploads: Sequence[Upload], *, field: str) -> tuple[np.ndarray, list[str]]:
    """Read and normalize ``uploads``; sizes are checked before anything is read.

    Returns the images and their names (the file names, or ``"<field> <n>"``). Messages
    name each file by field and index too: ``"query[3] cat.png"``.
    """
    names = [upload.name or f"{field} {n + 1}" for n, upload in enumerate(uploads)]
    labels = [
        f"{field}[{n}] {upload.name}" if upload.name else f"{field}[{n}]" for n, upload in enumerate(uploads)
    ]
    for label, upload in zip(labels, uploads, strict=True):
        if upload.size is not None and upload.size > MAX_IMAGE_BYTES:
            raise InvalidInput(f"{label} is larger than {MAX_IMAGE_BYTES // 1024} KiB", field=field)
    images = []
    for label, upload in zip(labels, uploads, strict=True):
        raise_if_stopped()
        data = upload.read(MAX_IMAGE_BYTES + 1)
        if len(data) > MAX_IMAGE_BYTES:
            raise InvalidInput(f"{label} is larger than {MAX_IMAGE_BYTES // 1024} KiB", field=field)
        try:
            images.append(normalize_image(data, name=label))
        except InvalidInput as exc:
            raise InvalidInput(exc.message, field=field) from exc
    return np.stack(images), names


def label_indices(support_labels: Sequence[Any], count: int) -> tuple[list[str], list[int]]:
    """``(distinct labels in first-seen order, index of each support's label)``."""
    if len(support_labels) != count:
        raise InvalidInput(
            f"{len(support_labels)} labels for {count} support images: give one label per image, in order",
            field="support_labels",
        )
    names: list[str] = []
    for raw in support_labels:
        label = raw.strip() if isinstance(raw, str) else None
        if not label:
            raise InvalidInput("every support label must be a non-empty string", field="support_labels")
        if len(label) > MAX_LABEL_LENGTH:
            raise InvalidInput(f"labels are at most {MAX_LABEL_LENGTH} characters", field="support_labels")
        names.append(label)
    distinct = list(dict.fromkeys(names))
    if len(distinct) < 2:
        raise InvalidInput("the support set needs at least 2 distinct labels", field="support_labels")
    index = {label: n for n, label in enumerate(distinct)}
    return distinct, [index[label] for label in names]


def predict_classification(
    *, model: MetaModel, support: Sequence[Upload], support_labels: Sequence[Any], query: Sequence[Upload]
) -> ClassificationResult:
    """Label each ``query`` image given the labeled ``support`` images; raises ``InvalidInput``."""
    kind = input_kind(model=model)
    if kind != "image":
        raise InvalidInput(
            "this model classifies texts: send JSON support texts with labels and query texts"
            if kind == "text"
            else "this model predicts functions: send support x and y and query x instead"
        )
    if not support:
        raise InvalidInput("at least 2 support images (with labels) are required", field="support")
    if len(support) > MAX_SUPPORT:
        raise InvalidInput(f"at most {MAX_SUPPORT} support images, got {len(support)}", field="support")
    if not query:
        raise InvalidInput("at least one query image is required", field="query")
    if len(query) > MAX_QUERY:
        raise InvalidInput(f"at most {MAX_QUERY} query images, got {len(query)}", field="query")
    labels, label_index = label_indices(support_labels, len(support))
    check_ways(model, labels)
    support_images, _ = read_images(support, field="support")
    query_images, query_names = read_images(query, field="query")
    predictor = predictor_load(model=model)
    try:
        probabilities = engine.classify(
            predictor, support_images, label_index, query_images, should_stop=should_stop
        )
    except engine.PredictStopped:
        raise_if_stopped()
        raise
    except engine.PredictError as exc:
        raise InvalidInput(exc.message, field=exc.field) from exc
    return ClassificationResult(
        model, labels, probabilities, query_names, query_images, support_images, np.asarray(label_index)
    )


def check_ways(model: MetaModel, labels: list[str]) -> None:
    ways = fixed_ways(model=model)
    if ways is not None and len(labels) != ways:
        raise InvalidInput(
            f"this {model.algorithm} model was trained {ways}-way: its output layer has {ways} classes, "
            f"so the support set needs exactly {ways} distinct labels, got {len(labels)}",
            field="support_labels",
        )


# --- Regression ------------------------------------------------------------------------


@dataclass(frozen=True)
class RegressionResult:
    """Predictive ``mean`` (and ``std``, None for point predictors) at each query ``x``."""

    model: MetaModel
    x: list[float]
    mean: list[float]
    std: list[float] | None

    def as_dict(self) -> dict[str, Any]:
        """The API's response body: predictions in query order; ``std`` null without uncertainty."""
        stds = self.std or [None] * len(self.x)
        return {
            "model": self.model.pk,
            "algorithm": self.model.algorithm,
            "task": REGRESSION,
            "predictions": [
                {"x": x, "mean": m, "std": s} for x, m, s in zip(self.x, self.mean, stds, strict=True)
            ],
        }

    def rows(self) -> list[dict[str, Any]]:
        """For the page: ``x``, ``mean`` and ``std`` per query point."""
        return self.as_dict()["predictions"]


def _numbers(values: Any, *, field: str, limit: int) -> list[float]:
    if not isinstance(values, list | tuple):
        raise InvalidInput(f"{field} must be a list of numbers", field=field.split(".")[0])
    if len(values) > limit:
        raise InvalidInput(f"{field} has {len(values)} values; at most {limit}", field=field.split(".")[0])
    if any(isinstance(v, bool) or not isinstance(v, int | float) for v in values):
        raise InvalidInput(f"{field} must hold numbers only", field=field.split(".")[0])
    numbers = [float(v) for v in values]
    if not engine.is_finite_float32(numbers):
        raise InvalidInput(
            f"{field} must hold finite numbers (no NaN or infinity)", field=field.split(".")[0]
        )
    return numbers


def predict_regression(*, model: MetaModel, support_x: Any, support_y: Any, query_x: Any) -> RegressionResult:
    """The function at ``query_x`` predicted from the points ``(support_x, support_y)``; ``InvalidInput``."""
    if predict_kind(model=model) != REGRESSION:
        raise InvalidInput(
            "this model classifies images: send support images, support_labels and query images"
        )
    xs = _numbers(support_x, field="support.x", limit=MAX_SUPPORT)
    ys = _numbers(support_y, field="support.y", limit=MAX_SUPPORT)
    xq = _numbers(query_x, field="query.x", limit=MAX_QUERY)
    if not xs:
        raise InvalidInput("the support needs at least one (x, y) point", field="support")
    if len(xs) != len(ys):
        raise InvalidInput(
            f"support.x has {len(xs)} values but support.y has {len(ys)}: they must be the same length",
            field="support",
        )
    if not xq:
        raise InvalidInput("at least one query x is required", field="query")
    predictor = predictor_load(model=model)
    try:
        mean, std = engine.regress(predictor, xs, ys, xq, should_stop=should_stop)
    except engine.PredictStopped:
        raise_if_stopped()
        raise
    except engine.PredictError as exc:
        raise InvalidInput(exc.message, field=exc.field) from exc
    return RegressionResult(model, xq, mean.tolist(), None if std is None else std.tolist())


def regression_payload(payload: Any) -> dict[str, Any]:
    """``{"support": {"x", "y"}, "query": {"x"}}`` as keyword arguments of :func:`predict_regression`."""
    if not isinstance(payload, Mapping):
        raise InvalidInput('send a JSON object {"support": {"x": [...], "y": [...]}, "query": {"x": [...]}}')
    support, query = payload.get("support"), payload.get("query")
    if not isinstance(support, Mapping) or "x" not in support or "y" not in support:
        raise InvalidInput('"support" must be an object with "x" and "y" lists', field="support")
    if not isinstance(query, Mapping) or "x" not in query:
        raise InvalidInput('"query" must be an object with an "x" list', field="query")
    return {"support_x": support["x"], "support_y": support["y"], "query_x": query["x"]}
