"""Checkpoint stores and the checkpoint blob format.

A checkpoint is one safetensors blob (bytes): every tensor of the training state
(model parameters and buffers, optimizer state, RNG states as uint8 tensors) plus JSON
in the safetensors header metadata (step, config fingerprint, optimizer hyper-parameters,
numpy generator states, progress history). Nothing is pickled, so a checkpoint read
from shared storage cannot run code.

Where blobs live is the caller's business: the engine only needs an object with
``save(step, blob)`` and ``load_latest()`` (:class:`CheckpointStore`). The Django side
passes one backed by artifact storage; tests and CLIs use :class:`InMemoryCheckpointStore`
or :class:`DirectoryCheckpointStore`.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import Tensor

CHECKPOINT_FORMAT = "metakb-checkpoint/1"


class CheckpointFormatError(ValueError):
    """A blob is not a MetaKB checkpoint, or does not match the run it is loaded into."""


@runtime_checkable
class CheckpointStore(Protocol):
    """Where the training loop keeps checkpoints; ``step`` is the number of finished steps."""

    def save(self, step: int, blob: bytes) -> None:
        """Store ``blob`` as the checkpoint after ``step`` finished steps."""

    def load_latest(self) -> tuple[int, bytes] | None:
        """The ``(step, blob)`` with the highest step, or None when nothing was saved."""


class InMemoryCheckpointStore:
    """Keeps every checkpoint in a dict; for tests and notebooks."""

    def __init__(self) -> None:
        self.blobs: dict[int, bytes] = {}
        self.saves: list[int] = []
        """Steps in the order ``save`` was called (repeats included), for inspection."""

    def save(self, step: int, blob: bytes) -> None:
        self.blobs[step] = bytes(blob)
        self.saves.append(step)

    def load_latest(self) -> tuple[int, bytes] | None:
        if not self.blobs:
            return None
        step = max(self.blobs)
        return step, self.blobs[step]


class DirectoryCheckpointStore:
    """One ``step-<8 digits>.safetensors`` file per checkpoint in ``path``, keeping the last ``keep``.

    Writes go to a temporary file in the same directory and are renamed into place, so
    a worker killed mid-write never leaves a truncated latest checkpoint.
    """

    _NAME = re.compile(r"^step-(\d{8,})\.safetensors$")

    def __init__(self, path: str | os.PathLike[str], keep: int = 2) -> None:
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        self.path = Path(path)
        self.keep = keep
        self.path.mkdir(parents=True, exist_ok=True)

    def _steps(self) -> list[int]:
        steps = []
        for entry in self.path.iterdir():
            match = self._NAME.match(entry.name)
            if match:
                steps.append(int(match.group(1)))
        return sorted(steps)

    def _file(self, step: int) -> Path:
        return self.path / f"step-{step:08d}.safetensors"

    def save(self, step: int, blob: bytes) -> None:
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        fd, tmp = tempfile.mkstemp(dir=self.path, prefix=".tmp-", suffix=".safetensors")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(blob)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self._file(step))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        for old in self._steps()[: -self.keep]:
            self._file(old).unlink(missing_ok=True)

    def load_latest(self) -> tuple[int, bytes] | None:
        steps = self._steps()
        if not steps:
            return None
        return steps[-1], self._file(steps[-1]).read_bytes()


def pack_blob(
    tensors: Mapping[str, Tensor], metadata: Mapping[str, Any], fmt: str = CHECKPOINT_FORMAT
) -> bytes:
    """Safetensors bytes of ``tensors`` (moved to CPU, made contiguous) with ``metadata`` as JSON.

    Each metadata value is JSON-encoded into the string-only safetensors header; ``fmt``
    is stored under ``"format"`` and checked by :func:`unpack_blob`.
    """
    # safetensors refuses tensors that share storage; clone so views of one buffer are fine.
    plain = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    header = {k: json.dumps(v) for k, v in metadata.items()}
    header["format"] = json.dumps(fmt)
    return _sorted_header(st_save(plain, metadata=header))


def _sorted_header(blob: bytes) -> bytes:
    """``blob`` with its JSON header's keys sorted.

    safetensors writes the metadata keys in no fixed order, so the same tensors and metadata
    would give different bytes, and files named by their content hash would differ for equal
    content. The data offsets count from the end of the header, so a rewritten header (padded
    with spaces to a multiple of 8 bytes, as the format asks) leaves them valid.
    """
    n = int.from_bytes(blob[:8], "little")
    header = json.dumps(json.loads(blob[8 : 8 + n]), sort_keys=True, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)
    return len(header).to_bytes(8, "little") + header + blob[8 + n :]


def unpack_blob(blob: bytes, fmt: str = CHECKPOINT_FORMAT) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """The ``(tensors, metadata)`` packed by :func:`pack_blob`; tensors on CPU.

    Raises :class:`CheckpointFormatError` if the blob is not safetensors or its format is not ``fmt``.
    """
    try:
        tensors = st_load(bytes(blob))
        metadata = {k: json.loads(v) for k, v in _header_metadata(_read_header(blob)).items()}
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise CheckpointFormatError(f"not a safetensors blob: {exc}") from exc
    if metadata.get("format") != fmt:
        raise CheckpointFormatError(f"expected format {fmt!r}, got {metadata.get('format')!r}")
    return tensors, metadata


def is_whole_blob(blob: bytes) -> bool:
    """Whether ``blob`` is as long as its safetensors header says: False for a file whose writer
    stopped mid-write (storages without atomic renames show such files under their final name)."""
    try:
        header = _read_header(blob)
        ends = [int(info["data_offsets"][1]) for name, info in header.items() if name != "__metadata__"]
    except (ValueError, TypeError, KeyError, IndexError, RecursionError):
        return False
    return len(blob) == 8 + int.from_bytes(blob[:8], "little") + max(ends, default=0)


def _read_header(blob: bytes) -> dict[str, Any]:
    """The JSON header of safetensors bytes (the format is an 8-byte length, then the JSON)."""
    if len(blob) < 8:
        raise ValueError("blob shorter than a safetensors header")
    n = int.from_bytes(blob[:8], "little")
    if n > len(blob) - 8:
        raise ValueError("header length exceeds the blob")
    try:
        header = json.loads(bytes(blob[8 : 8 + n]).decode("utf-8"))
    except RecursionError as exc:
        raise ValueError("the header is nested too deeply") from exc
    if not isinstance(header, dict):
        raise ValueError("the header is not an object")
    return header


def _header_metadata(header: Mapping[str, Any]) -> dict[str, str]:
    """The ``__metadata__`` dict of a safetensors header."""
    meta = header.get("__metadata__", {})
    if not isinstance(meta, dict):
        raise ValueError("header metadata is not an object")
    return {str(k): str(v) for k, v in meta.items()}


def read_blob_header(blob: bytes, fmt: str) -> tuple[dict[str, tuple[str, tuple[int, ...]]], dict[str, Any]]:
    """``({tensor name: (safetensors dtype such as "F32", shape)}, metadata)`` of a :func:`pack_blob`
    blob, read from its header alone: no tensor is loaded.

    Raises :class:`CheckpointFormatError` if the header does not parse or its format is not ``fmt``.
    """
    try:
        header = _read_header(blob)
        metadata = {k: json.loads(v) for k, v in _header_metadata(header).items()}
        tensors = {
            str(name): (str(info["dtype"]), tuple(int(d) for d in info["shape"]))
            for name, info in header.items()
            if name != "__metadata__"
        }
    except (ValueError, TypeError, KeyError, RecursionError) as exc:
        raise CheckpointFormatError(f"not a safetensors blob: {exc}") from exc
    if metadata.get("format") != fmt:
        raise CheckpointFormatError(f"expected format {fmt!r}, got {metadata.get('format')!r}")
    return tensors, metadata


def optimizer_state_to_tensors(
    optimizer: torch.optim.Optimizer, prefix: str = "optim."
) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into tensors and JSON.

    Returns ``(tensors, json_part)``: tensors keyed ``<prefix><param index>.<name>``;
    ``json_part`` holds the param groups and every non-tensor state value, so
    :func:`optimizer_state_from_tensors` rebuilds the exact state dict.
    """
    sd = optimizer.state_dict()
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, entry in sd["state"].items():
        for name, value in entry.items():
            if isinstance(value, Tensor):
                tensors[f"{prefix}{idx}.{name}"] = value
            else:
                scalars.setdefault(str(idx), {})[name] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars, "indices": sorted(sd["state"])}


def optimizer_state_from_tensors(
    optimizer: torch.optim.Optimizer,
    tensors: Mapping[str, Tensor],
    json_part: Mapping[str, Any],
    prefix: str = "optim.",
) -> None:
    """Load into ``optimizer`` the state split by :func:`optimizer_state_to_tensors`."""
    state: dict[int, dict[str, Any]] = {}
    for idx in json_part["indices"]:
        state[int(idx)] = dict(json_part["scalars"].get(str(idx), {}))
    for key, value in tensors.items():
        if not key.startswith(prefix):
            continue
        idx_str, name = key[len(prefix) :].split(".", 1)
        # A copy, so the optimizer never shares storage with the caller's tensors.
        state.setdefault(int(idx_str), {})[name] = value.clone()
    param_groups = [dict(g) for g in json_part["param_groups"]]
    for group in param_groups:
        # JSON turned tuples (Adam betas) into lists; the optimizers index them either way,
        # but keep the original type so a re-saved state dict is identical.
        for key, value in list(group.items()):
            if isinstance(value, list) and key != "params":
                group[key] = tuple(value)
    optimizer.load_state_dict({"state": state, "param_groups": param_groups})
