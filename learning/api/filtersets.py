"""Query filters of the API's lists (django-filter), one FilterSet per resource.

Filters that name another row (a domain by slug, a task spec or model by id) choose among
the rows the asking user may see, so a filter cannot probe someone else's private entry:
naming one is a 400, exactly like naming one that does not exist.
"""

from __future__ import annotations

import django_filters as filters

from learning import selectors
from learning.models import Evaluation, MetaModel, SourceDomain, TaskSpec, Visibility


def _domains(request):
    return selectors.domain_list(user=getattr(request, "user", None))


def _task_specs(request):
    return selectors.task_spec_list(user=getattr(request, "user", None))


def _models(request):
    return selectors.metamodel_list(user=getattr(request, "user", None))


class DomainFilterSet(filters.FilterSet):
    modality = filters.ChoiceFilter(choices=SourceDomain.Modality.choices)
    origin = filters.ChoiceFilter(choices=SourceDomain.Origin.choices)
    visibility = filters.ChoiceFilter(choices=Visibility.choices)
    owner = filters.CharFilter(field_name="owner__username", help_text="The owner's username.")

    class Meta:
        model = SourceDomain
        fields = ["modality", "origin", "visibility", "owner"]


class TaskSpecFilterSet(filters.FilterSet):
    domain = filters.ModelChoiceFilter(
        queryset=_domains, to_field_name="slug", help_text="The domain's slug."
    )
    n_way = filters.NumberFilter()
    k_shot = filters.NumberFilter()
    within_group = filters.BooleanFilter()
    visibility = filters.ChoiceFilter(choices=Visibility.choices)

    class Meta:
        model = TaskSpec
        fields = ["domain", "n_way", "k_shot", "within_group", "visibility"]


class MetaModelFilterSet(filters.FilterSet):
    algorithm = filters.CharFilter()
    architecture = filters.CharFilter()
    trained_on = filters.ModelChoiceFilter(
        queryset=_domains, to_field_name="slug", help_text="The slug of a domain the model was trained on."
    )
    task_spec = filters.ModelChoiceFilter(queryset=_task_specs)
    parent = filters.ModelChoiceFilter(queryset=_models, help_text="The id of the source model.")
    visibility = filters.ChoiceFilter(choices=Visibility.choices)
    owner = filters.CharFilter(field_name="owner__username", help_text="The owner's username.")

    class Meta:
        model = MetaModel
        fields = ["algorithm", "architecture", "trained_on", "task_spec", "parent", "visibility", "owner"]


class EvaluationFilterSet(filters.FilterSet):
    model = filters.ModelChoiceFilter(queryset=_models)
    target_domain = filters.ModelChoiceFilter(
        queryset=_domains, to_field_name="slug", help_text="The target domain's slug."
    )
    task_spec = filters.ModelChoiceFilter(queryset=_task_specs)
    metric = filters.ChoiceFilter(choices=Evaluation.Metric.choices)
    shots = filters.NumberFilter()

    class Meta:
        model = Evaluation
        fields = ["model", "target_domain", "task_spec", "metric", "shots"]
