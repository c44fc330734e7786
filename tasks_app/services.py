"""Job lifecycle: create (validate, write, enqueue on commit), cancel, run, and the watchdog.

``job_run`` is what a Celery worker executes; it is idempotent: a job already final,
or running on a live worker, is left alone, and a job whose worker died resumes from
its last checkpoint.
"""

from __future__ import annotations

import io
import logging
import os
import signal
import socket
import threading
import time
import traceback
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.files import File
from django.db import DatabaseError, transaction
from django.db.models import Q
from django.http import Http404
from django.utils import timezone

from learning import selectors as catalog
from learning.artifacts import artifact_read, artifact_storage, artifacts_delete
from learning.domain_files import ImportStopped
from learning.engine.progress import EvaluationStopped, ProgressMeter
from learning.errors import InvalidInput
from learning.models import IMAGE_MODEL_ALGORITHMS, Evaluation, SourceDomain, TaskSpec, Visibility
from learning.services.domains import domain_import, domain_upload_stage
from learning.services.models import evaluation_create, metamodel_register
from learning.services.task_specs import split_classes, task_spec_create
from tasks_app.checkpoints import ArtifactCheckpointStore
from tasks_app.engine_config import (
    MAX_EVAL_EPISODES,
    MIN_EVAL_EPISODES,
    TRANSFER_SHOTS,
    engine_config_for,
    transfer_config_for,
)
from tasks_app.models import Job
from tasks_app.recorder import JobProgressRecorder, publish_job

ProgressFn = Callable[[dict[str, Any]], None]

logger = logging.getLogger(__name__)

TRACEBACK_LIMIT = 8000
"""Characters of a failure's traceback kept on the Job row (its end, where the error is)."""

TRAINING_QUEUE = "gpu"
LIGHT_QUEUE = "cpu"


# --- create and cancel -----------------------------------------------------------------


def _visible_task_spec(*, user, domain: SourceDomain, task_spec_id: Any) -> TaskSpec:
    try:
        spec = catalog.task_spec_list(user=user).get(pk=int(task_spec_id))
    except (TypeError, ValueError, TaskSpec.DoesNotExist) as exc:
        raise InvalidInput(f"no task spec {task_spec_id!r}", field="task_spec") from exc
    if spec.domain_id != domain.pk:
        raise InvalidInput(
            f"task spec {spec.pk} is over {spec.domain.name!r}, not {domain.name!r}", field="task_spec"
        )
    return spec


def _task_spec_for(
    *, owner, domain: SourceDomain, task_spec_id: Any, task: dict[str, Any] | None, visibility: str
) -> TaskSpec:
    """The named task spec (visible to ``owner``, over ``domain``), or a new one from ``task``."""
    if task_spec_id not in (None, ""):
        return _visible_task_spec(user=owner, domain=domain, task_spec_id=task_spec_id)
    return task_spec_create(domain=domain, owner=owner, visibility=visibility, **(task or {}))


def _eval_episodes(value: Any) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not MIN_EVAL_EPISODES <= value <= MAX_EVAL_EPISODES
    ):
        raise InvalidInput(
            f"eval_episodes must be a whole number from {MIN_EVAL_EPISODES} to {MAX_EVAL_EPISODES}, "
            f"got {value!r}",
            field="eval_episodes",
        )
    return value


@transaction.atomic
def job_create_meta_train(
    *,
    owner,
    domain_slug: str,
    algorithm: str,
    hyperparameters: dict[str, Any] | None = None,
    task_spec_id: int | None = None,
    task: dict[str, Any] | None = None,
    model_name: str = "",
    eval_episodes: int = MIN_EVAL_EPISODES,
    visibility: str = Visibility.PUBLIC,
    enqueue: bool = True,
) -> Job:
    """Validate a meta-training request against the catalog and the engine, write the Job, enqueue it.

    ``task_spec_id`` picks an existing task spec; otherwise ``task`` (n_way, k_shot,
    query_size, within_group, seed, split) defines a new one. Every check runs before the
    first write, and a failure rolls back a task spec created for this request.
    """
    try:
        domain = catalog.domain_get(user=owner, slug=domain_slug)
    except Http404 as exc:
        raise InvalidInput(f"no domain {domain_slug!r}", field="domain") from exc
    if visibility not in Visibility.values:
        raise InvalidInput(
            f"visibility must be one of {Visibility.values}, got {visibility!r}", field="visibility"
        )
    eval_episodes = _eval_episodes(eval_episodes)
    spec = _task_spec_for(
        owner=owner, domain=domain, task_spec_id=task_spec_id, task=task, visibility=visibility
    )
    engine = engine_config_for(
        algorithm=algorithm, hyperparameters=hyperparameters or {}, domain=domain, task_spec=spec
    )
    if domain.is_image and not split_classes(domain=domain, split=spec.split, part="meta_test"):
        raise InvalidInput("the task spec's meta-test split is empty", field="task_spec")
    job = Job.objects.create(
        kind=Job.Kind.META_TRAIN,
        owner=owner,
        domain=domain,
        task_spec=spec,
        queue=TRAINING_QUEUE,
        total_steps=engine.get("steps", 0),
        config={
            "algorithm": algorithm,
            "engine": engine,
            "model_name": model_name.strip() or f"{algorithm} on {domain.name}",
            "eval_episodes": eval_episodes,
            "visibility": visibility,
        },
    )
    if enqueue:
        job_enqueue_on_commit(job)
    return job


