"""One runner per job kind (``JobRunner`` subclasses), and ``RUNNERS``: kind -> runner class.

Only the worker side imports this package (``tasks_app.runtime.job_run``, lazily): the
runners load the engine, and with it torch.
"""

from __future__ import annotations

from tasks_app.runners.base import JobRunner
from tasks_app.runners.evaluate import EvaluateRunner
from tasks_app.runners.imports import ImportRunner
from tasks_app.runners.meta_train import MetaTrainRunner
from tasks_app.runners.transfer import TransferRunner

RUNNERS: dict[str, type[JobRunner]] = {
    runner.kind: runner for runner in (MetaTrainRunner, EvaluateRunner, TransferRunner, ImportRunner)
}
"""The runner class of each job kind; ``job_run`` runs a claimed job with ``RUNNERS[job.kind]``."""
