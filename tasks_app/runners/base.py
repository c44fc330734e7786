"""The base of every job runner: one subclass per job kind, whose ``run()`` does the work.

As NetBox's ``JobRunner``: ``tasks_app.runtime.job_run`` claims the job, then calls
``Runner(job, ...).run()`` inside its heartbeat and shutdown handling, and fails the job
on any exception. A ``run()`` loads the data, makes one call to the engine's experiment
protocol (:mod:`learning.engine.experiments`) with :meth:`JobRunner.hooks`, and registers
what the report holds, ending with ``succeed()``, or with ``stopped()`` when the engine
stopped early (a cancel, or a worker shutting down).
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any, ClassVar

from learning.artifacts import artifact_read
from learning.builtin_domains import family_params
from learning.engine.checkpoints import CheckpointStore
from learning.engine.data import load_image_arrays, load_text_arrays
from learning.engine.experiments import EpisodePlan, Hooks
from learning.engine.functions import FunctionFamily
from learning.engine.progress import ProgressFn, StopFn
from learning.models import SourceDomain
from learning.services.task_specs import split_classes
from tasks_app.lifecycle import job_finish, job_finish_stopped
from tasks_app.models import Job
from tasks_app.recorder import JobProgressRecorder


class JobRunner:
    """Runs one claimed job of kind ``kind``; a subclass implements ``run()``.

    Attributes:
        job: the claimed Job row.
        recorder: writes progress to the row and sends it (its phase starts as ``phase``).
        should_stop: the engine's ``should_stop``: True once the job is cancelled or the
            worker is shutting down.
        also_report: receives every training progress event too (the command line's bar).
    """

    kind: ClassVar[str]
    phase: ClassVar[str] = "training"
    """The recorder's phase for progress events until the runner sets another."""

    def __init__(self, job: Job, *, should_stop: StopFn, also_report: ProgressFn | None = None) -> None:
        self.job = job
        self.should_stop = should_stop
        self.also_report = also_report
        self.recorder = JobProgressRecorder(job, phase=self.phase)

    def run(self) -> None:
        """Load the data, make one engine call, register the results; then ``succeed()`` or ``stopped()``."""
        raise NotImplementedError

    def hooks(self, stores: Mapping[str, CheckpointStore] | None = None) -> Hooks:
        """The experiment's hooks: progress to the job, its stop flag, ``stores`` by run name."""
        stores = stores or {}
        return Hooks(on_progress=self.progress, should_stop=self.should_stop, checkpoint_for=stores.get)

    def progress(self, phase: str, event: dict[str, Any]) -> None:
        """An experiment's progress: training steps (to ``also_report`` too) or evaluation episodes."""
        if "step" in event:
            self.recorder.phase = phase
            self.recorder(event)
            if self.also_report is not None:
                self.also_report(event)
        else:
            self.recorder.phase_progress(
                phase=phase, done=event["done"], total=event["total"], eta=event["eta_seconds"]
            )

    def succeed(self, *, model=None, evaluations=()) -> None:
        """End the job as succeeded, linking the model and evaluations it produced."""
        job_finish(self.job, Job.Status.SUCCEEDED, model=model, evaluations=evaluations)

    def stopped(self) -> None:
        """End a run the engine stopped early: cancelled, or requeued to resume from its checkpoint."""
        self.recorder.flush()
        job_finish_stopped(self.job)


def domain_data(domain: SourceDomain):
    """The engine's data object for a domain: image arrays, text embeddings, or a function family."""
    if domain.is_image:
        return load_image_arrays(io.BytesIO(artifact_read(domain.arrays_file)))
    if domain.is_text:
        return load_text_arrays(io.BytesIO(artifact_read(domain.arrays_file)))
    return FunctionFamily.from_spec(*family_params(domain.generator))


def episode_plan(job: Job) -> EpisodePlan:
    """The held-out episodes of the job's task spec: its meta-test classes, ``eval_episodes`` of them."""
    spec, domain = job.task_spec, job.domain
    classes = (
        split_classes(domain=domain, split=spec.split, part="meta_test") if domain.is_classification else []
    )
    return EpisodePlan(
        n_way=spec.n_way,
        k_shot=spec.k_shot,
        query=spec.query_size,
        classes=classes,
        within_group=spec.within_group,
        episodes=job.config["eval_episodes"],
        seed=spec.seed,
    )
