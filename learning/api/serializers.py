"""Serializers of the REST API: output shapes, and input shapes that the services then write.

Output serializers read a row; input serializers (``*CreateSerializer``, ``*ImportSerializer``,
``*RegisterSerializer``) only validate the request's shape and resolve references, always
through the asking user's scoped selectors, so a private row of someone else reads as
"does not exist". None of them writes: the view hands ``validated_data`` to a service.
"""

from __future__ import annotations

import json
import os
import tempfile
from urllib.parse import urlsplit

from django.core.files.uploadedfile import UploadedFile
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from safetensors import SafetensorError, safe_open

from learning import selectors
from learning.models import Evaluation, MetaModel, SourceDomain, TaskSpec, Visibility


def _user(serializer: serializers.Field | serializers.Serializer):
    request = serializer.context.get("request")
    return getattr(request, "user", None)


def _visible_to(row, user) -> bool:
    """Whether ``user`` may see ``row`` (None: no): ``is_visible_to``, the queryset rule for loaded rows."""
    return row is not None and row.is_visible_to(user)


# --- Fields --------------------------------------------------------------------------------------


@extend_schema_field(OpenApiTypes.STR)
class VisibleDomainField(serializers.SlugRelatedField):
    """A domain named by its slug, among the domains the asking user may see."""

    def __init__(self, **kwargs):
        kwargs.setdefault("slug_field", "slug")
        super().__init__(**kwargs)

    def get_queryset(self):
        return selectors.domain_list(user=_user(self))


@extend_schema_field(OpenApiTypes.INT)
class VisibleTaskSpecField(serializers.PrimaryKeyRelatedField):
    """A task spec named by its id, among the task specs the asking user may see."""

    def get_queryset(self):
        return selectors.task_spec_list(user=_user(self))


@extend_schema_field(OpenApiTypes.INT)
class VisibleModelField(serializers.PrimaryKeyRelatedField):
    """A model named by its id, among the models the asking user may see."""

    def get_queryset(self):
        return selectors.metamodel_list(user=_user(self))


@extend_schema_field(OpenApiTypes.BINARY)
class UploadField(serializers.FileField):
    """An uploaded file (multipart), shown in the schema as binary content."""


@extend_schema_field({"type": "object", "additionalProperties": {}})
class JSONObjectField(serializers.JSONField):
    """A JSON object, given as an object (JSON body) or as a string holding one (multipart form)."""

    default_error_messages = {"not_object": "Expected a JSON object.", "invalid": "Value must be valid JSON."}

    def to_internal_value(self, data):
        if isinstance(data, str | bytes):
            try:
                data = json.loads(data)
            except ValueError:
                self.fail("invalid")
        if not isinstance(data, dict):
            self.fail("not_object")
        return super().to_internal_value(data)


def safetensors_check(upload: UploadedFile) -> list[str]:
    """The tensor names in a safetensors upload; raises ValidationError if it does not parse as one.

    ``safe_open`` reads only the header and checks that it covers the file exactly; nothing is
    unpickled and no tensor is loaded.
    """
    temporary = None
    try:
        if hasattr(upload, "temporary_file_path"):
            path = upload.temporary_file_path()
        else:
            with tempfile.NamedTemporaryFile(suffix=".safetensors", delete=False) as fh:
                temporary = fh.name
                for chunk in upload.chunks():
                    fh.write(chunk)
            path = temporary
        with safe_open(path, framework="numpy") as weights:
            names = list(weights.keys())
    except SafetensorError as exc:
        raise serializers.ValidationError(f"not a safetensors file: {exc}") from exc
    finally:
        if temporary is not None:
            os.unlink(temporary)
        upload.seek(0)
    if not names:
        raise serializers.ValidationError("the safetensors file holds no tensors")
    return names


# --- Domains -------------------------------------------------------------------------------------


class DomainSerializer(serializers.ModelSerializer):
    """A source domain as listed: what it is, where it came from and how big it is."""

    owner = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    # A string, not a URL: empty for uploads and built-in domains, which no "uri" format allows.
    source_url = serializers.CharField(read_only=True, help_text="Where it was downloaded from, or empty.")

    class Meta:
        model = SourceDomain
        fields = [
            "id",
            "slug",
            "name",
            "modality",
            "origin",
            "visibility",
            "owner",
            "description",
            "citation",
            "license",
            "source_url",
            "class_count",
            "example_count",
            "class_groups",
            "content_sha256",
            "created_at",
        ]
        read_only_fields = fields


