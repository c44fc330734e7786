"""Viewsets of the REST API: lists and details scoped to the asking user, creates through services.

Each viewset names its scoped selector, its serializers and its FilterSet; the shared
``CatalogViewSet`` validates a create's input, hands it to the resource's service with
``request.user`` as the owner, and turns the service's ``InvalidInput`` into a 400, and
``heavy_work``'s refusals into 503 with ``Retry-After`` (busy) or 504 (deadline passed).
A domain upload too large to import within the request answers 202 with its import job.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse
from django.urls import reverse
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
    inline_serializer,
)
from rest_framework import fields, mixins, status, viewsets
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import PageNumberPagination
from rest_framework.parsers import MultiPartParser
from rest_framework.permissions import AllowAny, IsAuthenticatedOrReadOnly
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer
from rest_framework.views import APIView

from learning import heavy_work, selectors
from learning.api import filtersets, serializers
from learning.api.errors import DepthSafeJSONParser
from learning.api.predict import predict_response, predict_schema
from learning.api.samples import samples_response, samples_schema
from learning.downloads import card_response, weights_response
from learning.errors import InvalidInput
from learning.models import Evaluation, MetaModel, SourceDomain, TaskSpec
from learning.services.domains import domain_import
from learning.services.models import evaluation_create, metamodel_register
from learning.services.task_specs import task_spec_create
from learning.throttles import AuthRateThrottle, PredictAnonThrottle, PredictUserThrottle
from tasks_app.imports import domain_upload_import
from tasks_app.models import Job


class CatalogPagination(PageNumberPagination):
    """Pages of ``PAGE_SIZE`` rows; ``?page_size=`` asks for up to 200."""

    page_size_query_param = "page_size"
    max_page_size = 200


class CatalogViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """List, detail and create of one kind of catalog entry; ``service_create`` names the service."""

    permission_classes = [IsAuthenticatedOrReadOnly]
    pagination_class = CatalogPagination
    resource_noun = ""
    """What a 404 calls the entry ("no model 7"); see ``learning.api.exception_handler``."""
    detail_serializer_class: type[BaseSerializer] | None = None
    input_serializer_class: type[BaseSerializer] | None = None

    def get_serializer_class(self):
        if self.action == "create" and self.input_serializer_class is not None:
            return self.input_serializer_class
        if self.action == "retrieve" and self.detail_serializer_class is not None:
            return self.detail_serializer_class
        return self.serializer_class

    def handle_exception(self, exc):
        if isinstance(exc, heavy_work.HeavyWorkError):
            return Response(exc.as_dict(), status=exc.status, headers=exc.headers)
        if isinstance(exc, InvalidInput):
            exc = ValidationError(exc.as_dict())
        return super().handle_exception(exc)

    def create(self, request: Request, *args, **kwargs) -> Response:
        given = self.get_serializer(data=request.data)
        given.is_valid(raise_exception=True)
        created = self.service_create(user=request.user, data=dict(given.validated_data))
        return self.created_response(created)

    def created_response(self, created) -> Response:
        """201 with the new entry's detail."""
        output_class = self.detail_serializer_class or self.serializer_class
        output = output_class(created, context=self.get_serializer_context())
        return Response(output.data, status=status.HTTP_201_CREATED)

    def service_create(self, *, user, data: dict[str, Any]):
        """Write the entry through the resource's service; ``data`` is the validated input."""
        raise NotImplementedError


