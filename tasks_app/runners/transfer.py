"""``transfer`` jobs: a KB model transferred onto the target and a from-scratch baseline, compared.

Both train with the same budget on the task spec's meta-train classes of the target (the
baseline as ``finetune`` does, from a fresh init), each from its own checkpoint; then
they are compared on identical episodes of its meta-test classes at every shot count in
``config["shots"]``. The transferred model is registered with the paired results.
"""

from __future__ import annotations

from typing import Any

from learning.artifacts import artifact_read
from learning.engine.algorithms import train
from learning.engine.algorithms.transfer import TransferData, scratch_config
from learning.engine.evaluation import paired_comparison
from learning.engine.loop import TrainResult
from learning.engine.progress import ProgressFn
from learning.errors import InvalidInput
from learning.models import MetaModel, SourceDomain
from learning.services.task_specs import split_classes
from tasks_app.checkpoints import ArtifactCheckpointStore
from tasks_app.lifecycle import job_log_resumption
from tasks_app.models import Job
from tasks_app.runners.base import JobRunner, domain_data
from tasks_app.runners.evaluation import EvaluationProgress, accuracy_row, evaluate_trained_accuracy
from tasks_app.runners.results import evaluations_record, job_metrics, trained_model_register


def _source_class_names(model: MetaModel) -> list[str]:
    """Names of the classes a catalog model was meta-trained on (empty when unknown)."""
    spec = model.task_spec
    if spec is None or not spec.domain.is_image:
        return []
    return [
        spec.domain.classes[i]["name"]
        for i in split_classes(domain=spec.domain, split=spec.split, part="meta_train")
    ]


class TransferRunner(JobRunner):
    """Transferred model and from-scratch baseline, then a paired comparison at every shot count."""

    kind = Job.Kind.TRANSFER

    def run(self) -> None:
        job, source = self.job, self.job.source_model
        engine = job.config["engine"]
        data = self._data()
        steps = engine["steps"]
        stores = {run: ArtifactCheckpointStore(job.pk, run=run) for run in ("transfer", "scratch")}
        for run, store in stores.items():
            job_log_resumption(job, store, f"the {run} run")
        transferred = train(
            engine,
            data,
            on_progress=self._progress(0, "transferring"),
            should_stop=self.should_stop,
            checkpoint=stores["transfer"],
        )
        if transferred.stopped:
            self.stopped()
            return
        # The baseline trains like finetune, from a fresh init: same data, steps and optimizer.
        baseline = train(
            scratch_config(engine),
            data,
            on_progress=self._progress(steps, "baseline"),
            should_stop=self.should_stop,
            checkpoint=stores["scratch"],
        )
        if baseline.stopped:
            self.stopped()
            return

        self.recorder.write(
            step=2 * steps, total=2 * steps, metrics=job_metrics(transferred), eta=0.0, phase="evaluating"
        )
        rows = self._compare(transferred, baseline, data.target)
        model = trained_model_register(
            job,
            transferred,
            description=f"Transferred from {source.name} by job {job.pk} ({engine['algorithm']}).",
            parent=source,
        )
        evaluations = evaluations_record(job, model, rows)
        for store in stores.values():
            store.clear()
        self.succeed(model=model, evaluations=evaluations)

    def _data(self) -> TransferData:
        """The target's arrays and the source's weights (and, for ``instance``, its training domain)."""
        source = self.job.source_model
        source_data = None
        if self.job.config["engine"]["algorithm"] == "instance":
            source_domain = source.trained_on.filter(
                modality=SourceDomain.Modality.IMAGE_CLASSIFICATION
            ).first()
            if source_domain is None:
                raise InvalidInput("instance transfer needs the source model's training domain")
            source_data = domain_data(source_domain)
        return TransferData.from_weights_bytes(
            domain_data(self.job.domain),
            artifact_read(source.weights_file),
            source_data=source_data,
            source_class_names=_source_class_names(source),
        )

    def _progress(self, offset: int, phase: str) -> ProgressFn:
        """``on_progress`` of one of the two runs, whose phase it sets now: steps shifted by ``offset``.

        Progress counts the steps of both runs, the transfer run's then the baseline's.
        """
        steps = self.job.config["engine"]["steps"]
        self.recorder.phase = phase

        def on_progress(event: dict[str, Any]) -> None:
            self.report({**event, "step": event["step"] + offset, "total": 2 * steps})

        return on_progress

    def _compare(self, transferred: TrainResult, baseline: TrainResult, target) -> list[dict[str, Any]]:
        """Both models on identical episodes at every shot count: the Evaluation fields, with the gain."""
        job = self.job
        shot_counts = job.config["shots"]
        progress = EvaluationProgress(
            self.recorder, self.should_stop, total_episodes=2 * len(shot_counts) * job.config["eval_episodes"]
        )
        rows = []
        for shots in shot_counts:
            ours = evaluate_trained_accuracy(job, transferred, target, progress, shots=shots)
            theirs = evaluate_trained_accuracy(job, baseline, target, progress, shots=shots)
            rows.append(
                accuracy_row(ours, shots=shots)
                | {
                    "baseline_mean": theirs.mean,
                    "baseline_ci95": theirs.ci95,
                    "gain_ci95": paired_comparison(ours, theirs)["ci95"],
                }
            )
        return rows
