"""``meta_train`` jobs: train on the job's domain, evaluate on its meta-test split, register the model."""

from __future__ import annotations

from learning.engine.experiments import meta_train_and_evaluate
from tasks_app.checkpoints import ArtifactCheckpointStore
from tasks_app.lifecycle import job_log_resumption
from tasks_app.models import Job
from tasks_app.runners.base import JobRunner, domain_data, episode_plan
from tasks_app.runners.results import evaluations_record, trained_model_register


class MetaTrainRunner(JobRunner):
    """Meta-trains from the job's last checkpoint, then evaluates the result on held-out classes or tasks."""

    kind = Job.Kind.META_TRAIN

    def run(self) -> None:
        job = self.job
        store = ArtifactCheckpointStore(job.pk)
        job_log_resumption(job, store, "training")
        report = meta_train_and_evaluate(
            job.config["engine"], domain_data(job.domain), episode_plan(job), self.hooks({"train": store})
        )
        if report.stopped:
            self.stopped()
            return
        model = trained_model_register(job, report.result, description=f"Meta-trained by job {job.pk}.")
        evaluations = evaluations_record(job, model, [score.as_dict() for score in report.scores])
        store.clear()
        self.succeed(model=model, evaluations=evaluations)
