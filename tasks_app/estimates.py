"""How long a meta-training job will train, from the speed measured on this site.

Every finished meta-training job records its training time (``train_seconds`` on the model
it registered). :func:`seconds_per_task_step` gives, per algorithm, the median over the
latest jobs of seconds per training step per task of the meta-batch, which the launch form
multiplies by the steps and meta-batch asked for. It measures this site's workers, whatever
their hardware, and says nothing where no job of the algorithm has finished yet.
"""

from __future__ import annotations

import statistics

from tasks_app.models import Job

SAMPLES = 10
"""The latest jobs of an algorithm that an estimate is the median of."""


def seconds_per_task_step() -> dict[str, dict[str, float]]:
    """``{algorithm: {"seconds": median s per step per task, "jobs": n}}`` from finished jobs."""
    rates: dict[str, list[float]] = {}
    finished = (
        Job.objects.filter(kind=Job.Kind.META_TRAIN, status=Job.Status.SUCCEEDED, result_model__isnull=False)
        .select_related("result_model")
        .order_by("-finished_at")[:200]
    )
    for job in finished:
        engine = job.config.get("engine", {})
        seconds = job.result_model.metrics.get("train_seconds")
        steps, batch = engine.get("steps"), engine.get("meta_batch") or 1
        algorithm = job.config.get("algorithm", "")
        if not seconds or not steps or len(rates.get(algorithm, [])) >= SAMPLES:
            continue
        rates.setdefault(algorithm, []).append(seconds / steps / batch)
    return {a: {"seconds": statistics.median(r), "jobs": len(r)} for a, r in rates.items()}
