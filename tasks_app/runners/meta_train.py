"""``meta_train`` jobs: train on the job's domain, evaluate on its meta-test split, register the model."""

from __future__ import annotations

from typing import Any

from learning.engine.algorithms import train
from learning.engine.loop import TrainResult
from tasks_app.checkpoints import ArtifactCheckpointStore
from tasks_app.lifecycle import job_log_resumption
from tasks_app.models import Job
from tasks_app.runners.base import JobRunner, domain_data
from tasks_app.runners.evaluation import (
    EvaluationProgress,
    accuracy_row,
    evaluate_regression,
    evaluate_trained_accuracy,
)
from tasks_app.runners.results import evaluations_record, job_metrics, trained_model_register


class MetaTrainRunner(JobRunner):
    """Meta-trains from the job's last checkpoint, then evaluates the result on held-out classes or tasks."""

    kind = Job.Kind.META_TRAIN

    def run(self) -> None:
        job = self.job
        data = domain_data(job.domain)
        store = ArtifactCheckpointStore(job.pk)
        job_log_resumption(job, store, "training")
        result = train(
            job.config["engine"],
            data,
            on_progress=self.report,
            should_stop=self.should_stop,
            checkpoint=store,
        )
        if result.stopped:
            self.stopped()
            return

        self.recorder.write(
            step=result.steps_done,
            total=job.total_steps,
            metrics=job_metrics(result),
            eta=0.0,
            phase="evaluating",
        )
        rows = self._evaluate_on_meta_test(result, data)
        model = trained_model_register(job, result, description=f"Meta-trained by job {job.pk}.")
        evaluations = evaluations_record(job, model, rows)
        store.clear()
        self.succeed(model=model, evaluations=evaluations)

    def _evaluate_on_meta_test(self, result: TrainResult, data) -> list[dict[str, Any]]:
        """The literature's protocol on held-out classes (images) or tasks (functions): Evaluation fields."""
        job = self.job
        progress = EvaluationProgress(
            self.recorder, self.should_stop, total_episodes=job.config["eval_episodes"]
        )
        if not job.domain.is_image:
            return evaluate_regression(job, result, data, progress)
        shots = job.task_spec.k_shot
        outcome = evaluate_trained_accuracy(job, result, data, progress, shots=shots)
        return [accuracy_row(outcome, shots=shots)]
