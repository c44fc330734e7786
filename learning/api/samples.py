"""``POST /api/v1/models/{id}/samples/``: new images of a class drawn from your examples of it.

Only Neural Statistician models draw samples. The request is ``multipart/form-data``:
``support`` (image files of one class, repeated), optional ``count`` and ``seed``. The
answer lists the ``samples`` as 28x28 grayscale PNG data URIs (ink dark on light). Like
predict, it is read-only and runs in ``learning.heavy_work``'s bounded pool (503 when
busy, 504 past the deadline); ``learning.samples`` checks the input and holds the limits.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from learning import samples
from learning.api.predict import form_data
from learning.heavy_work import run_heavy
from learning.models import MetaModel

samples_schema = extend_schema(
    summary="Draw new images of a class from a few examples of it (Neural Statistician models)",
    description=(
        f"1 to {samples.MAX_SUPPORT} support images, all of one class; at most {samples.MAX_COUNT} "
        f"samples (default {samples.DEFAULT_COUNT}). The same images and seed draw the same samples. "
        "Nothing is stored."
    ),
    request={
        "multipart/form-data": inline_serializer(
            "SamplesRequest",
            {
                "support": serializers.ListField(
                    child=serializers.ImageField(), help_text="Images of one class."
                ),
                "count": serializers.IntegerField(
                    required=False, min_value=1, max_value=samples.MAX_COUNT, help_text="Samples to draw."
                ),
                "seed": serializers.IntegerField(required=False, min_value=0, max_value=samples.MAX_SEED),
            },
        )
    },
    responses={
        200: inline_serializer(
            "SamplesResponse",
            {
                "model": serializers.IntegerField(),
                "algorithm": serializers.CharField(),
                "seed": serializers.IntegerField(),
                "count": serializers.IntegerField(),
                "samples": serializers.ListField(
                    child=serializers.CharField(), help_text="28x28 grayscale PNG data URIs, ink dark."
                ),
            },
        ),
        400: OpenApiResponse(
            description="Bad input, or a model that does not draw samples; the message says."
        ),
        503: OpenApiResponse(description='Every slot for heavy work is taken: retry after "Retry-After".'),
        504: OpenApiResponse(description="The computation ran past its deadline and was stopped."),
    },
)


def samples_response(request: Request, model: MetaModel) -> Response:
    """Answer one samples request for ``model`` (already scoped to the user); ``InvalidInput`` -> 400."""
    return Response(run_heavy(_draw, request, model).as_dict())


def _draw(request: Request, model: MetaModel) -> samples.SamplesResult:
    data = form_data(request)
    return samples.draw_samples(
        model=model, support=request.FILES.getlist("support"), count=data.get("count"), seed=data.get("seed")
    )


__all__ = ["samples_response", "samples_schema"]
