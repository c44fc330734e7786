"""Checkpoint stores and the safetensors blob format."""

from __future__ import annotations

import pytest
import torch

from learning.engine.checkpoints import (
    CheckpointFormatError,
    CheckpointStore,
    DirectoryCheckpointStore,
    InMemoryCheckpointStore,
    optimizer_state_from_tensors,
    optimizer_state_to_tensors,
    pack_blob,
    unpack_blob,
)


def test_blob_round_trip_is_bitwise_and_keeps_metadata():
    # given tensors of several dtypes, one a view of another, and JSON metadata
    base = torch.randn(4, 3, dtype=torch.float64)
    tensors = {"a": base, "a_row": base[1], "rng": torch.get_rng_state(), "i": torch.arange(5)}
    meta = {"step": 7, "history": [{"loss": 0.1}], "big": 2**100}
    # when packed and unpacked
    out, got = unpack_blob(pack_blob(tensors, meta))
    # then every tensor is bitwise equal and the metadata is intact
    assert out.keys() == tensors.keys()
    for k, v in tensors.items():
        assert out[k].dtype == v.dtype and torch.equal(out[k], v)
    assert got["step"] == 7 and got["history"] == [{"loss": 0.1}] and got["big"] == 2**100


def test_garbage_and_foreign_blobs_are_refused():
    # given bytes that are not a checkpoint, and a checkpoint of another format
    other = pack_blob({"x": torch.zeros(1)}, {}, fmt="something-else/1")
    # when unpacked / then refused with a format error
    with pytest.raises(CheckpointFormatError):
        unpack_blob(b"not safetensors at all")
    with pytest.raises(CheckpointFormatError, match="something-else"):
        unpack_blob(other)


def test_adam_state_survives_the_round_trip_exactly():
    # given an Adam optimizer after three steps
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=0.01, betas=(0.8, 0.9))
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(4, 3)).pow(2).sum().backward()
        opt.step()
    # when its state goes through tensors + JSON into a fresh optimizer on a copy of the model
    tensors, json_part = optimizer_state_to_tensors(opt)
    _, json_back = unpack_blob(pack_blob({}, {"o": json_part}))
    twin = torch.nn.Linear(3, 2)
    twin.load_state_dict(model.state_dict())
    opt2 = torch.optim.Adam(twin.parameters(), lr=0.5)
    optimizer_state_from_tensors(opt2, tensors, json_back["o"])
    # then both take the identical next step
    x = torch.randn(4, 3)
    for m, o in ((model, opt), (twin, opt2)):
        o.zero_grad()
        m(x).pow(2).sum().backward()
        o.step()
    assert opt2.param_groups[0]["lr"] == 0.01 and opt2.param_groups[0]["betas"] == (0.8, 0.9)
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        assert torch.equal(p, q)


def test_in_memory_store_returns_the_latest_step():
    # given / when
    store = InMemoryCheckpointStore()
    assert store.load_latest() is None
    store.save(10, b"ten")
    store.save(5, b"five")
    # then
    assert isinstance(store, CheckpointStore)
    assert store.load_latest() == (10, b"ten")


def test_directory_store_keeps_the_last_files_and_is_seen_by_a_new_instance(tmp_path):
    # given a store keeping two checkpoints
    store = DirectoryCheckpointStore(tmp_path / "ckpt", keep=2)
    # when three are saved
    for step in (1, 2, 3):
        store.save(step, f"blob{step}".encode())
    # then only the last two remain, no temporary file is left, and a new store reads the latest
    names = sorted(p.name for p in (tmp_path / "ckpt").iterdir())
    assert names == ["step-00000002.safetensors", "step-00000003.safetensors"]
    assert DirectoryCheckpointStore(tmp_path / "ckpt").load_latest() == (3, b"blob3")
    assert isinstance(store, CheckpointStore)
