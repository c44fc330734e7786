"""Job checkpoints in artifact storage: a save cut short never becomes the checkpoint a run resumes from."""

from __future__ import annotations

import io

import torch

from learning.artifacts import artifact_read, artifact_storage
from learning.engine.checkpoints import is_whole_blob, pack_blob
from tasks_app.checkpoints import ArtifactCheckpointStore


def _blob(step: int) -> bytes:
    return pack_blob({"model.w": torch.full((64, 64), float(step))}, {"step": step})


def test_a_checkpoint_whose_writer_stopped_mid_save_is_skipped_for_the_previous_one():
    # given whole checkpoints at steps 10 and 20
    store = ArtifactCheckpointStore(job_id=7)
    store.save(10, _blob(10))
    store.save(20, _blob(20))

    # when a worker stopped mid-save leaves the first half of step 30 under its final name
    artifact_storage().save(store._name(30), io.BytesIO(_blob(30)[:9000]))
    assert artifact_read(store._name(30)) == _blob(30)[:9000]

    # then the run resumes from step 20, whole, and says so
    assert store.latest_step() == 20
    assert store.load_latest() == (20, _blob(20))


def test_a_whole_blob_is_told_from_every_cut_of_it():
    blob = _blob(3)
    assert is_whole_blob(blob)
    assert not any(is_whole_blob(blob[:n]) for n in (0, 7, 8, 100, len(blob) - 1))
    assert not is_whole_blob(blob + b"\0")
