"""Jobs in the REST API: ``/api/v1/jobs/`` (list, detail, create) and ``/api/v1/jobs/{id}/cancel/``."""

from __future__ import annotations

import django_filters
from django.http import HttpResponse
from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, permissions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.routers import SimpleRouter

from learning.algorithms import hyperparameters_schema, meta_train_algorithms, transfer_methods
from learning.api.strict import StrictFieldsMixin
from learning.errors import InvalidInput
from learning.models import Visibility
from learning.throttles import JobCreateThrottle
from tasks_app import selectors, services
from tasks_app.checkpoints import checkpoint_download
from tasks_app.engine_config import MIN_EVAL_EPISODES
from tasks_app.models import Job


class JobSerializer(serializers.ModelSerializer):
    domain = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    percent = serializers.FloatField(source="progress_percent", read_only=True)

    class Meta:
        model = Job
        fields = [
            "id",
            "kind",
            "status",
            "phase",
            "domain",
            "task_spec",
            "config",
            "step",
            "total_steps",
            "percent",
            "metrics",
            "phase_done",
            "phase_total",
            "eta_seconds",
            "history",
            "queue",
            "worker_host",
            "attempts",
            "log",
            "heartbeat_at",
            "cancel_requested",
            "error_summary",
            "error_traceback",
            "result_model",
            "result_evaluations",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields


class TaskInputSerializer(StrictFieldsMixin, serializers.Serializer):
    """A new task spec, when the job does not name an existing one."""

    n_way = serializers.IntegerField(default=5)
    k_shot = serializers.IntegerField(default=1)
    query_size = serializers.IntegerField(default=15)
    within_group = serializers.BooleanField(default=False)
    seed = serializers.IntegerField(default=0, min_value=0)
    split = serializers.JSONField(required=False)


class AlgorithmNameField(serializers.CharField):
    """An algorithm's name; the schema lists those the site meta-trains."""


class TransferMethodField(serializers.CharField):
    """A transfer method's name; the schema lists those the site runs."""


class HyperparametersField(serializers.DictField):
    """The algorithm's (or method's) settings; the schema gives each one's declaration."""


class AlgorithmNameExtension(OpenApiSerializerFieldExtension):
    target_class = AlgorithmNameField

    def map_serializer_field(self, auto_schema, direction):
        names = [e.name for e in meta_train_algorithms()]
        return {"type": "string", "enum": list(dict.fromkeys(names)), "description": "for meta_train jobs"}


class TransferMethodExtension(OpenApiSerializerFieldExtension):
    target_class = TransferMethodField

    def map_serializer_field(self, auto_schema, direction):
        return {
            "type": "string",
            "enum": list(dict.fromkeys(e.name for e in transfer_methods())),
            "description": "for transfer jobs",
        }


class HyperparametersExtension(OpenApiSerializerFieldExtension):
    """Generated at request time from the engine's config declarations, so it always matches them."""

    target_class = HyperparametersField

    def map_serializer_field(self, auto_schema, direction):
        entries = [*meta_train_algorithms(), *transfer_methods()]
        return {
            "type": "object",
            "description": "Settings of the algorithm or transfer method; omitted ones take its default. "
            "One schema per algorithm (its title) or method.",
            "oneOf": [hyperparameters_schema(entry) for entry in entries],
        }


class JobCreateSerializer(StrictFieldsMixin, serializers.Serializer):
    """The launch request; shapes only. The service checks it against the catalog and the engine.

    ``meta_train``: ``domain`` and ``algorithm``. ``transfer``: ``source_model``, the target
    ``domain`` and ``method`` (finetune, feature, instance or rkd).
    """

    kind = serializers.ChoiceField(
        choices=[Job.Kind.META_TRAIN, Job.Kind.TRANSFER], default=Job.Kind.META_TRAIN
    )
    domain = serializers.SlugField()
    algorithm = AlgorithmNameField(max_length=40, required=False)
    source_model = serializers.IntegerField(required=False)
    method = TransferMethodField(max_length=40, required=False)
    task_spec = serializers.IntegerField(required=False, allow_null=True)
    task = TaskInputSerializer(required=False)
    hyperparameters = HyperparametersField(required=False, default=dict)
    model_name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    eval_episodes = serializers.IntegerField(default=MIN_EVAL_EPISODES)
    visibility = serializers.ChoiceField(
        choices=Visibility.choices,
        default=None,
        allow_null=True,
        help_text="Of the model it makes; default: private when its data or source is private, else public.",
    )


class JobFilter(django_filters.FilterSet):
    domain = django_filters.CharFilter(field_name="domain__slug")
    algorithm = django_filters.CharFilter(field_name="config__algorithm")

    class Meta:
        model = Job
        fields = ["status", "kind", "queue", "domain", "algorithm"]


@extend_schema_view(
    list=extend_schema(summary="List your jobs", description="Newest first; filter by status, kind, domain."),
    retrieve=extend_schema(summary="Get a job: status, progress, results"),
)
@extend_schema(tags=["jobs"])
class JobViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    resource_noun = "job"
    serializer_class = JobSerializer
    filterset_class = JobFilter
    permission_classes = [permissions.IsAuthenticated]
    throttle_classes = [JobCreateThrottle]
    ordering_fields = ["created_at", "started_at", "finished_at", "status"]
    search_fields = ["config__model_name"]

    def get_queryset(self):
        return selectors.job_list(user=self.request.user).prefetch_related("result_evaluations")

    def handle_exception(self, exc):
        if isinstance(exc, InvalidInput):
            exc = ValidationError(exc.as_dict())
        return super().handle_exception(exc)

    @extend_schema(
        summary="Launch a meta-training or transfer job",
        request=JobCreateSerializer,
        responses={201: JobSerializer},
    )
    def create(self, request: Request) -> Response:
        given = JobCreateSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        data = given.validated_data
        common = {
            "owner": request.user,
            "hyperparameters": data["hyperparameters"],
            "task_spec_id": data.get("task_spec"),
            "task": data.get("task"),
            "model_name": data["model_name"],
            "eval_episodes": data["eval_episodes"],
            "visibility": data["visibility"],
        }
        if data["kind"] == Job.Kind.TRANSFER:
            missing = {
                f: ["required for a transfer job"] for f in ("source_model", "method") if f not in data
            }
            if missing:
                raise ValidationError(missing)
            job = services.job_create_transfer(
                source_model_id=data["source_model"],
                target_domain_slug=data["domain"],
                method=data["method"],
                **common,
            )
        else:
            if "algorithm" not in data:
                raise ValidationError({"algorithm": ["required for a meta-training job"]})
            job = services.job_create_meta_train(
                domain_slug=data["domain"], algorithm=data["algorithm"], **common
            )
        return Response(JobSerializer(job).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Cancel a job",
        request=None,
        responses={200: JobSerializer},
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str) -> Response:
        job = services.job_cancel(job=self.get_object())
        return Response(JobSerializer(job).data)

    @extend_schema(
        summary="Download the job's newest checkpoint (safetensors)",
        parameters=[OpenApiParameter("run", str, description="transfer jobs: transfer (default) or scratch")],
        responses={(200, "application/octet-stream"): OpenApiResponse(description="the checkpoint")},
    )
    @action(detail=True, methods=["get"])
    def checkpoint(self, request: Request, pk: str) -> HttpResponse:
        return checkpoint_download(self.get_object(), request.query_params.get("run"))


router = SimpleRouter()
# "api-job-*": the pages already use "job-list" and "job-detail".
router.register("jobs", JobViewSet, basename="api-job")
urlpatterns = [*router.urls]
