"""Reads from the catalog, always scoped to what the asking user may see."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import F, Max, Q, QuerySet
from django.http import Http404

from learning.models import Evaluation, MetaModel, SourceDomain, TaskSpec
from tasks_app.models import Job


def domain_list(*, user) -> QuerySet[SourceDomain]:
    return SourceDomain.objects.visible_to(user).select_related("owner")


def domain_get(*, user, slug: str) -> SourceDomain:
    """The domain with ``slug`` if ``user`` may see it; a stranger gets 404, as if it did not exist."""
    try:
        return domain_list(user=user).get(slug=slug)
    except SourceDomain.DoesNotExist as exc:
        raise Http404(f"no domain {slug!r}") from exc


def task_spec_list(*, user) -> QuerySet[TaskSpec]:
    """Task specs the user may see, over domains the user may see (``TaskSpecQuerySet.visible_to``)."""
    return TaskSpec.objects.visible_to(user).select_related("domain", "owner")


def metamodel_list(*, user) -> QuerySet[MetaModel]:
    """Models the user may see; their task spec and parent are loaded to check ``is_visible_to``."""
    return (
        MetaModel.objects.visible_to(user)
        .select_related("owner", "task_spec__domain", "parent")
        .prefetch_related("trained_on")
    )


def metamodel_list_scored(*, user) -> QuerySet[MetaModel]:
    """:func:`metamodel_list` with ``best_accuracy`` and ``best_gain`` (over a baseline on the same
    episodes), from the accuracy evaluations on domains the user may see; None where there are none."""
    counted = Q(evaluations__metric=Evaluation.Metric.ACCURACY) & Q(
        evaluations__target_domain__in=domain_list(user=user)
    )
    return metamodel_list(user=user).annotate(
        best_accuracy=Max("evaluations__mean", filter=counted),
        best_gain=Max(
            F("evaluations__mean") - F("evaluations__baseline_mean"),
            filter=counted & Q(evaluations__baseline_mean__isnull=False),
        ),
    )


def metamodel_get(*, user, pk: int) -> MetaModel:
    try:
        return metamodel_list(user=user).get(pk=pk)
    except MetaModel.DoesNotExist as exc:
        raise Http404(f"no model {pk}") from exc


def metamodel_lineage(*, user, model: MetaModel) -> list[MetaModel]:
    """The chain of parents, nearest first, stopping at one the user may not see."""
    chain: list[MetaModel] = []
    visible = metamodel_list(user=user)
    current = model
    while current.parent_id is not None and len(chain) < 50:
        parent = visible.filter(pk=current.parent_id).first()
        if parent is None:
            break
        chain.append(parent)
        current = parent
    return chain


@dataclass
class LineageStep:
    """One model of a lineage with what it was made from: domains, task spec, the job that trained it."""

    model: MetaModel
    domains: list[SourceDomain]
    task_spec: TaskSpec | None
    job_id: int | None
    is_self: bool


def metamodel_lineage_graph(*, user, model: MetaModel) -> list[LineageStep]:
    """The visible chain from the oldest ancestor to ``model``, each with its data, spec and job.

    Only what ``user`` may see is named: a private domain or spec is left out of its step,
    and jobs are their owner's to see.
    """
    chain = [*reversed(metamodel_lineage(user=user, model=model)), model]
    domains = domain_list(user=user)
    specs = task_spec_list(user=user)
    jobs = dict(
        Job.objects.visible_to(user)
        .filter(result_model__in=chain, kind__in=[Job.Kind.META_TRAIN, Job.Kind.TRANSFER])
        .order_by("pk")
        .values_list("result_model_id", "pk")
    )
    return [
        LineageStep(
            model=m,
            domains=list(domains.filter(models=m)),
            task_spec=specs.filter(pk=m.task_spec_id).first(),
            job_id=jobs.get(m.pk),
            is_self=m.pk == model.pk,
        )
        for m in chain
    ]


def evaluation_list(*, user) -> QuerySet[Evaluation]:
    """Evaluations whose model and target domain the user may both see.

    The task spec may still be one the user may not see: show it only where
    ``evaluation.task_spec.is_visible_to(user)`` (its domain is loaded for that).
    """
    return Evaluation.objects.filter(
        model__in=MetaModel.objects.visible_to(user),
        target_domain__in=SourceDomain.objects.visible_to(user),
    ).select_related("model", "target_domain", "task_spec__domain")


def catalog_counts(*, user) -> dict[str, int]:
    """How many entries of each kind the user can see, for the home dashboard."""
    return {
        "domains": domain_list(user=user).count(),
        "task_specs": task_spec_list(user=user).count(),
        "models": metamodel_list(user=user).count(),
        "evaluations": evaluation_list(user=user).count(),
    }


@dataclass(frozen=True)
class TransferMatrix:
    """KB models (sources) against domains (targets) at one shot count.

    ``cells`` maps ``(source model id, domain id)`` to the newest evaluation with a
    from-scratch baseline; its ``gain`` (± ``gain_ci95``) is the measured transfer gain.
    The evaluated model is the one transferred FROM the source (its ``parent``), or the
    source itself when it was evaluated on the target directly.
    """

    shots: int
    metric: str
    sources: list[MetaModel]
    targets: list[SourceDomain]
    cells: dict[tuple[int, int], Evaluation]
    available_shots: list[int]

    def rows(self) -> list[tuple[MetaModel, list[Evaluation | None]]]:
        """For the heatmap: each source with its cell per target (None where nothing was measured)."""
        return [(s, [self.cells.get((s.pk, t.pk)) for t in self.targets]) for s in self.sources]


def transfer_source(*, user, evaluation: Evaluation) -> MetaModel:
    """The KB model a gain is credited to: the evaluated model's parent, where the user may see it."""
    parent = evaluation.model.parent
    if parent is not None and MetaModel.objects.visible_to(user).filter(pk=parent.pk).exists():
        return parent
    return evaluation.model


def transfer_matrix(*, user, shots: int | None = None, metric: str = "accuracy") -> TransferMatrix:
    """The measured transfer gains the user may see; ``shots`` defaults to 5 if measured, else the fewest."""
    measured = evaluation_list(user=user).filter(metric=metric, baseline_mean__isnull=False)
    available = sorted(set(measured.values_list("shots", flat=True)))
    if shots is None:
        shots = 5 if 5 in available else (available[0] if available else 5)
    cells: dict[tuple[int, int], Evaluation] = {}
    sources: dict[int, MetaModel] = {}
    for evaluation in (
        measured.filter(shots=shots).select_related("model__parent").order_by("-created_at", "-id")
    ):
        source = transfer_source(user=user, evaluation=evaluation)
        if (source.pk, evaluation.target_domain_id) not in cells:
            cells[(source.pk, evaluation.target_domain_id)] = evaluation
            sources[source.pk] = source
    targets = sorted({e.target_domain for e in cells.values()}, key=lambda d: (d.name, d.pk))
    return TransferMatrix(
        shots, metric, sorted(sources.values(), key=lambda m: (m.name, m.pk)), targets, cells, available
    )