@transaction.atomic
def job_create_evaluate(
    *,
    owner,
    model_id: int,
    task_spec_id: int | None = None,
    episodes: int = MIN_EVAL_EPISODES,
    enqueue: bool = True,
) -> Job:
    """Validate a request to evaluate a catalog model on a task spec's meta-test classes, write the Job.

    Without ``task_spec_id`` the model's own task spec is used. Light work: queue ``cpu``.
    """
    try:
        model = catalog.metamodel_get(user=owner, pk=int(model_id))
    except (Http404, TypeError, ValueError) as exc:
        raise InvalidInput(f"no model {model_id!r}", field="model") from exc
    if model.algorithm not in IMAGE_MODEL_ALGORITHMS:
        raise InvalidInput(f"{model.algorithm!r} models are not evaluated on image episodes", field="model")
    if task_spec_id in (None, ""):
        if model.task_spec is None:
            raise InvalidInput("the model has no task spec of its own; name one", field="task_spec")
        task_spec_id = model.task_spec_id
    spec = catalog.task_spec_list(user=owner).filter(pk=task_spec_id).first()
    if spec is None:
        raise InvalidInput(f"no task spec {task_spec_id!r}", field="task_spec")
    if not spec.domain.is_image:
        raise InvalidInput("evaluation jobs run on image domains", field="task_spec")
    job = Job.objects.create(
        kind=Job.Kind.EVALUATE,
        owner=owner,
        domain=spec.domain,
        task_spec=spec,
        source_model=model,
        queue=LIGHT_QUEUE,
        total_steps=1,
        config={"algorithm": model.algorithm, "eval_episodes": _eval_episodes(episodes)},
    )
    if enqueue:
        job_enqueue_on_commit(job)
    return job


@transaction.atomic
def job_create_transfer(
    *,
    owner,
    source_model_id: int,
    target_domain_slug: str,
    method: str,
    hyperparameters: dict[str, Any] | None = None,
    task_spec_id: int | None = None,
    task: dict[str, Any] | None = None,
    eval_episodes: int = MIN_EVAL_EPISODES,
    model_name: str = "",
    visibility: str = Visibility.PUBLIC,
    enqueue: bool = True,
) -> Job:
    """Validate a transfer of a KB model onto a target domain, write the Job, enqueue it.

    The worker trains the transferred model and a from-scratch baseline with the same
    budget on the task spec's meta-train classes of the target, then compares them on
    identical episodes of its meta-test classes at every shot count the target allows.
    """
    try:
        source = catalog.metamodel_get(user=owner, pk=int(source_model_id))
    except (Http404, TypeError, ValueError) as exc:
        raise InvalidInput(f"no model {source_model_id!r}", field="source_model") from exc
    if source.algorithm not in IMAGE_MODEL_ALGORITHMS:
        raise InvalidInput(
            f"{source.algorithm!r} models have no image backbone to transfer", field="source_model"
        )
    try:
        target = catalog.domain_get(user=owner, slug=target_domain_slug)
    except Http404 as exc:
        raise InvalidInput(f"no domain {target_domain_slug!r}", field="domain") from exc
    if not target.is_image:
        raise InvalidInput("transfer targets are image domains", field="domain")
    eval_episodes = _eval_episodes(eval_episodes)
    spec = _task_spec_for(
        owner=owner, domain=target, task_spec_id=task_spec_id, task=task, visibility=visibility
    )
    engine = transfer_config_for(
        method=method,
        hyperparameters=hyperparameters or {},
        source_model=source,
        target_domain=target,
        task_spec=spec,
    )
    shots = transfer_shots(target, spec)
    job = Job.objects.create(
        kind=Job.Kind.TRANSFER,
        owner=owner,
        domain=target,
        task_spec=spec,
        source_model=source,
        queue=TRAINING_QUEUE,
        total_steps=2 * engine["steps"],
        config={
            "algorithm": method,
            "engine": engine,
            "shots": shots,
            "model_name": model_name.strip() or f"{source.name} → {target.name} ({method})",
            "eval_episodes": eval_episodes,
            "visibility": visibility,
        },
    )
    if enqueue:
        job_enqueue_on_commit(job)
    return job


