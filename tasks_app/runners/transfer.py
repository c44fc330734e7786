"""``transfer`` jobs: a KB model transferred onto the target and a from-scratch baseline, compared.

:func:`learning.engine.experiments.transfer_and_compare` trains both with the same budget on
the task spec's meta-train classes of the target, each from its own checkpoint, then
compares them on identical episodes of its meta-test classes at every shot count in
``config["shots"]``. The transferred model is registered with the paired results.
"""

from __future__ import annotations

from learning.artifacts import artifact_read
from learning.engine.algorithms.transfer import TransferData
from learning.engine.experiments import transfer_and_compare
from learning.errors import InvalidInput
from learning.models import MetaModel
from learning.services.task_specs import split_classes
from tasks_app.checkpoints import ArtifactCheckpointStore
from tasks_app.lifecycle import job_log_resumption
from tasks_app.models import Job
from tasks_app.runners.base import JobRunner, domain_data, episode_plan
from tasks_app.runners.results import evaluations_record, trained_model_register


def _source_class_names(model: MetaModel) -> list[str]:
    """Names of the classes a catalog model was meta-trained on (empty when unknown)."""
    spec = model.task_spec
    if spec is None or not spec.domain.is_classification:
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
        stores = {run: ArtifactCheckpointStore(job.pk, run=run) for run in ("transfer", "scratch")}
        for run, store in stores.items():
            job_log_resumption(job, store, f"the {run} run")
        report = transfer_and_compare(
            engine, self._data(), episode_plan(job), job.config["shots"], self.hooks(stores)
        )
        if report.stopped:
            self.stopped()
            return
        model = trained_model_register(
            job,
            report.transferred,
            description=f"Transferred from {source.name} by job {job.pk} ({engine['algorithm']}).",
            parent=source,
        )
        evaluations = evaluations_record(job, model, [score.as_dict() for score in report.scores])
        for store in stores.values():
            store.clear()
        self.succeed(model=model, evaluations=evaluations)

    def _data(self) -> TransferData:
        """The target's arrays and the source's weights (and, for ``instance``, its training domain)."""
        source = self.job.source_model
        source_data = None
        if self.job.config["engine"]["algorithm"] == "instance":
            source_domain = source.trained_on.filter(modality=self.job.domain.modality).first()
            if source_domain is None:
                raise InvalidInput("instance transfer needs the source model's training domain")
            source_data = domain_data(source_domain)
        return TransferData.from_weights_bytes(
            domain_data(self.job.domain),
            artifact_read(source.weights_file),
            source_data=source_data,
            source_class_names=_source_class_names(source),
        )
