"""``/api/v1/transfer-matrix/``: measured transfer gains, KB models against target domains."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from learning import selectors
from learning.models import Evaluation


def matrix_payload(matrix: selectors.TransferMatrix) -> dict:
    return {
        "shots": matrix.shots,
        "metric": matrix.metric,
        "available_shots": matrix.available_shots,
        "sources": [{"id": m.pk, "name": m.name, "algorithm": m.algorithm} for m in matrix.sources],
        "targets": [{"slug": d.slug, "name": d.name} for d in matrix.targets],
        "cells": [
            {
                "source": source_id,
                "target": e.target_domain.slug,
                "model": e.model_id,
                "evaluation": e.pk,
                "mean": e.mean,
                "baseline_mean": e.baseline_mean,
                "gain": e.gain,
                "gain_ci95": e.gain_ci95,
                "negative_transfer": e.negative_transfer,
                "episodes": e.episodes,
            }
            for (source_id, _), e in sorted(matrix.cells.items())
        ],
    }


class TransferMatrixView(APIView):
    """Each cell: the newest measured gain of a source model over training from scratch on a target."""

    @extend_schema(
        tags=["transfer"],
        parameters=[
            OpenApiParameter(
                "shots", int, description="Shots per class (default 5 if measured, else the fewest)."
            ),
            OpenApiParameter("metric", str, enum=Evaluation.Metric.values, description="Default accuracy."),
        ],
        responses=inline_serializer(
            "TransferMatrix", {"shots": serializers.IntegerField(), "cells": serializers.ListField()}
        ),
    )
    def get(self, request: Request) -> Response:
        shots = request.query_params.get("shots")
        metric = request.query_params.get("metric", Evaluation.Metric.ACCURACY)
        if metric not in Evaluation.Metric.values:
            return Response({"metric": [f"one of {', '.join(Evaluation.Metric.values)}"]}, status=400)
        if shots is not None and not shots.isdigit():
            return Response({"shots": [f"a positive whole number, got {shots!r}"]}, status=400)
        matrix = selectors.transfer_matrix(
            user=request.user, shots=int(shots) if shots else None, metric=metric
        )
        return Response(matrix_payload(matrix))