def job_create_import(
    *,
    owner,
    upload: Any,
    name: str,
    visibility: str = Visibility.PUBLIC,
    description: str = "",
    citation: str = "",
    license: str = "",
    enqueue: bool = True,
) -> Job:
    """Stage an uploaded zip (cheap checks, then stored), write an ``import`` Job for it, enqueue it.

    Bad input raises the ``InvalidInput`` an inline import would, before anything is
    written. The job has no domain until it succeeds; its config names the stored upload,
    which is deleted when the job ends, however it ends. Light work: queue ``cpu``.
    """
    staged = domain_upload_stage(upload=upload, name=name, visibility=visibility, license=license)
    try:
        with transaction.atomic():
            job = Job.objects.create(
                kind=Job.Kind.IMPORT,
                owner=owner,
                queue=LIGHT_QUEUE,
                total_steps=1,
                config={
                    "name": staged.name,
                    "description": description,
                    "citation": citation,
                    "visibility": visibility,
                    "license": license,
                    "upload": staged.path,
                    "filename": staged.filename,
                    "size": staged.size,
                    "sha256": staged.sha256,
                },
            )
            if enqueue:
                job_enqueue_on_commit(job)
    except BaseException:
        artifacts_delete([staged.path])
        raise
    job.refresh_from_db(fields=["status"])  # the enqueue fails the job if the broker is down
    return job


def transfer_shots(domain: SourceDomain, spec: TaskSpec) -> list[int]:
    """The shot counts of TRANSFER_SHOTS that every meta-test class of the target can supply.

    The task spec's own check (``k_shot + query_size`` fits every class) guarantees 1 shot.
    """
    counts = [
        domain.classes[i]["count"] for i in split_classes(domain=domain, split=spec.split, part="meta_test")
    ]
    return [k for k in TRANSFER_SHOTS if k + spec.query_size <= min(counts)]


def job_enqueue_on_commit(job: Job) -> None:
    """Queue the job's task once the row is committed, so a worker never sees a missing job.

    If the broker cannot be reached the job is failed with that reason rather than left
    queued forever.
    """
    job_id, queue = job.pk, job.queue

    def enqueue() -> None:
        from tasks_app.tasks import run_job

        try:
            run_job.apply_async(args=[job_id], queue=queue)
        except Exception as exc:
            logger.exception("could not enqueue job %s", job_id)
            failed = Job.objects.get(pk=job_id)
            _finish_failed(failed, f"could not reach the job queue: {exc}"[:500], "")

    transaction.on_commit(enqueue)


def job_cancel(*, job: Job) -> Job:
    """Ask a job to stop. A queued job is cancelled at once; a running one stops at its next step."""
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job.pk)
        if job.is_final:
            raise InvalidInput(f"job {job.pk} has already {job.status}", field="status")
        job.cancel_requested = True
        fields = ["cancel_requested"]
        if job.status == Job.Status.QUEUED:
            job.status, job.finished_at = Job.Status.CANCELLED, timezone.now()
            fields += ["status", "finished_at"]
            _discard_import_upload_on_commit(job)
        job.save(update_fields=fields)
    publish_job(job)
    return job


# --- running ---------------------------------------------------------------------------


def heartbeat_timeout() -> timedelta:
    return timedelta(seconds=settings.JOB_HEARTBEAT_TIMEOUT)


MAX_LOG_ENTRIES = 100


def _log(job: Job, message: str) -> None:
    """Append a lifecycle entry to ``job.log`` (in memory; the caller saves ``log``)."""
    job.log = [*job.log[-(MAX_LOG_ENTRIES - 1) :], {"at": timezone.now().isoformat(), "message": message}]


