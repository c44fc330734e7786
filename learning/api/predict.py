"""``POST /api/v1/models/{id}/predict/``: a model adapts to your support set and labels your queries.

Classification models take ``multipart/form-data``: ``support`` (image files, repeated),
``support_labels`` (one per support file, same order) and ``query`` (image files,
repeated). Text models take JSON: ``{"support": [{"text": ..., "label": ...}, ...],
"query": [text, ...]}``. Regression models take JSON: ``{"support": {"x": [...], "y": [...]},
"query": {"x": [...]}}``. The answer lists ``predictions`` in query order. The request
is read-only: anyone who may see the model (anonymous users too, for public models)
may ask, and nothing is stored. ``learning.predict`` checks the input and holds the limits.

The work runs in ``learning.heavy_work``'s bounded pool: when every slot is taken the
answer is 503 with ``Retry-After``, and a computation past its deadline is stopped and
answered 504; both bodies are ``{"detail": message, "code": ...}``.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
    inline_serializer,
)
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from learning import predict, predict_text
from learning.errors import InvalidInput
from learning.heavy_work import run_heavy
from learning.models import MetaModel
from learning.predictors import input_kind

_ClassificationRequest = inline_serializer(
    "PredictClassificationRequest",
    {
        "support": serializers.ListField(child=serializers.ImageField(), help_text="Support images."),
        "support_labels": serializers.ListField(
            child=serializers.CharField(), help_text="One label per support image, same order."
        ),
        "query": serializers.ListField(child=serializers.ImageField(), help_text="Images to label."),
    },
)
_RegressionRequest = inline_serializer(
    "PredictRegressionRequest",
    {
        "support": inline_serializer(
            "PredictRegressionSupport",
            {
                "x": serializers.ListField(child=serializers.FloatField()),
                "y": serializers.ListField(child=serializers.FloatField()),
            },
        ),
        "query": inline_serializer(
            "PredictRegressionQuery", {"x": serializers.ListField(child=serializers.FloatField())}
        ),
    },
)
_TextRequest = inline_serializer(
    "PredictTextRequest",
    {
        "support": serializers.ListField(
            child=inline_serializer(
                "PredictTextExample", {"text": serializers.CharField(), "label": serializers.CharField()}
            ),
            help_text="Labeled example texts.",
        ),
        "query": serializers.ListField(child=serializers.CharField(), help_text="Texts to label."),
    },
)
_Response = inline_serializer(
    "PredictResponse",
    {
        "model": serializers.IntegerField(),
        "algorithm": serializers.CharField(),
        "task": serializers.ChoiceField(choices=[predict.CLASSIFICATION, predict.REGRESSION]),
        "labels": serializers.ListField(child=serializers.CharField(), required=False),
        "predictions": serializers.ListField(
            child=serializers.DictField(),
            help_text=(
                "Classification: {query, label, probabilities: {label: p}} (softmax, sums to 1). "
                "Regression: {x, mean, std}; std is null for MAML-family models (point predictions)."
            ),
        ),
    },
)

predict_schema = extend_schema(
    summary="Adapt the model to a support set and predict the queries",
    description=(
        f"At most {predict.MAX_SUPPORT} support and {predict.MAX_QUERY} query items, "
        f"{predict.MAX_IMAGE_BYTES // 1024} KiB per image, at least 2 distinct labels. MAML-family "
        "image models need exactly as many labels as they were trained with (n-way). Nothing is stored."
    ),
    request={
        "multipart/form-data": _ClassificationRequest,
        "application/json": PolymorphicProxySerializer(
            "PredictJSONRequest",
            serializers=[_TextRequest, _RegressionRequest],
            resource_type_field_name=None,
        ),
    },
    responses={
        200: _Response,
        400: OpenApiResponse(description="Bad input; the message names it."),
        503: OpenApiResponse(
            description='Every slot for heavy work is taken: retry after "Retry-After" seconds. '
            'Body: {"detail": ..., "code": "busy"}.'
        ),
        504: OpenApiResponse(
            description="The computation ran past its deadline and was stopped. "
            'Body: {"detail": ..., "code": "deadline_exceeded"}.'
        ),
    },
    examples=[
        OpenApiExample(
            "Regression",
            request_only=True,
            media_type="application/json",
            value={"support": {"x": [0.0, 1.0], "y": [0.5, -0.2]}, "query": {"x": [0.5]}},
        )
    ],
)


def form_data(request: Request):
    """``request.data``, with Django's own upload limits turned into messages."""
    try:
        return request.data
    except TooManyFilesSent as exc:
        raise InvalidInput(
            f"too many files in one request: at most {settings.DATA_UPLOAD_MAX_NUMBER_FILES}"
        ) from exc
    except (TooManyFieldsSent, RequestDataTooBig) as exc:
        raise InvalidInput(f"the request is too large: {exc}") from exc


def predict_response(request: Request, model: MetaModel) -> Response:
    """Answer one predict request for ``model`` (already scoped to the user); ``InvalidInput`` -> 400.

    Parsing the body (hundreds of images) is heavy work too, so it happens inside the pool's
    slot: a request refused for want of a slot costs no parsing. Raises ``heavy_work.Busy`` /
    ``DeadlineExceeded``, which the viewset answers 503 / 504.
    """
    return Response(run_heavy(_predict, request, model).as_dict())


def _predict(request: Request, model: MetaModel):
    kind = input_kind(model=model)
    data = form_data(request)
    is_multipart = request.content_type.startswith("multipart/form-data")
    if kind == "text":
        if is_multipart:
            raise InvalidInput(
                'this model classifies texts: send JSON {"support": [{"text": ..., "label": ...}], '
                '"query": [...]}'
            )
        return predict_text.predict_text_classification(model=model, **predict_text.text_payload(data))
    if kind == "image":
        if not is_multipart:
            raise InvalidInput(
                "this model classifies images: send multipart/form-data with support files, "
                "support_labels and query files"
            )
        return predict.predict_classification(
            model=model,
            support=request.FILES.getlist("support"),
            support_labels=data.getlist("support_labels"),
            query=request.FILES.getlist("query"),
        )
    if is_multipart:
        raise InvalidInput(
            "this model predicts functions: send JSON "
            '{"support": {"x": [...], "y": [...]}, "query": {"x": [...]}}'
        )
    return predict.predict_regression(model=model, **predict.regression_payload(data))


__all__ = ["predict_response", "predict_schema"]