class DomainDetailSerializer(DomainSerializer):
    """A source domain with its classes (label order) and, for function domains, the generator."""

    class Meta(DomainSerializer.Meta):
        fields = [*DomainSerializer.Meta.fields, "classes", "generator", "arrays_size"]
        read_only_fields = fields


class DomainImportSerializer(serializers.Serializer):
    """Import a domain from an uploaded zip (``file``, multipart) or from a ``url`` (JSON or form)."""

    name = serializers.CharField(max_length=200)
    file = UploadField(
        required=False,
        help_text=(
            "A zip of images, one folder per class; or a .csv/.tsv/.jsonl of text, label (and group), "
            "always imported as a job that embeds every text."
        ),
    )
    url = serializers.URLField(required=False, max_length=1000, help_text="Where to download the zip.")
    visibility = serializers.ChoiceField(choices=Visibility.choices, default=Visibility.PUBLIC)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    citation = serializers.CharField(required=False, allow_blank=True, default="")
    license = serializers.CharField(required=False, allow_blank=True, default="", max_length=200)

    def validate_url(self, url: str) -> str:
        if urlsplit(url).scheme not in ("http", "https"):
            raise serializers.ValidationError("give an http or https URL")
        return url

    def validate(self, attrs):
        if ("file" in attrs) == ("url" in attrs):
            raise serializers.ValidationError({"non_field_errors": ["give either a file or a url, not both"]})
        return attrs


class DomainImportJobSerializer(serializers.Serializer):
    """The 202 answer to an upload too large to import within the request: the job that imports it."""

    job = serializers.IntegerField(help_text="The import job's id.")
    job_url = serializers.CharField(help_text="The job in the API: its status, phase and files decoded.")
    page_url = serializers.CharField(help_text="The job's page, with live progress.")
    status = serializers.CharField(help_text="The job's status now: queued.")
    detail = serializers.CharField()


# --- Task specs ----------------------------------------------------------------------------------


class TaskSpecSerializer(serializers.ModelSerializer):
    """A few-shot task family: the domain (by slug), its split and the episode shape."""

    domain = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    owner = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)

    class Meta:
        model = TaskSpec
        fields = [
            "id",
            "name",
            "domain",
            "split",
            "n_way",
            "k_shot",
            "query_size",
            "within_group",
            "seed",
            "identity_hash",
            "visibility",
            "owner",
            "created_at",
        ]
        read_only_fields = fields


class TaskSpecCreateSerializer(serializers.Serializer):
    """Create a task spec on a domain you may see; without ``split`` the default 60/20/20 split is used."""

    domain = VisibleDomainField(help_text="The domain's slug.")
    name = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    split = JSONObjectField(required=False, allow_null=True, default=None)
    n_way = serializers.IntegerField(min_value=1, default=5)
    k_shot = serializers.IntegerField(min_value=1, default=1)
    query_size = serializers.IntegerField(min_value=1, default=15)
    within_group = serializers.BooleanField(default=False)
    seed = serializers.IntegerField(min_value=0, default=0)
    visibility = serializers.ChoiceField(choices=Visibility.choices, default=Visibility.PUBLIC)


# --- Models --------------------------------------------------------------------------------------


class MetaModelSerializer(serializers.ModelSerializer):
    """A trained model: how it was made, what it was trained on, and its weights' checksum.

    References the asking user may not see (a private parent, task spec or domain of
    someone else) read as null or are left out.
    """

    owner = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    trained_on = serializers.SerializerMethodField()
    task_spec = serializers.SerializerMethodField()
    parent = serializers.SerializerMethodField()

    class Meta:
        model = MetaModel
        fields = [
            "id",
            "name",
            "description",
            "algorithm",
            "architecture",
            "trained_on",
            "task_spec",
            "parent",
            "visibility",
            "owner",
            "weights_sha256",
            "weights_size",
            "created_at",
        ]
        read_only_fields = fields

    def get_trained_on(self, obj: MetaModel) -> list[str]:
        user = _user(self)
        return [d.slug for d in obj.trained_on.all() if _visible_to(d, user)]

    def get_task_spec(self, obj: MetaModel) -> int | None:
        return obj.task_spec_id if _visible_to(obj.task_spec, _user(self)) else None

    def get_parent(self, obj: MetaModel) -> int | None:
        return obj.parent_id if _visible_to(obj.parent, _user(self)) else None