def process_alive(pid: int) -> bool:
    """Whether a process of this machine with that pid still runs (a zombie counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _runner_gone(job: Job, worker_host: str) -> bool:
    """The job's last runner was a process of this very worker, and it is dead.

    A worker whose pool process was killed gets the job's message back at once
    (``reject_on_worker_lost``); without this it would wait for the heartbeat to go stale.
    """
    return job.worker_host == worker_host and job.worker_pid is not None and not process_alive(job.worker_pid)


def _claim(job_id: int, worker_host: str) -> Job | None:
    """Mark the job running on this worker, or return None if it is not ours to run."""
    stale_before = timezone.now() - heartbeat_timeout()
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(pk=job_id).first()
        if job is None or job.is_final:
            return None
        alive = job.heartbeat_at and job.heartbeat_at > stale_before and not _runner_gone(job, worker_host)
        if job.status == Job.Status.RUNNING and alive:
            return None  # a duplicate delivery while a live worker has it
        if job.attempts >= settings.JOB_MAX_ATTEMPTS:
            _finish_failed(job, f"gave up after {job.attempts} attempts; the worker was lost each time", "")
            return None
        now = timezone.now()
        job.status, job.worker_host, job.heartbeat_at = Job.Status.RUNNING, worker_host, now
        job.worker_pid = os.getpid()
        job.attempts += 1
        job.started_at = job.started_at or now
        job.phase = "starting" if job.attempts == 1 else "resuming"
        _log(job, f"attempt {job.attempts} started on {worker_host} (process {job.worker_pid})")
        job.save(
            update_fields=[
                "status",
                "worker_host",
                "worker_pid",
                "heartbeat_at",
                "attempts",
                "started_at",
                "phase",
                "log",
            ]
        )
    publish_job(job)
    return job


def _log_resumption(job: Job, store: ArtifactCheckpointStore, run: str) -> None:
    step = store.latest_step()
    if step is not None:
        _log(job, f"{run} resumes from its checkpoint at step {step}")
        job.save(update_fields=["log"])


class _Heartbeat:
    """Keeps ``heartbeat_at`` fresh from a thread while the job runs, even in long steps."""

    def __init__(self, job_id: int, interval: float) -> None:
        self.job_id, self.interval = job_id, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        from django.db import connection

        try:
            while not self._stop.wait(self.interval):
                try:
                    Job.objects.filter(pk=self.job_id, status=Job.Status.RUNNING).update(
                        heartbeat_at=timezone.now()
                    )
                except DatabaseError:
                    # A missed beat is harmless (the watchdog waits several); a crashed thread is not.
                    logger.warning("heartbeat of job %s failed", self.job_id, exc_info=True)
        finally:
            connection.close()


class _ShutdownRequest:
    """SIGTERM to the process that runs a job becomes a stop at the engine's next step.

    The engine then saves a checkpoint and the job is queued again, so stopping the system
    (Ctrl-C on the run command) loses no training. Signal handlers can only be set from a
    process's main thread, where a prefork Celery worker runs its task.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None
        self._installed = False

    def __enter__(self) -> _ShutdownRequest:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
            self._installed = True
        return self

    def _handle(self, signum: int, frame: object) -> None:
        self.requested = True

    def __exit__(self, *exc: object) -> None:
        if self._installed:
            signal.signal(signal.SIGTERM, self._previous)


class _StopPoll:
    """``should_stop`` for the engine: a shutdown, or the cancel flag read at most every ``interval`` s."""

    def __init__(self, job_id: int, shutdown: _ShutdownRequest, interval: float = 0.3) -> None:
        self.job_id, self.shutdown, self.interval = job_id, shutdown, interval
        self._next = 0.0
        self._cancelled = False

    def __call__(self) -> bool:
        now = time.monotonic()
        if not self._cancelled and now >= self._next:
            self._next = now + self.interval
            self._cancelled = Job.objects.filter(pk=self.job_id, cancel_requested=True).exists()
        return self._cancelled or self.shutdown.requested


class _EvaluationProgress:
    """Progress of one or more evaluations in a row, reported as one phase of the job.

    Hands each engine evaluation ``on_progress`` and ``should_stop``; episodes are counted
    across all of them, and the ETA is the episodes left at the rate measured so far.
    """

    def __init__(self, recorder: JobProgressRecorder, stop: _StopPoll, *, total_episodes: int) -> None:
        self.recorder, self.stop, self.total = recorder, stop, total_episodes
        self._finished = 0

    def callbacks(self) -> dict[str, Any]:
        return {"on_progress": self._report, "should_stop": self.stop}

    def _report(self, event: dict[str, Any]) -> None:
        done = self._finished + event["done"]
        rate = event["episodes_per_sec"]
        eta = (self.total - done) / rate if rate else None
        self.recorder.phase_progress(phase="evaluating", done=done, total=self.total, eta=eta)
        if event["done"] == event["total"]:
            self._finished += event["total"]


