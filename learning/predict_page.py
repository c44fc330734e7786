"""The "Try it" page of a model: its form's rows and values, and a prediction from its post.

Image classifiers get label rows (``label_<i>``, with image files ``support_<i>``) and
query files; text classifiers get label rows with a text area of examples
(``examples_<i>``, one per line) and a text area of queries (``query_texts``, one per
line); regression models get x / y text areas. The prediction itself, its
checks and its limits are ``learning.predict``'s.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from learning.errors import InvalidInput
from learning.models import MetaModel
from learning.predict import (
    CLASSIFICATION,
    MAX_IMAGE_BYTES,
    MAX_QUERY,
    MAX_SUPPORT,
    ClassificationResult,
    RegressionResult,
    Upload,
    predict_classification,
    predict_regression,
)
from learning.predict_text import TextClassificationResult, predict_text_classification
from learning.predictors import fixed_ways, input_kind, predict_kind

MAX_ROWS = MAX_SUPPORT
"""Label rows the "Try it" form reads (one label per row; a row may hold several images)."""
DEFAULT_ROWS = 5

_SEPARATORS = re.compile(r"[\s,;]+")


def numbers_from_text(text: str, *, field: str) -> list[Any]:
    """Numbers typed in a text area (separated by commas, spaces or new lines); ``InvalidInput`` if not."""
    out: list[Any] = []
    for token in _SEPARATORS.split(text.strip()):
        if not token:
            continue
        try:
            out.append(float(token))
        except ValueError as exc:
            raise InvalidInput(
                f"{token[:20]!r} in {field} is not a number", field=field.split(".")[0]
            ) from exc
    return out


def support_from_rows(
    post: Mapping[str, Any], files: Any, *, rows: int = MAX_ROWS
) -> tuple[list[Upload], list[str]]:
    """The "Try it" form's label rows (``label_<i>``, files ``support_<i>``) as support images and labels."""
    support: list[Upload] = []
    labels: list[str] = []
    for i in range(rows):
        label = str(post.get(f"label_{i}", "")).strip()
        chosen = files.getlist(f"support_{i}")
        if not label and not chosen:
            continue
        if not chosen:
            raise InvalidInput(
                f"choose at least one image for label {label!r} (row {i + 1})", field="support"
            )
        if not label:
            raise InvalidInput(f"name the label of the images in row {i + 1}", field="support_labels")
        support += chosen
        labels += [label] * len(chosen)
    return support, labels


def texts_from_rows(post: Mapping[str, Any], *, rows: int = MAX_ROWS) -> tuple[list[str], list[str]]:
    """The text form's label rows (``label_<i>``, ``examples_<i>`` one per line) as texts and labels."""
    texts: list[str] = []
    labels: list[str] = []
    for i in range(rows):
        label = str(post.get(f"label_{i}", "")).strip()
        examples = [line.strip() for line in str(post.get(f"examples_{i}", "")).splitlines() if line.strip()]
        if not label and not examples:
            continue
        if not examples:
            raise InvalidInput(
                f"write at least one example of label {label!r} (row {i + 1})", field="support"
            )
        if not label:
            raise InvalidInput(f"name the label of the examples in row {i + 1}", field="support_labels")
        texts += examples
        labels += [label] * len(examples)
    return texts, labels


def _row_count(value: Any, default: int) -> int:
    try:
        return max(2, min(MAX_ROWS, int(value)))
    except (TypeError, ValueError):
        return default


def try_page_context(*, model: MetaModel, get: Mapping[str, Any], post: Mapping[str, Any]) -> dict[str, Any]:
    """What the "Try it" page shows before (and around) a prediction: the form's rows and values."""
    try:
        kind: str | None = predict_kind(model=model)
        inputs: str | None = input_kind(model=model)
        ways = fixed_ways(model=model)
        unavailable = ""
    except InvalidInput as err:
        kind, inputs, ways, unavailable = None, None, None, err.message
    count = ways or _row_count(get.get("rows"), DEFAULT_ROWS)
    posted = [i for i in range(MAX_ROWS) if str(post.get(f"label_{i}", "")).strip()]
    if posted and ways is None:
        count = max(count, posted[-1] + 1)
    return {
        "model": model,
        "kind": kind,
        "inputs": inputs,
        "unavailable": unavailable,
        "fixed_ways": ways,
        "rows": [
            {
                "index": i,
                "label": str(post.get(f"label_{i}", "")),
                "examples": str(post.get(f"examples_{i}", "")),
            }
            for i in range(count)
        ],
        "more_rows": None if ways else min(MAX_ROWS, count + 5),
        "values": {
            key: str(post.get(key, "")) for key in ("support_x", "support_y", "query_x", "query_texts")
        },
        "limits": {"support": MAX_SUPPORT, "query": MAX_QUERY, "image_kib": MAX_IMAGE_BYTES // 1024},
        "result": None,
        "error": "",
    }


def try_page_predict(
    *, model: MetaModel, post: Mapping[str, Any], files: Any
) -> ClassificationResult | TextClassificationResult | RegressionResult:
    """Predict from the "Try it" form: label rows and query files or texts, or x / y text areas."""
    if input_kind(model=model) == "text":
        texts, labels = texts_from_rows(post)
        queries = [line.strip() for line in str(post.get("query_texts", "")).splitlines() if line.strip()]
        return predict_text_classification(model=model, support=texts, support_labels=labels, query=queries)
    if predict_kind(model=model) == CLASSIFICATION:
        support, labels = support_from_rows(post, files)
        return predict_classification(
            model=model, support=support, support_labels=labels, query=files.getlist("query")
        )
    return predict_regression(
        model=model,
        support_x=numbers_from_text(str(post.get("support_x", "")), field="support.x"),
        support_y=numbers_from_text(str(post.get("support_y", "")), field="support.y"),
        query_x=numbers_from_text(str(post.get("query_x", "")), field="query.x"),
    )
