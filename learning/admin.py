"""Admin for the catalog: read-mostly views of what the services wrote."""

from django.contrib import admin

from learning.models import Evaluation, MetaModel, SourceDomain, TaskSpec


@admin.register(SourceDomain)
class SourceDomainAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "modality",
        "origin",
        "class_count",
        "example_count",
        "visibility",
        "owner",
        "created_at",
    ]
    list_filter = ["modality", "origin", "visibility"]
    search_fields = ["name", "description"]
    prepopulated_fields = {"slug": ["name"]}
    readonly_fields = ["content_sha256", "arrays_file", "arrays_size", "classes", "class_groups"]


@admin.register(TaskSpec)
class TaskSpecAdmin(admin.ModelAdmin):
    list_display = ["name", "domain", "n_way", "k_shot", "query_size", "within_group", "seed", "visibility"]
    list_filter = ["within_group", "visibility", "domain"]
    search_fields = ["name", "identity_hash"]
    readonly_fields = ["identity_hash"]


class EvaluationInline(admin.TabularInline):
    model = Evaluation
    extra = 0
    fields = ["target_domain", "shots", "metric", "mean", "ci95", "episodes", "baseline_mean"]
    readonly_fields = fields


@admin.register(MetaModel)
class MetaModelAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "algorithm",
        "architecture",
        "task_spec",
        "parent",
        "visibility",
        "owner",
        "created_at",
    ]
    list_filter = ["algorithm", "architecture", "visibility"]
    search_fields = ["name", "description", "weights_sha256"]
    readonly_fields = ["weights_file", "weights_sha256", "weights_size"]
    inlines = [EvaluationInline]


@admin.register(Evaluation)
class EvaluationAdmin(admin.ModelAdmin):
    list_display = ["model", "target_domain", "shots", "metric", "mean", "ci95", "episodes", "created_at"]
    list_filter = ["metric", "shots"]