def _finish_stopped(job: Job) -> None:
    """A run the engine stopped early: cancelled by its owner, or interrupted by a worker shutdown."""
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job.pk)
        if job.cancel_requested:
            _finish(job, Job.Status.CANCELLED)
        else:
            _requeue(job, "the worker shut down; the job resumes from its checkpoint")


def _domain_data(domain: SourceDomain):
    """The engine's data object for a domain: image arrays, or a function family."""
    if domain.is_image:
        from learning.engine.data import load_image_arrays

        return load_image_arrays(io.BytesIO(artifact_read(domain.arrays_file)))
    from learning.builtin_domains import family_params
    from learning.engine.functions import FunctionFamily

    return FunctionFamily.from_spec(*family_params(domain.generator))


def job_run(*, job_id: int, worker_host: str | None = None, also_report: ProgressFn | None = None) -> None:
    """Run (or resume) a job to a final status. Safe to call again with the same id.

    ``also_report`` receives every engine progress event too (the command line's progress bar).
    """
    job = _claim(job_id, worker_host or socket.gethostname())
    if job is None:
        return
    try:
        with _Heartbeat(job.pk, settings.JOB_HEARTBEAT_INTERVAL), _ShutdownRequest() as shutdown:
            stop = _StopPoll(job.pk, shutdown)
            if job.kind == Job.Kind.META_TRAIN:
                _run_meta_train(job, stop, also_report)
            elif job.kind == Job.Kind.EVALUATE:
                _run_evaluate(job, stop)
            elif job.kind == Job.Kind.TRANSFER:
                _run_transfer(job, stop, also_report)
            elif job.kind == Job.Kind.IMPORT:
                _run_import(job, stop)
            else:
                raise InvalidInput(f"job kind {job.kind!r} is not runnable yet")
    except EvaluationStopped:
        _finish_stopped(job)
    except Exception as exc:
        job.refresh_from_db()
        _finish_failed(job, f"{type(exc).__name__}: {exc}"[:500], traceback.format_exc()[-TRACEBACK_LIMIT:])
        logger.exception("job %s failed", job.pk)


def _run_meta_train(job: Job, stop: _StopPoll, also_report: ProgressFn | None) -> None:
    from learning.engine.algorithms import train
    from learning.engine.weights import weights_to_bytes

    data = _domain_data(job.domain)
    recorder = JobProgressRecorder(job)

    def on_progress(event: dict[str, Any]) -> None:
        recorder(event)
        if also_report is not None:
            also_report(event)

    store = ArtifactCheckpointStore(job.pk)
    _log_resumption(job, store, "training")
    result = train(job.config["engine"], data, on_progress=on_progress, should_stop=stop, checkpoint=store)
    if result.stopped:
        recorder.flush()
        _finish_stopped(job)
        return

    recorder.write(
        step=result.steps_done,
        total=job.total_steps,
        metrics=job_metrics(result),
        eta=0.0,
        phase="evaluating",
    )
    progress = _EvaluationProgress(recorder, stop, total_episodes=job.config["eval_episodes"])
    evaluation_numbers = _evaluate_on_meta_test(job, result, data, progress)
    model = metamodel_register(
        name=job.config["model_name"],
        algorithm=result.algorithm,
        architecture=result.model_config["arch"],
        weights=weights_to_bytes(result.weights, result.model_config, result.algorithm),
        hyperparameters={**job.config["engine"], "model_config": result.model_config},
        trained_on=[job.domain],
        task_spec=job.task_spec,
        metrics=job_metrics(result),
        description=f"Meta-trained by job {job.pk}.",
        owner=job.owner,
        visibility=job.config["visibility"],
    )
    evaluations = [
        evaluation_create(model=model, target_domain=job.domain, task_spec=job.task_spec, **numbers)
        for numbers in evaluation_numbers
    ]
    store.clear()
    _finish(job, Job.Status.SUCCEEDED, model=model, evaluations=evaluations)


def _source_class_names(model) -> list[str]:
    """Names of the classes a catalog model was meta-trained on (empty when unknown)."""
    spec = model.task_spec
    if spec is None or not spec.domain.is_image:
        return []
    return [
        spec.domain.classes[i]["name"]
        for i in split_classes(domain=spec.domain, split=spec.split, part="meta_train")
    ]


