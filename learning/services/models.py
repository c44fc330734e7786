"""Registering trained models (weights in artifact storage) and their evaluations."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable

from django.db import transaction

from learning.artifacts import artifact_save, artifacts_delete
from learning.engine.config import ConfigError
from learning.engine.weights_check import check_weights_file
from learning.errors import InvalidInput
from learning.events import catalog_changed_on_commit
from learning.models import MAX_POSITIVE_INT, Evaluation, MetaModel, SourceDomain, TaskSpec, Visibility


def metamodel_register(
    *,
    name: str,
    algorithm: str,
    architecture: str,
    weights: bytes,
    hyperparameters: dict | None = None,
    trained_on: Iterable[SourceDomain] = (),
    task_spec: TaskSpec | None = None,
    parent: MetaModel | None = None,
    metrics: dict | None = None,
    description: str = "",
    owner=None,
    visibility: str = Visibility.PUBLIC,
) -> MetaModel:
    """Store ``weights`` (a MetaKB weights file) and create the model row that points at them.

    Weights may come from anyone, so they are checked from their header before anything
    is stored (:func:`check_weights_file`): the config inside passes the bounds a job's
    config has, and the file is a model of ``algorithm`` on ``architecture`` whose tensors
    fit it. The weights file is removed again if the row cannot be written, so a failure
    leaves neither a row nor an orphan file.
    """
    if not name.strip():
        raise InvalidInput("a model needs a name", field="name")
    if not weights:
        raise InvalidInput("the weights are empty", field="weights")
    try:
        check_weights_file(weights, algorithm=algorithm, architecture=architecture)
    except ConfigError as exc:
        inside = exc.field.startswith("model_config")
        raise InvalidInput(
            f"the weights file's {exc}" if inside else str(exc).split(": ", 1)[-1],
            field="weights" if inside else exc.field,
        ) from exc
    # The name comes from the content only: user-given fields (an algorithm "a/b/c") never
    # shape paths in storage.
    stored = artifact_save(f"models/{hashlib.sha256(weights).hexdigest()[:32]}.safetensors", weights)
    try:
        with transaction.atomic():
            model = MetaModel.objects.create(
                name=name,
                algorithm=algorithm,
                architecture=architecture,
                hyperparameters=hyperparameters or {},
                task_spec=task_spec,
                parent=parent,
                weights_file=stored.name,
                weights_sha256=stored.sha256,
                weights_size=stored.size,
                metrics=metrics or {},
                description=description,
                owner=owner,
                visibility=visibility,
            )
            model.trained_on.set(list(trained_on))
            catalog_changed_on_commit()
    except Exception:
        artifacts_delete([stored.name])
        raise
    return model


def evaluation_create(
    *,
    model: MetaModel,
    target_domain: SourceDomain,
    shots: int,
    metric: str,
    mean: float,
    ci95: float,
    episodes: int,
    task_spec: TaskSpec | None = None,
    baseline_mean: float | None = None,
    baseline_ci95: float | None = None,
    gain_ci95: float | None = None,
) -> Evaluation:
    """Record a measured result; the numbers must be finite and the CI half-width non-negative."""
    if metric not in Evaluation.Metric.values:
        raise InvalidInput(
            f"unknown metric {metric!r}; one of {', '.join(Evaluation.Metric.values)}", field="metric"
        )
    optional = {"baseline_mean": baseline_mean, "baseline_ci95": baseline_ci95, "gain_ci95": gain_ci95}
    numbers = {"mean": mean, "ci95": ci95, **{k: v for k, v in optional.items() if v is not None}}
    for field, value in numbers.items():
        if not math.isfinite(value):
            raise InvalidInput(f"{field} must be a finite number, got {value}", field=field)
    for field in ("ci95", "baseline_ci95", "gain_ci95"):
        if numbers.get(field, 0) < 0:
            raise InvalidInput(
                f"{field} is a half-width and cannot be negative, got {numbers[field]}", field=field
            )
    if gain_ci95 is not None and baseline_mean is None:
        raise InvalidInput("gain_ci95 needs the baseline_mean it is measured against", field="gain_ci95")
    if episodes < 1:
        raise InvalidInput(f"episodes must be at least 1, got {episodes}", field="episodes")
    if shots < 1:
        raise InvalidInput(f"shots must be at least 1, got {shots}", field="shots")
    for field, count in (("episodes", episodes), ("shots", shots)):
        if count > MAX_POSITIVE_INT:
            raise InvalidInput(f"{field} must be at most {MAX_POSITIVE_INT}, got {count}", field=field)
    with transaction.atomic():
        evaluation = Evaluation.objects.create(
            model=model,
            target_domain=target_domain,
            task_spec=task_spec,
            shots=shots,
            metric=metric,
            mean=mean,
            ci95=ci95,
            episodes=episodes,
            baseline_mean=baseline_mean,
            baseline_ci95=baseline_ci95,
            gain_ci95=gain_ci95,
        )
        catalog_changed_on_commit()
    return evaluation
