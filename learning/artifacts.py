"""Artifact storage: weights, domain arrays and thumbnails, through Django's storage API.

Keeping every artifact behind ``storages["artifacts"]`` lets an S3-compatible backend
replace the local folder when several machines share the work.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import IO

from django.core.files.base import ContentFile, File
from django.core.files.storage import Storage, storages

_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class StoredArtifact:
    name: str
    sha256: str
    size: int


def artifact_storage() -> Storage:
    return storages["artifacts"]


def artifact_save(name: str, content: bytes) -> StoredArtifact:
    """Store ``content`` under ``name`` (the storage may alter the name to keep it unique)."""
    stored_name = artifact_storage().save(name, ContentFile(content))
    return StoredArtifact(name=stored_name, sha256=hashlib.sha256(content).hexdigest(), size=len(content))


def artifact_save_file(name: str, file: IO[bytes]) -> StoredArtifact:
    """Store a seekable binary file under ``name``, streamed, not read into memory at once.

    Like ``artifact_save``, the storage may alter the name to keep it unique.
    """
    digest, size = hashlib.sha256(), 0
    file.seek(0)
    while chunk := file.read(_CHUNK):
        digest.update(chunk)
        size += len(chunk)
    file.seek(0)
    stored_name = artifact_storage().save(name, File(file, name=name))
    return StoredArtifact(name=stored_name, sha256=digest.hexdigest(), size=size)


def artifact_read(name: str) -> bytes:
    with artifact_storage().open(name, "rb") as fh:
        return fh.read()


def artifacts_delete(names: Iterable[str]) -> None:
    """Delete the named artifacts; used to undo a write that failed half way."""
    storage = artifact_storage()
    for name in names:
        if name and storage.exists(name):
            storage.delete(name)