def _run_transfer(job: Job, stop: _StopPoll, also_report: ProgressFn | None) -> None:
    """Transferred model and from-scratch baseline, then a paired comparison at every shot count."""
    from learning.engine.algorithms import train
    from learning.engine.evaluation import evaluate_classifier, paired_comparison
    from learning.engine.transfer import COMMON_KEYS, METHOD_KEYS, TransferData
    from learning.engine.weights import weights_to_bytes

    source, target, spec = job.source_model, job.domain, job.task_spec
    engine = job.config["engine"]
    source_data = None
    if engine["algorithm"] == "instance":
        source_domain = source.trained_on.filter(modality=SourceDomain.Modality.IMAGE_CLASSIFICATION).first()
        if source_domain is None:
            raise InvalidInput("instance transfer needs the source model's training domain")
        source_data = _domain_data(source_domain)
    data = TransferData.from_weights_bytes(
        _domain_data(target),
        artifact_read(source.weights_file),
        source_data=source_data,
        source_class_names=_source_class_names(source),
    )
    recorder = JobProgressRecorder(job)
    steps = engine["steps"]

    def progress(offset: int, phase: str):
        recorder.phase = phase

        def on_progress(event: dict[str, Any]) -> None:
            shifted = {**event, "step": event["step"] + offset, "total": 2 * steps}
            recorder(shifted)
            if also_report is not None:
                also_report(shifted)

        return on_progress

    stores = {run: ArtifactCheckpointStore(job.pk, run=run) for run in ("transfer", "scratch")}
    for run, store in stores.items():
        _log_resumption(job, store, f"the {run} run")
    transferred = train(
        engine,
        data,
        on_progress=progress(0, "transferring"),
        should_stop=stop,
        checkpoint=stores["transfer"],
    )
    if transferred.stopped:
        recorder.flush()
        _finish_stopped(job)
        return
    # The baseline trains like finetune, from a fresh init: same data, steps and optimizer.
    baseline_keys = set(COMMON_KEYS) | set(METHOD_KEYS["scratch"])
    baseline_config = {k: v for k, v in engine.items() if k in baseline_keys} | {"algorithm": "scratch"}
    baseline = train(
        baseline_config,
        data,
        on_progress=progress(steps, "baseline"),
        should_stop=stop,
        checkpoint=stores["scratch"],
    )
    if baseline.stopped:
        recorder.flush()
        _finish_stopped(job)
        return

    recorder.write(
        step=2 * steps, total=2 * steps, metrics=job_metrics(transferred), eta=0.0, phase="evaluating"
    )
    meta_test = split_classes(domain=target, split=spec.split, part="meta_test")
    rows = []
    progress = _EvaluationProgress(
        recorder, stop, total_episodes=2 * len(job.config["shots"]) * job.config["eval_episodes"]
    )
    for shots in job.config["shots"]:
        common = dict(
            classes=meta_test,
            n_way=spec.n_way,
            k_shot=shots,
            query=spec.query_size,
            within_group=spec.within_group,
            episodes=job.config["eval_episodes"],
            seed=spec.seed,
            **progress.callbacks(),
        )
        ours = evaluate_classifier(
            transferred.algorithm,
            transferred.weights,
            transferred.model_config,
            data.target,
            seen_class_names=transferred.train_class_names,
            **common,
        )
        theirs = evaluate_classifier(
            baseline.algorithm,
            baseline.weights,
            baseline.model_config,
            data.target,
            seen_class_names=baseline.train_class_names,
            **common,
        )
        paired = paired_comparison(ours, theirs)
        rows.append(
            {
                "shots": shots,
                "metric": Evaluation.Metric.ACCURACY,
                "mean": ours.mean,
                "ci95": ours.ci95,
                "episodes": ours.episodes,
                "baseline_mean": theirs.mean,
                "baseline_ci95": theirs.ci95,
                "gain_ci95": paired["ci95"],
            }
        )
    model = metamodel_register(
        name=job.config["model_name"],
        algorithm=transferred.algorithm,
        architecture=transferred.model_config["arch"],
        weights=weights_to_bytes(transferred.weights, transferred.model_config, transferred.algorithm),
        hyperparameters={**engine, "model_config": transferred.model_config},
        trained_on=[target],
        task_spec=spec,
        parent=source,
        metrics=job_metrics(transferred),
        description=f"Transferred from {source.name} by job {job.pk} ({engine['algorithm']}).",
        owner=job.owner,
        visibility=job.config["visibility"],
    )
    evaluations = [
        evaluation_create(model=model, target_domain=target, task_spec=spec, **row) for row in rows
    ]
    for store in stores.values():
        store.clear()
    _finish(job, Job.Status.SUCCEEDED, model=model, evaluations=evaluations)


def job_metrics(result) -> dict[str, float]:
    return {k: float(v) for k, v in result.metrics.items() if isinstance(v, (int, float))}