@extend_schema_view(
    create=extend_schema(
        summary="Import a domain from an uploaded zip or a URL",
        description=(
            "A URL, or an uploaded zip of at most `IMPORT_INLINE_MAX_BYTES` (5 MiB unless set), "
            "is imported within the request: 201 with the new domain. A larger upload is checked "
            "as far as that is cheap (name, visibility, license, the archive's size and directory; "
            "bad input is a 400 as ever), stored, and imported by a worker: 202 with the import "
            "job, whose `Location` is the job in the API. The job's `phase_done` / `phase_total` "
            "count the image files decoded; once it has succeeded its `domain` is the new domain, "
            "and if it fails its `error_summary` is the reason an inline import would have given."
        ),
        request={
            "multipart/form-data": serializers.DomainImportSerializer,
            "application/json": serializers.DomainImportSerializer,
        },
        responses={
            201: OpenApiResponse(serializers.DomainDetailSerializer, description="Imported: the new domain."),
            202: OpenApiResponse(
                serializers.DomainImportJobSerializer, description="A large upload, queued as an import job."
            ),
        },
        parameters=[
            OpenApiParameter(
                "Location",
                str,
                location=OpenApiParameter.HEADER,
                response=[202],
                description="The import job in the API.",
            )
        ],
    )
)
@extend_schema(tags=["domains"])
class DomainViewSet(CatalogViewSet):
    """Source domains, by slug. Create imports a zip of images (one folder per class).

    A large upload (over ``IMPORT_INLINE_MAX_BYTES``) is imported by an ``import`` job
    instead: the answer is 202 with the job's id and URLs (``tasks_app.imports``).
    """

    resource_noun = "domain"

    lookup_field = "slug"
    serializer_class = serializers.DomainSerializer
    detail_serializer_class = serializers.DomainDetailSerializer
    input_serializer_class = serializers.DomainImportSerializer
    filterset_class = filtersets.DomainFilterSet
    search_fields = ["name", "description"]
    ordering_fields = ["created_at", "name", "class_count"]

    def get_queryset(self):
        return selectors.domain_list(user=self.request.user)

    def service_create(self, *, user, data: dict[str, Any]) -> SourceDomain | Job:
        given = "file" if "file" in data else "url"
        try:
            if given == "file":
                return domain_upload_import(upload=data.pop("file"), owner=user, **data)
            return heavy_work.run_heavy(
                domain_import,
                source=data.pop("url"),
                owner=user,
                deadline_s=heavy_work.import_deadline_s(),
                **data,
            )
        except InvalidInput as exc:
            # the service calls its input "source"; the API calls it "file" or "url"
            if exc.field == "source":
                raise InvalidInput(exc.message, field=given) from exc
            raise

    def created_response(self, created: SourceDomain | Job) -> Response:
        """201 with the domain, or 202 with the job that imports a large upload."""
        if not isinstance(created, Job):
            return super().created_response(created)
        api_url = f"{reverse('api:api-root')}jobs/{created.pk}/"
        body = {
            "job": created.pk,
            "job_url": api_url,
            "page_url": reverse("job-detail", args=[created.pk]),
            "status": created.status,
            "detail": f"large archive: importing as job {created.pk}; follow its progress at {api_url}",
        }
        return Response(body, status=status.HTTP_202_ACCEPTED, headers={"Location": api_url})


@extend_schema_view(
    create=extend_schema(
        summary="Create a task spec; without a split the default split is used",
        responses={201: serializers.TaskSpecSerializer},
    )
)
@extend_schema(tags=["task specs"])
class TaskSpecViewSet(CatalogViewSet):
    """Task specs: reproducible few-shot task families over a domain."""

    resource_noun = "task spec"

    serializer_class = serializers.TaskSpecSerializer
    input_serializer_class = serializers.TaskSpecCreateSerializer
    filterset_class = filtersets.TaskSpecFilterSet
    search_fields = ["name"]
    ordering_fields = ["created_at", "name", "n_way", "k_shot"]

    def get_queryset(self):
        return selectors.task_spec_list(user=self.request.user)

    def service_create(self, *, user, data: dict[str, Any]) -> TaskSpec:
        return task_spec_create(owner=user, **data)


