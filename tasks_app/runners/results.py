"""What a run leaves in the catalog: the model it trained and the Evaluation rows it measured."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from learning.engine.loop import TrainResult
from learning.engine.weights import weights_to_bytes
from learning.models import Evaluation, MetaModel
from learning.services.models import evaluation_create, metamodel_register
from tasks_app.models import Job


def job_metrics(result: TrainResult) -> dict[str, float]:
    """The numeric metrics of a training result, as floats (for the Job row and the model)."""
    return {k: float(v) for k, v in result.metrics.items() if isinstance(v, (int, float))}


def trained_model_register(
    job: Job, result: TrainResult, *, description: str, parent: MetaModel | None = None
) -> MetaModel:
    """Register the model a job trained on its domain and task spec, under the job's name and owner.

    Its hyperparameters are the job's engine config plus the ``model_config`` that rebuilds the net.
    """
    return metamodel_register(
        name=job.config["model_name"],
        algorithm=result.algorithm,
        architecture=result.model_config["arch"],
        weights=weights_to_bytes(result.weights, result.model_config, result.algorithm),
        hyperparameters={**job.config["engine"], "model_config": result.model_config},
        trained_on=[job.domain],
        task_spec=job.task_spec,
        parent=parent,
        metrics=job_metrics(result),
        description=description,
        owner=job.owner,
        visibility=job.config["visibility"],
    )


def evaluations_record(job: Job, model: MetaModel, rows: Iterable[dict[str, Any]]) -> list[Evaluation]:
    """Create one Evaluation of ``model`` on the job's domain and task spec per row of fields."""
    return [
        evaluation_create(model=model, target_domain=job.domain, task_spec=job.task_spec, **row)
        for row in rows
    ]