def _evaluate_on_meta_test(job: Job, result, data, progress: _EvaluationProgress) -> list[dict[str, Any]]:
    """The literature's protocol on held-out classes (images) or tasks (functions).

    Returns the fields of the Evaluation rows to create.
    """
    if not job.domain.is_image:
        return _evaluate_regression(job, result, data, progress)
    return [
        _evaluate_weights(
            job,
            result.algorithm,
            result.weights,
            result.model_config,
            data,
            progress,
            seen=result.train_class_names,
        )
    ]


def _evaluate_regression(job: Job, result, family, progress: _EvaluationProgress) -> list[dict[str, Any]]:
    """MSE and Gaussian log-likelihood of a Neural Process on held-out tasks of the ``test`` seed stream."""
    from learning.engine.functions import heldout_tasks
    from learning.engine.regression_eval import evaluate_neural_process
    from learning.engine.weights import load_model

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


def _evaluate_weights(
    job: Job, algorithm: str, weights, model_config, data, progress: _EvaluationProgress, *, seen=None
) -> dict[str, Any]:
    from learning.engine.evaluation import evaluate_classifier

    spec, domain = job.task_spec, job.domain
    outcome = evaluate_classifier(
        algorithm,
        weights,
        model_config,
        data,
        classes=split_classes(domain=domain, split=spec.split, part="meta_test"),
        n_way=spec.n_way,
        k_shot=spec.k_shot,
        query=spec.query_size,
        within_group=spec.within_group,
        episodes=job.config["eval_episodes"],
        seed=spec.seed,
        seen_class_names=seen,
        **progress.callbacks(),
    )
    return {
        "shots": spec.k_shot,
        "metric": Evaluation.Metric.ACCURACY,
        "mean": outcome.mean,
        "ci95": outcome.ci95,
        "episodes": outcome.episodes,
    }


def _run_evaluate(job: Job, stop: _StopPoll) -> None:
    from learning.engine.weights import weights_from_bytes

    model = job.source_model
    weights, model_config, algorithm = weights_from_bytes(artifact_read(model.weights_file))
    recorder = JobProgressRecorder(job)
    recorder.write(step=0, total=1, metrics={}, eta=None, phase="evaluating")
    progress = _EvaluationProgress(recorder, stop, total_episodes=job.config["eval_episodes"])
    seen = None
    if model.task_spec is not None and model.task_spec.domain_id == job.domain_id:
        # Evaluating on the training domain: the engine refuses classes the model was trained on.
        domain = job.domain
        seen = [
            domain.classes[i]["name"]
            for i in split_classes(domain=domain, split=model.task_spec.split, part="meta_train")
        ]
    numbers = _evaluate_weights(
        job, algorithm, weights, model_config, _domain_data(job.domain), progress, seen=seen
    )
    evaluation = evaluation_create(model=model, target_domain=job.domain, task_spec=job.task_spec, **numbers)
    _finish(job, Job.Status.SUCCEEDED, model=model, evaluations=[evaluation])


def _run_import(job: Job, stop: _StopPoll) -> None:
    """Import the staged upload as an inline import would; the phase counts image files decoded.

    Bad content fails the job with the inline import's message; a cancel ends it before
    anything is stored. ``_finish`` deletes the staged upload either way.
    """
    config = job.config
    earlier = SourceDomain.objects.filter(
        owner=job.owner, name=config["name"], created_at__gte=job.created_at
    ).first()
    if earlier is not None:
        # An earlier attempt imported it, and its worker was lost before it could say so.
        job.domain = earlier
        job.save(update_fields=["domain"])
        _finish(job, Job.Status.SUCCEEDED)
        return
    recorder = JobProgressRecorder(job, phase="importing")
    meter: ProgressMeter | None = None

    def on_progress(done: int, total: int) -> None:
        nonlocal meter
        meter = meter or ProgressMeter(total, done=done)  # the rate counts from the first decoded file
        eta = meter.eta_seconds(done, time.monotonic())
        recorder.phase_progress(phase="importing", done=done, total=total, eta=eta)

    try:
        with artifact_storage().open(config["upload"], "rb") as stored:
            domain = domain_import(
                source=File(stored, name=config["filename"]),
                owner=job.owner,
                **{k: config[k] for k in ("name", "visibility", "description", "citation", "license")},
                on_progress=on_progress,
                should_stop=stop,
            )
    except ImportStopped:
        _finish_stopped(job)
        return
    except InvalidInput as err:
        _finish_failed(job, err.message[:500], "")
        return
    job.domain = domain
    job.save(update_fields=["domain"])
    _finish(job, Job.Status.SUCCEEDED)