@extend_schema_view(
    create=extend_schema(
        summary="Register a trained model from safetensors weights",
        request={"multipart/form-data": serializers.MetaModelRegisterSerializer},
        responses={201: serializers.MetaModelDetailSerializer},
    )
)
@extend_schema(tags=["models"])
class MetaModelViewSet(CatalogViewSet):
    """Trained models, their lineage and weights' checksums. Create uploads safetensors weights."""

    resource_noun = "model"

    serializer_class = serializers.MetaModelSerializer
    detail_serializer_class = serializers.MetaModelDetailSerializer
    input_serializer_class = serializers.MetaModelRegisterSerializer
    filterset_class = filtersets.MetaModelFilterSet
    search_fields = ["name", "description"]
    ordering_fields = ["created_at", "name"]

    def get_queryset(self):
        return selectors.metamodel_list(user=self.request.user)

    def service_create(self, *, user, data: dict[str, Any]) -> MetaModel:
        upload = data.pop("weights")
        return metamodel_register(weights=upload.read(), owner=user, **data)

    @predict_schema
    @action(
        detail=True,
        methods=["post"],
        permission_classes=[AllowAny],
        parser_classes=[DepthSafeJSONParser, MultiPartParser],
        throttle_classes=[PredictAnonThrottle, PredictUserThrottle],
    )
    def predict(self, request: Request, pk: str | None = None) -> Response:
        """Read-only, so anyone who may see the model may ask; ``learning.api.predict`` answers."""
        return predict_response(request, self.get_object())

    @samples_schema
    @action(
        detail=True,
        methods=["post"],
        permission_classes=[AllowAny],
        parser_classes=[MultiPartParser],
        throttle_classes=[PredictAnonThrottle, PredictUserThrottle],
    )
    def samples(self, request: Request, pk: str | None = None) -> Response:
        """Read-only like predict; ``learning.api.samples`` answers."""
        return samples_response(request, self.get_object())

    @extend_schema(
        summary="Download the model's weights (safetensors)",
        responses={(200, "application/octet-stream"): OpenApiResponse(description="the safetensors file")},
    )
    @action(detail=True, methods=["get"])
    def weights(self, request: Request, pk: str | None = None) -> HttpResponse:
        return weights_response(self.get_object())

    @extend_schema(
        summary="Download the model card (markdown): data, config, evaluations, lineage, commands",
        responses={(200, "text/markdown"): OpenApiResponse(description="the model card")},
    )
    @action(detail=True, methods=["get"])
    def card(self, request: Request, pk: str | None = None) -> HttpResponse:
        return card_response(request, self.get_object())


@extend_schema_view(
    create=extend_schema(
        summary="Record an evaluation of a model you own",
        responses={201: serializers.EvaluationSerializer},
    )
)
@extend_schema(tags=["evaluations"])
class EvaluationViewSet(CatalogViewSet):
    """Measured results of models on target domains."""

    resource_noun = "evaluation"

    serializer_class = serializers.EvaluationSerializer
    input_serializer_class = serializers.EvaluationCreateSerializer
    filterset_class = filtersets.EvaluationFilterSet
    ordering_fields = ["created_at", "mean", "shots"]

    def get_queryset(self):
        return selectors.evaluation_list(user=self.request.user)

    def service_create(self, *, user, data: dict[str, Any]) -> Evaluation:
        return evaluation_create(**data)


class TokenView(ObtainAuthToken):
    """Trade a username and password for the user's API token (``Authorization: Token <key>``)."""

    throttle_classes = [AuthRateThrottle]

    @extend_schema(
        tags=["auth"],
        summary="Get your API token",
        responses={200: inline_serializer("Token", {"token": fields.CharField(read_only=True)})},
    )
    def post(self, request: Request, *args, **kwargs) -> Response:
        return super().post(request, *args, **kwargs)


API_ENTRY_POINTS = {
    "domains": "api:domain-list",
    "task-specs": "api:taskspec-list",
    "models": "api:metamodel-list",
    "evaluations": "api:evaluation-list",
    "jobs": "api-job-list",
    "transfer-matrix": "api:transfer-matrix",
    "auth-token": "api:token",
    "schema": "schema",
    "docs": "api-docs",
}
"""What the API root links, by URL name: every resource under /api/v1/ and the schema."""


class ApiRootView(APIView):
    """Links to every resource of the API, its token endpoint, schema and documentation."""

    permission_classes = [AllowAny]

    @extend_schema(
        tags=["api"],
        summary="List the API's entry points",
        responses={200: inline_serializer("ApiRoot", {k: fields.URLField() for k in API_ENTRY_POINTS})},
    )
    def get(self, request: Request) -> Response:
        return Response(
            {key: request.build_absolute_uri(reverse(name)) for key, name in API_ENTRY_POINTS.items()}
        )
