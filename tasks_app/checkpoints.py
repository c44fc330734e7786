"""Checkpoints of running jobs in artifact storage, so another machine can resume them."""

from __future__ import annotations

import re

from django.http import Http404, HttpResponse

from learning.artifacts import artifact_read, artifact_save, artifact_storage, artifacts_delete
from learning.engine.checkpoints import is_whole_blob

_NAME = re.compile(r"^step-(\d{8,})\.safetensors$")


def checkpoint_folder(job_id: int, run: str = "main") -> str:
    """Where one training run of a job keeps its checkpoints (a transfer job has two runs)."""
    return f"jobs/{job_id}/checkpoints" if run == "main" else f"jobs/{job_id}/checkpoints-{run}"


class ArtifactCheckpointStore:
    """The engine's ``CheckpointStore`` over Django's artifact storage, keeping the last ``keep``.

    A new checkpoint is written under a fresh name before older ones are deleted, so a
    worker killed mid-save still leaves the previous checkpoint whole. Django's storages
    write in place under the final name, so a worker stopped or killed mid-save leaves a
    partial newest file behind: reads skip to the newest whole one.
    """

    def __init__(self, job_id: int, keep: int = 2, run: str = "main") -> None:
        self.folder = checkpoint_folder(job_id, run)
        self.keep = keep

    def _steps(self) -> list[int]:
        storage = artifact_storage()
        if not storage.exists(self.folder):
            return []
        _, files = storage.listdir(self.folder)
        return sorted(int(m.group(1)) for f in files if (m := _NAME.match(f)))

    def _name(self, step: int) -> str:
        return f"{self.folder}/step-{step:08d}.safetensors"

    def save(self, step: int, blob: bytes) -> None:
        artifacts_delete([self._name(step)])  # a resumed run may save the same step again
        stored = artifact_save(self._name(step), blob)
        if stored.name != self._name(step):  # the storage renamed it: keep names predictable
            artifacts_delete([stored.name])
            raise RuntimeError(f"could not store checkpoint {self._name(step)}")
        older = [s for s in self._steps() if s != step]
        artifacts_delete(self._name(s) for s in older[: max(0, len(older) - self.keep + 1)])

    def latest_step(self) -> int | None:
        """The step of the checkpoint a run would resume from, or None when there is none."""
        latest = self.load_latest()
        return latest[0] if latest else None

    def load_latest(self) -> tuple[int, bytes] | None:
        """``(step, blob)`` of the newest whole checkpoint, or None when there is none."""
        for step in reversed(self._steps()):
            blob = artifact_read(self._name(step))
            if is_whole_blob(blob):
                return step, blob
        return None

    def clear(self) -> None:
        artifacts_delete(self._name(s) for s in self._steps())


RUNS_OF_KIND = {"meta_train": ("main",), "transfer": ("transfer", "scratch")}
"""The training runs each job kind checkpoints (a transfer trains its model and a baseline)."""


def checkpoint_download(job, run: str | None = None):
    """The newest whole checkpoint of ``job``'s ``run`` (default: its first) as an attachment.

    Raises ``Http404`` naming what is missing: a kind without checkpoints, an unknown run,
    or no checkpoint (none saved yet, or cleared once the job succeeded).
    """
    runs = RUNS_OF_KIND.get(job.kind, ())
    run = run or (runs[0] if runs else "")
    if run not in runs:
        known = ", ".join(runs) or "none"
        raise Http404(f"job {job.pk} has no checkpoint run {run!r} (runs: {known})")
    latest = ArtifactCheckpointStore(job.pk, run=run).load_latest()
    if latest is None:
        raise Http404(
            f"job {job.pk} has no checkpoint of its {run} run (none saved yet, or cleared when it succeeded)"
        )
    step, blob = latest
    suffix = "" if run == "main" else f"-{run}"
    response = HttpResponse(blob, content_type="application/octet-stream")
    response["Content-Disposition"] = f'attachment; filename="job-{job.pk}{suffix}-step-{step}.safetensors"'
    response["Cache-Control"] = "private, no-store"
    return response