def _discard_import_upload_on_commit(job: Job) -> None:
    """An import job that ends (however it ends) no longer needs its staged upload."""
    if job.kind == Job.Kind.IMPORT and job.config.get("upload"):
        upload = job.config["upload"]
        transaction.on_commit(lambda: artifacts_delete([upload]))


def _finish(job: Job, status: str, *, model=None, evaluations=()) -> None:
    with transaction.atomic():
        # The recorder has moved the row on (event_seq, metrics, history) since ``job`` was read:
        # a final event built from the stale copy would carry an old sequence number, and
        # pages would drop it as out of date.
        job.refresh_from_db(from_queryset=Job.objects.select_for_update())
        job.status, job.finished_at, job.phase = status, timezone.now(), ""
        job.phase_done = job.phase_total = 0
        job.eta_seconds = None
        job.result_model = model
        if status == Job.Status.SUCCEEDED:
            job.step = job.total_steps
        job.event_seq += 1
        job.save(
            update_fields=[
                *("status", "finished_at", "phase", "phase_done", "phase_total", "eta_seconds"),
                *("result_model", "step", "event_seq"),
            ]
        )
        if evaluations:
            job.result_evaluations.set(evaluations)
        _discard_import_upload_on_commit(job)
    transaction.on_commit(lambda: publish_job(job))


def _finish_failed(job: Job, summary: str, tb: str) -> None:
    job.error_summary, job.error_traceback = summary, tb
    job.save(update_fields=["error_summary", "error_traceback"])
    _finish(job, Job.Status.FAILED)


# --- the watchdog -----------------------------------------------------------------------


def _requeue(job: Job, reason: str) -> None:
    """Queue a job again (it resumes from its checkpoint). Call in a transaction, the row locked."""
    _log(job, reason)
    job.status, job.phase = Job.Status.QUEUED, f"requeued: {reason}"[:200]
    job.event_seq += 1
    job.save(update_fields=["status", "phase", "log", "event_seq"])
    job_enqueue_on_commit(job)
    transaction.on_commit(lambda: publish_job(job))


def _requeue_or_fail(job: Job, reason: str) -> None:
    """Requeue a job whose worker was lost, or fail it once it has used ``JOB_MAX_ATTEMPTS``."""
    if job.attempts < settings.JOB_MAX_ATTEMPTS:
        _requeue(job, reason)
        return
    _log(job, reason)
    job.save(update_fields=["log"])
    _finish_failed(job, f"{reason} and all {job.attempts} attempts are used", "")


def jobs_recover_stale() -> list[int]:
    """Find running jobs whose heartbeat stopped; requeue them to resume, or fail them for good.

    A worker killed mid-job stops its heartbeat. The job is queued again (it resumes
    from its last checkpoint) until it has used ``JOB_MAX_ATTEMPTS``; then it is marked
    failed with the reason. Returns the ids it touched.
    """
    stale_before = timezone.now() - heartbeat_timeout()
    touched: list[int] = []
    stale = Job.objects.filter(status=Job.Status.RUNNING).filter(
        Q(heartbeat_at__lt=stale_before) | Q(heartbeat_at__isnull=True)
    )
    for job_id in stale.values_list("pk", flat=True):
        with transaction.atomic():
            job = Job.objects.select_for_update().get(pk=job_id)
            if job.status != Job.Status.RUNNING or (job.heartbeat_at and job.heartbeat_at >= stale_before):
                continue
            last = job.heartbeat_at.isoformat(timespec="seconds") if job.heartbeat_at else "never"
            _requeue_or_fail(
                job, f"worker lost: {job.worker_host or '?'} stopped sending heartbeats (last {last})"
            )
            touched.append(job_id)
    return touched


def jobs_requeue_lost(*, worker_host: str, reason: str) -> list[int]:
    """Requeue (or fail, after the last attempt) the running jobs of a worker known to be dead.

    The run command calls this when a worker it supervises dies and when it starts after
    a previous run of it stopped, so those jobs resume at once instead of waiting for the
    watchdog to see their heartbeat go stale. Returns the ids it touched.
    """
    touched: list[int] = []
    for job_id in Job.objects.filter(status=Job.Status.RUNNING, worker_host=worker_host).values_list(
        "pk", flat=True
    ):
        with transaction.atomic():
            job = Job.objects.select_for_update().get(pk=job_id)
            if job.status == Job.Status.RUNNING and job.worker_host == worker_host:
                _requeue_or_fail(job, reason)
                touched.append(job_id)
    return touched
