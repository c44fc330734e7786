"""Launching jobs: validate a request, write the Job, enqueue it on commit; and cancelling them.

Every check runs before the first write. What happens to a job after it is queued is in
``tasks_app.lifecycle`` (status changes) and ``tasks_app.runtime`` (the worker side).
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.http import Http404
from django.utils import timezone

from learning import selectors as catalog
from learning.algorithms import model_domain
from learning.artifacts import artifacts_delete
from learning.errors import InvalidInput
from learning.models import SourceDomain, TaskSpec, Visibility
from learning.services.domains import domain_upload_stage
from learning.services.task_specs import split_classes, task_spec_get_or_create
from tasks_app.engine_config import (
    MAX_EVAL_EPISODES,
    MIN_EVAL_EPISODES,
    TRANSFER_SHOTS,
    engine_config_for,
    transfer_config_for,
)
from tasks_app.lifecycle import job_discard_upload_on_commit, job_enqueue_on_commit
from tasks_app.models import Job
from tasks_app.recorder import publish_job

TRAINING_QUEUE = "gpu"
LIGHT_QUEUE = "cpu"


def _visible_task_spec(*, user, domain: SourceDomain, task_spec_id: Any) -> TaskSpec:
    try:
        spec = catalog.task_spec_list(user=user).get(pk=int(task_spec_id))
    except (TypeError, ValueError, TaskSpec.DoesNotExist) as exc:
        raise InvalidInput(f"no task spec {task_spec_id!r}", field="task_spec") from exc
    if spec.domain_id != domain.pk:
        raise InvalidInput(
            f"task spec {spec.pk} is over {spec.domain.name!r}, not {domain.name!r}", field="task_spec"
        )
    return spec


def _visibility(asked: str | None, *inputs: Any) -> str:
    """The visibility of what a job makes: as ``asked``, or private when any input is private.

    Nothing derived from a private domain or model (its name in a job title, its task spec)
    becomes public unless its owner says so.
    """
    if asked is None:
        private = any(getattr(i, "visibility", None) == Visibility.PRIVATE for i in inputs)
        return Visibility.PRIVATE if private else Visibility.PUBLIC
    if asked not in Visibility.values:
        raise InvalidInput(
            f"visibility must be one of {Visibility.values}, got {asked!r}", field="visibility"
        )
    return asked


def _task_spec_for(
    *, owner, domain: SourceDomain, task_spec_id: Any, task: dict[str, Any] | None, visibility: str
) -> TaskSpec:
    """The named task spec (visible to ``owner``, over ``domain``), or the one ``task`` describes."""
    if task_spec_id not in (None, ""):
        return _visible_task_spec(user=owner, domain=domain, task_spec_id=task_spec_id)
    return task_spec_get_or_create(domain=domain, owner=owner, visibility=visibility, **(task or {}))


def _eval_episodes(value: Any) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not MIN_EVAL_EPISODES <= value <= MAX_EVAL_EPISODES
    ):
        raise InvalidInput(
            f"eval_episodes must be a whole number from {MIN_EVAL_EPISODES} to {MAX_EVAL_EPISODES}, "
            f"got {value!r}",
            field="eval_episodes",
        )
    return value


@transaction.atomic
def job_create_meta_train(
    *,
    owner,
    domain_slug: str,
    algorithm: str,
    hyperparameters: dict[str, Any] | None = None,
    task_spec_id: int | None = None,
    task: dict[str, Any] | None = None,
    model_name: str = "",
    eval_episodes: int = MIN_EVAL_EPISODES,
    visibility: str | None = None,
    enqueue: bool = True,
) -> Job:
    """Validate a meta-training request against the catalog and the engine, write the Job, enqueue it.

    ``task_spec_id`` picks an existing task spec; otherwise ``task`` (n_way, k_shot,
    query_size, within_group, seed, split) defines a new one. Every check runs before the
    first write, and a failure rolls back a task spec created for this request.
    """
    try:
        domain = catalog.domain_get(user=owner, slug=domain_slug)
    except Http404 as exc:
        raise InvalidInput(f"no domain {domain_slug!r}", field="domain") from exc
    visibility = _visibility(visibility, domain)
    eval_episodes = _eval_episodes(eval_episodes)
    spec = _task_spec_for(
        owner=owner, domain=domain, task_spec_id=task_spec_id, task=task, visibility=visibility
    )
    engine = engine_config_for(
        algorithm=algorithm, hyperparameters=hyperparameters or {}, domain=domain, task_spec=spec
    )
    if domain.is_classification and not split_classes(domain=domain, split=spec.split, part="meta_test"):
        raise InvalidInput("the task spec's meta-test split is empty", field="task_spec")
    job = Job.objects.create(
        kind=Job.Kind.META_TRAIN,
        owner=owner,
        domain=domain,
        task_spec=spec,
        queue=TRAINING_QUEUE,
        total_steps=engine.get("steps", 0),
        config={
            "algorithm": algorithm,
            "engine": engine,
            "model_name": model_name.strip() or f"{algorithm} on {domain.name}",
            "eval_episodes": eval_episodes,
            "visibility": visibility,
        },
    )
    if enqueue:
        job_enqueue_on_commit(job)
    return job


@transaction.atomic
def job_create_evaluate(
    *,
    owner,
    model_id: int,
    task_spec_id: int | None = None,
    episodes: int = MIN_EVAL_EPISODES,
    enqueue: bool = True,
) -> Job:
    """Validate a request to evaluate a catalog model on a task spec's meta-test classes, write the Job.

    Without ``task_spec_id`` the model's own task spec is used. Light work: queue ``cpu``.
    """
    try:
        model = catalog.metamodel_get(user=owner, pk=int(model_id))
    except (Http404, TypeError, ValueError) as exc:
        raise InvalidInput(f"no model {model_id!r}", field="model") from exc
    kind = model_domain(model)
    if kind is None:
        raise InvalidInput(
            f"{model.algorithm!r} models are not evaluated on classification episodes", field="model"
        )
    if task_spec_id in (None, ""):
        if model.task_spec is None:
            raise InvalidInput("the model has no task spec of its own; name one", field="task_spec")
        task_spec_id = model.task_spec_id
    spec = catalog.task_spec_list(user=owner).filter(pk=task_spec_id).first()
    if spec is None:
        raise InvalidInput(f"no task spec {task_spec_id!r}", field="task_spec")
    if spec.domain.engine_domain != kind:
        raise InvalidInput(
            f"this {kind} model is evaluated on {kind} domains; task spec {spec.pk} is over a "
            f"{spec.domain.get_modality_display().lower()} domain",
            field="task_spec",
        )
    job = Job.objects.create(
        kind=Job.Kind.EVALUATE,
        owner=owner,
        domain=spec.domain,
        task_spec=spec,
        source_model=model,
        queue=LIGHT_QUEUE,
        total_steps=1,
        config={"algorithm": model.algorithm, "eval_episodes": _eval_episodes(episodes)},
    )
    if enqueue:
        job_enqueue_on_commit(job)
    return job


@transaction.atomic
def job_create_transfer(
    *,
    owner,
    source_model_id: int,
    target_domain_slug: str,
    method: str,
    hyperparameters: dict[str, Any] | None = None,
    task_spec_id: int | None = None,
    task: dict[str, Any] | None = None,
    eval_episodes: int = MIN_EVAL_EPISODES,
    model_name: str = "",
    visibility: str | None = None,
    enqueue: bool = True,
) -> Job:
    """Validate a transfer of a KB model onto a target domain, write the Job, enqueue it.

    The worker trains the transferred model and a from-scratch baseline with the same
    budget on the task spec's meta-train classes of the target, then compares them on
    identical episodes of its meta-test classes at every shot count the target allows.
    """
    try:
        source = catalog.metamodel_get(user=owner, pk=int(source_model_id))
    except (Http404, TypeError, ValueError) as exc:
        raise InvalidInput(f"no model {source_model_id!r}", field="source_model") from exc
    kind = model_domain(source)
    if kind is None:
        raise InvalidInput(
            f"{source.algorithm!r} models have no image or text backbone to transfer", field="source_model"
        )
    try:
        target = catalog.domain_get(user=owner, slug=target_domain_slug)
    except Http404 as exc:
        raise InvalidInput(f"no domain {target_domain_slug!r}", field="domain") from exc
    if target.engine_domain != kind:
        raise InvalidInput(
            f"this {kind} model transfers to {kind} domains; {target.name!r} is a "
            f"{target.get_modality_display().lower()} domain",
            field="domain",
        )
    visibility = _visibility(visibility, source, target)
    eval_episodes = _eval_episodes(eval_episodes)
    spec = _task_spec_for(
        owner=owner, domain=target, task_spec_id=task_spec_id, task=task, visibility=visibility
    )
    engine = transfer_config_for(
        method=method,
        hyperparameters=hyperparameters or {},
        source_model=source,
        target_domain=target,
        task_spec=spec,
    )
    shots = transfer_shots(target, spec)
    job = Job.objects.create(
        kind=Job.Kind.TRANSFER,
        owner=owner,
        domain=target,
        task_spec=spec,
        source_model=source,
        queue=TRAINING_QUEUE,
        total_steps=2 * engine["steps"],
        config={
            "algorithm": method,
            "engine": engine,
            "shots": shots,
            "model_name": model_name.strip() or f"{source.name} → {target.name} ({method})",
            "eval_episodes": eval_episodes,
            "visibility": visibility,
        },
    )
    if enqueue:
        job_enqueue_on_commit(job)
    return job


def job_create_import(
    *,
    owner,
    upload: Any,
    name: str,
    visibility: str = Visibility.PUBLIC,
    description: str = "",
    citation: str = "",
    license: str = "",
    enqueue: bool = True,
) -> Job:
    """Stage an uploaded zip (cheap checks, then stored), write an ``import`` Job for it, enqueue it.

    Bad input raises the ``InvalidInput`` an inline import would, before anything is
    written. The job has no domain until it succeeds; its config names the stored upload,
    which is deleted when the job ends, however it ends. Light work: queue ``cpu``.
    """
    staged = domain_upload_stage(upload=upload, name=name, visibility=visibility, license=license)
    try:
        with transaction.atomic():
            job = Job.objects.create(
                kind=Job.Kind.IMPORT,
                owner=owner,
                queue=LIGHT_QUEUE,
                total_steps=1,
                config={
                    "name": staged.name,
                    "description": description,
                    "citation": citation,
                    "visibility": visibility,
                    "license": license,
                    "upload": staged.path,
                    "filename": staged.filename,
                    "size": staged.size,
                    "sha256": staged.sha256,
                },
            )
            if enqueue:
                job_enqueue_on_commit(job)
    except BaseException:
        artifacts_delete([staged.path])
        raise
    job.refresh_from_db(fields=["status"])  # the enqueue fails the job if the broker is down
    return job


def transfer_shots(domain: SourceDomain, spec: TaskSpec) -> list[int]:
    """The shot counts of TRANSFER_SHOTS that every meta-test class of the target can supply.

    The task spec's own check (``k_shot + query_size`` fits every class) guarantees 1 shot.
    """
    counts = [
        domain.classes[i]["count"] for i in split_classes(domain=domain, split=spec.split, part="meta_test")
    ]
    return [k for k in TRANSFER_SHOTS if k + spec.query_size <= min(counts)]


def job_cancel(*, job: Job) -> Job:
    """Ask a job to stop. A queued job is cancelled at once; a running one stops at its next step."""
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job.pk)
        if job.is_final:
            raise InvalidInput(
                f"job {job.pk} has already ended ({job.get_status_display().lower()}); nothing to cancel",
                field="status",
            )
        job.cancel_requested = True
        fields = ["cancel_requested"]
        if job.status == Job.Status.QUEUED:
            job.status, job.finished_at = Job.Status.CANCELLED, timezone.now()
            fields += ["status", "finished_at"]
            job_discard_upload_on_commit(job)
        job.save(update_fields=fields)
    publish_job(job)
    return job