class MetaModelDetailSerializer(MetaModelSerializer):
    """A trained model with its hyperparameters, metrics and lineage (ancestor ids, nearest first)."""

    lineage = serializers.SerializerMethodField()

    class Meta(MetaModelSerializer.Meta):
        fields = [*MetaModelSerializer.Meta.fields, "hyperparameters", "metrics", "lineage"]
        read_only_fields = fields

    def get_lineage(self, obj: MetaModel) -> list[int]:
        return [m.pk for m in selectors.metamodel_lineage(user=_user(self), model=obj)]


class MetaModelRegisterSerializer(serializers.Serializer):
    """Register a trained model from uploaded safetensors ``weights`` (multipart form).

    ``trained_on`` repeats once per domain slug; ``hyperparameters`` and ``metrics`` are
    JSON objects (strings holding JSON in a form).
    """

    name = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    algorithm = serializers.CharField(max_length=40)
    architecture = serializers.CharField(max_length=40)
    weights = UploadField(help_text="The weights as a safetensors file.")
    hyperparameters = JSONObjectField(required=False, default=dict)
    metrics = JSONObjectField(required=False, default=dict)
    trained_on = VisibleDomainField(many=True, required=False, default=list, help_text="Domain slugs.")
    task_spec = VisibleTaskSpecField(required=False, allow_null=True, default=None)
    parent = VisibleModelField(required=False, allow_null=True, default=None)
    visibility = serializers.ChoiceField(choices=Visibility.choices, default=Visibility.PUBLIC)

    def validate_weights(self, upload: UploadedFile) -> UploadedFile:
        safetensors_check(upload)
        return upload


# --- Evaluations ---------------------------------------------------------------------------------


class EvaluationSerializer(serializers.ModelSerializer):
    """A measured result: the metric's mean and 95% CI half-width over ``episodes`` episodes."""

    target_domain = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    task_spec = serializers.SerializerMethodField()
    gain = serializers.FloatField(
        read_only=True, allow_null=True, help_text="Positive: better than the baseline."
    )
    negative_transfer = serializers.BooleanField(
        read_only=True, help_text="The gain's whole 95% confidence interval lies below zero."
    )

    class Meta:
        model = Evaluation
        fields = [
            "id",
            "model",
            "target_domain",
            "task_spec",
            "shots",
            "metric",
            "mean",
            "ci95",
            "episodes",
            "baseline_mean",
            "baseline_ci95",
            "gain",
            "gain_ci95",
            "negative_transfer",
            "created_at",
        ]
        read_only_fields = fields

    def get_task_spec(self, obj: Evaluation) -> int | None:
        return obj.task_spec_id if _visible_to(obj.task_spec, _user(self)) else None


class EvaluationCreateSerializer(serializers.Serializer):
    """Record a result for a model you own, on a target domain (and task spec) you may see."""

    model = VisibleModelField()
    target_domain = VisibleDomainField(help_text="The target domain's slug.")
    task_spec = VisibleTaskSpecField(required=False, allow_null=True, default=None)
    shots = serializers.IntegerField(min_value=1)
    metric = serializers.ChoiceField(choices=Evaluation.Metric.choices)
    mean = serializers.FloatField()
    ci95 = serializers.FloatField(min_value=0)
    episodes = serializers.IntegerField(min_value=1)
    baseline_mean = serializers.FloatField(required=False, allow_null=True, default=None)
    baseline_ci95 = serializers.FloatField(required=False, allow_null=True, default=None, min_value=0)
    gain_ci95 = serializers.FloatField(required=False, allow_null=True, default=None, min_value=0)

    def validate_model(self, model: MetaModel) -> MetaModel:
        user = _user(self)
        if user is None or model.owner_id != user.pk:
            raise serializers.ValidationError("you can only add evaluations to models you own")
        return model
