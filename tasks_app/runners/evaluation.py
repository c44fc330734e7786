"""Evaluating a model on the job's task spec, as the literature does, with the job's progress.

Images: accuracy over ``eval_episodes`` episodes of the task spec's meta-test classes.
Functions: MSE and Gaussian log-likelihood on held-out tasks of the ``test`` seed stream.
Each returns engine outcomes or the fields of the Evaluation rows to create.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from learning.engine.evaluation import evaluate_classifier
from learning.engine.functions import heldout_tasks
from learning.engine.loop import TrainResult
from learning.engine.progress import StopFn
from learning.engine.regression_eval import evaluate_neural_process
from learning.engine.weights import load_model
from learning.models import Evaluation
from learning.services.task_specs import split_classes
from tasks_app.models import Job
from tasks_app.recorder import JobProgressRecorder


class EvaluationProgress:
    """Progress of one or more evaluations in a row, reported as one phase of the job.

    Hands each engine evaluation ``on_progress`` and ``should_stop``; episodes are counted
    across all of them, and the ETA is the episodes left at the rate measured so far.
    """

    def __init__(self, recorder: JobProgressRecorder, stop: StopFn, *, total_episodes: int) -> None:
        self.recorder, self.stop, self.total = recorder, stop, total_episodes
        self._finished = 0

    def callbacks(self) -> dict[str, Any]:
        """The keyword arguments ``on_progress`` and ``should_stop`` of one engine evaluation."""
        return {"on_progress": self._report, "should_stop": self.stop}

    def _report(self, event: dict[str, Any]) -> None:
        done = self._finished + event["done"]
        rate = event["episodes_per_sec"]
        eta = (self.total - done) / rate if rate else None
        self.recorder.phase_progress(phase="evaluating", done=done, total=self.total, eta=eta)
        if event["done"] == event["total"]:
            self._finished += event["total"]


def evaluate_accuracy(
    job: Job,
    data,
    progress: EvaluationProgress,
    *,
    algorithm: str,
    weights,
    model_config: dict[str, Any],
    shots: int,
    seen: Sequence[str] | None = None,
):
    """The engine's accuracy outcome of a classifier on ``shots``-shot episodes of the meta-test classes.

    ``data`` holds the job's domain as image arrays; ``seen`` names classes the model was
    trained on, which the engine refuses to evaluate on.
    """
    spec, domain = job.task_spec, job.domain
    return evaluate_classifier(
        algorithm,
        weights,
        model_config,
        data,
        classes=split_classes(domain=domain, split=spec.split, part="meta_test"),
        n_way=spec.n_way,
        k_shot=shots,
        query=spec.query_size,
        within_group=spec.within_group,
        episodes=job.config["eval_episodes"],
        seed=spec.seed,
        seen_class_names=seen,
        **progress.callbacks(),
    )


def evaluate_trained_accuracy(
    job: Job, result: TrainResult, data, progress: EvaluationProgress, *, shots: int
):
    """``evaluate_accuracy`` of a model the job just trained, kept off the classes it trained on."""
    return evaluate_accuracy(
        job,
        data,
        progress,
        algorithm=result.algorithm,
        weights=result.weights,
        model_config=result.model_config,
        shots=shots,
        seen=result.train_class_names,
    )


def accuracy_row(outcome, *, shots: int) -> dict[str, Any]:
    """The fields of the Evaluation row of an accuracy outcome."""
    return {
        "shots": shots,
        "metric": Evaluation.Metric.ACCURACY,
        "mean": outcome.mean,
        "ci95": outcome.ci95,
        "episodes": outcome.episodes,
    }


def evaluate_regression(
    job: Job, result: TrainResult, family, progress: EvaluationProgress
) -> list[dict[str, Any]]:
    """MSE and Gaussian log-likelihood of a Neural Process on held-out tasks of the ``test`` seed stream.

    Returns the fields of the two Evaluation rows to create.
    """
    spec = job.task_spec
    tasks = heldout_tasks(
        family,
        seed=spec.seed,
        n_tasks=job.config["eval_episodes"],
        k_context=spec.k_shot,
        n_target=spec.query_size,
    )
    report = evaluate_neural_process(
        result.algorithm, load_model(result.weights, result.model_config), tasks, **progress.callbacks()
    )
    return [
        {
            "shots": spec.k_shot,
            "metric": metric,
            "mean": report.scores[key].mean,
            "ci95": report.scores[key].ci95,
            "episodes": report.scores[key].n_tasks,
        }
        for key, metric in (("mse", Evaluation.Metric.MSE), ("log_lik", Evaluation.Metric.LOG_LIKELIHOOD))
    ]
