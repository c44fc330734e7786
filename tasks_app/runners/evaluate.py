"""``evaluate`` jobs: a catalog model's scores on a task spec's held-out episodes, recorded."""

from __future__ import annotations

from learning.artifacts import artifact_read
from learning.engine.experiments import evaluate
from learning.engine.weights import weights_from_bytes
from learning.services.task_specs import split_classes
from tasks_app.models import Job
from tasks_app.runners.base import JobRunner, domain_data, episode_plan
from tasks_app.runners.results import evaluations_record


class EvaluateRunner(JobRunner):
    """Evaluates the job's source model; the job links the model and its new Evaluation."""

    kind = Job.Kind.EVALUATE

    def run(self) -> None:
        job, model = self.job, self.job.source_model
        weights, model_config, algorithm = weights_from_bytes(artifact_read(model.weights_file))
        self.recorder.write(step=0, total=1, metrics={}, eta=None, phase="evaluating")
        scores = evaluate(
            algorithm,
            weights,
            model_config,
            domain_data(job.domain),
            episode_plan(job),
            seen_class_names=self._classes_trained_on(),
            hooks=self.hooks(),
        )
        evaluations = evaluations_record(job, model, [score.as_dict() for score in scores])
        self.succeed(model=model, evaluations=evaluations)

    def _classes_trained_on(self) -> list[str] | None:
        """On the model's own training domain, its meta-train classes (the engine refuses them); else None."""
        model, domain = self.job.source_model, self.job.domain
        if model.task_spec is None or model.task_spec.domain_id != self.job.domain_id:
            return None
        return [
            domain.classes[i]["name"]
            for i in split_classes(domain=domain, split=model.task_spec.split, part="meta_train")
        ]
