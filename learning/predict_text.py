"""Predictions with a text model on a user's own labeled texts: check the request, embed, ask the engine.

Like ``learning.predict`` (which holds the shared limits and label checks), this only
reads and stores nothing; every problem raises ``InvalidInput`` naming the field
(``support``, ``support_labels``, ``query``). Texts are embedded by the frozen sentence
encoder that embedded the model's training domain (``learning.engine.text_encoder``),
loaded once per process (seconds, the first time).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from learning.engine import predict as engine
from learning.errors import InvalidInput
from learning.heavy_work import raise_if_stopped, should_stop
from learning.models import MetaModel
from learning.predict import (
    CLASSIFICATION,
    MAX_QUERY,
    MAX_SUPPORT,
    check_ways,
    label_indices,
    prediction_dicts,
    ranked,
)
from learning.predictors import input_kind, predictor_load
from learning.text_files import MAX_TEXT_CHARS


@dataclass(frozen=True)
class TextClassificationResult:
    """Probabilities ``(Q, N)`` over ``labels`` for each query text."""

    model: MetaModel
    labels: list[str]
    probabilities: np.ndarray
    queries: list[str]

    def as_dict(self) -> dict[str, Any]:
        """The API's response body: predictions in query order, each naming its query text."""
        return {
            "model": self.model.pk,
            "algorithm": self.model.algorithm,
            "task": CLASSIFICATION,
            "labels": self.labels,
            "predictions": prediction_dicts(self.queries, self.labels, self.probabilities),
        }

    def rows(self, top: int = 3) -> list[dict[str, Any]]:
        """For the page: each query text, its label and top probabilities."""
        return [
            {"name": text, **ranked(self.labels, row, top)}
            for text, row in zip(self.queries, self.probabilities, strict=True)
        ]


def _texts(values: Any, *, field: str, limit: int) -> list[str]:
    if not isinstance(values, list | tuple):
        raise InvalidInput(f"{field} must be a list of texts", field=field)
    if len(values) > limit:
        raise InvalidInput(f"at most {limit} {field} texts, got {len(values)}", field=field)
    texts = []
    for n, value in enumerate(values):
        text = value.strip() if isinstance(value, str) else None
        if not text:
            raise InvalidInput(f"{field}[{n}] must be a non-empty text", field=field)
        if len(text) > MAX_TEXT_CHARS:
            raise InvalidInput(f"{field}[{n}] is longer than {MAX_TEXT_CHARS} characters", field=field)
        texts.append(text)
    return texts


def predict_text_classification(
    *, model: MetaModel, support: Sequence[Any], support_labels: Sequence[Any], query: Sequence[Any]
) -> TextClassificationResult:
    """Label each ``query`` text given the labeled ``support`` texts; raises ``InvalidInput``.

    Texts are embedded by the same frozen sentence encoder as the model's training domain
    (loaded once per process, seconds the first time).
    """
    # The encoder's libraries take seconds to import: only text predictions pay for them.
    from learning.engine.text_encoder import EmbeddingStopped, embed_texts

    if input_kind(model=model) != "text":
        raise InvalidInput("this model does not classify texts", field="support")
    support_texts = _texts(support, field="support", limit=MAX_SUPPORT)
    query_texts = _texts(query, field="query", limit=MAX_QUERY)
    if not support_texts:
        raise InvalidInput("at least 2 support texts (with labels) are required", field="support")
    if not query_texts:
        raise InvalidInput("at least one query text is required", field="query")
    labels, label_index = label_indices(support_labels, len(support_texts))
    check_ways(model, labels)
    try:
        embeddings = embed_texts(support_texts + query_texts, should_stop=should_stop)
    except EmbeddingStopped:
        raise_if_stopped()
        raise
    predictor = predictor_load(model=model)
    try:
        probabilities = engine.classify(
            predictor,
            embeddings[: len(support_texts)],
            label_index,
            embeddings[len(support_texts) :],
            should_stop=should_stop,
        )
    except engine.PredictStopped:
        raise_if_stopped()
        raise
    except engine.PredictError as exc:
        raise InvalidInput(exc.message, field=exc.field) from exc
    return TextClassificationResult(model, labels, probabilities, query_texts)


def text_payload(payload: Any) -> dict[str, Any]:
    """``{"support": [{"text", "label"}, ...], "query": [text, ...]}`` as keyword arguments of
    :func:`predict_text_classification`."""
    if not isinstance(payload, Mapping):
        raise InvalidInput('send a JSON object {"support": [{"text": ..., "label": ...}], "query": [...]}')
    support, query = payload.get("support"), payload.get("query")
    if not isinstance(support, list) or not all(isinstance(s, Mapping) for s in support):
        raise InvalidInput('"support" must be a list of {"text": ..., "label": ...} objects', field="support")
    return {
        "support": [s.get("text") for s in support],
        "support_labels": [s.get("label") for s in support],
        "query": query,
    }
