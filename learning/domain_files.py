"""Reading a user's image data set (a zip, a folder, an upload or a URL) into ``ImageArrays``.

The accepted layouts are checked and decoded by ``learning.domain_layout``, each image by
``learning.images``; this module reads the sources and enforces ``ImportLimits``.

Nothing is ever extracted to disk. Archives are checked before anything is decoded: the
archive's size, the number of entries, entry names that would escape the archive
(``..``, absolute paths, drive letters), symlinks, encryption, and the declared
uncompressed size (absolute and as a multiple of the archive's size, against zip
bombs). While reading, the real bytes are counted too, so a header that lies is caught.
Every problem raises ``InvalidInput`` with ``field="source"`` and a message naming it.
``check_zip`` makes those archive checks alone (it reads only the archive's directory), for
a request that hands a large archive to a job.

A URL is downloaded by ``learning.url_fetch``: public addresses only, redirects checked hop
by hop, one deadline for the whole download.

The readers take the optional ``on_progress`` and ``should_stop`` callbacks of
``learning.domain_layout.build_image_arrays``, for a job that imports in the background.
"""

from __future__ import annotations

import os
import re
import stat
import tempfile
import urllib.parse
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from django.conf import settings

from learning.domain_layout import (
    ProgressFn,
    SourceFile,
    StopFn,
    build_image_arrays,
    invalid_source,
    is_junk,
)
from learning.engine.data import ImageArrays
from learning.errors import InvalidInput
from learning.url_fetch import fetch_url

_CHUNK = 1024 * 1024
_SPOOL_IN_MEMORY = 32 * 1024 * 1024
_DRIVE = re.compile(r"^[A-Za-z]:")


@dataclass(frozen=True)
class ImportLimits:
    """Caps on what an import may read; ``from_settings`` takes them from ``IMPORT_MAX_*``."""

    max_bytes: int
    max_files: int
    max_expansion: float
    max_uncompressed_bytes: int

    @classmethod
    def from_settings(cls) -> ImportLimits:
        return cls(
            max_bytes=settings.IMPORT_MAX_BYTES,
            max_files=settings.IMPORT_MAX_FILES,
            max_expansion=settings.IMPORT_MAX_EXPANSION,
            max_uncompressed_bytes=settings.IMPORT_MAX_UNCOMPRESSED_BYTES,
        )

    def uncompressed_cap(self, compressed_size: int) -> int:
        """The most bytes an archive of ``compressed_size`` bytes may expand to."""
        return min(self.max_uncompressed_bytes, int(self.max_expansion * max(compressed_size, 1)))


# --- Zip archives ----------------------------------------------------------------------


def _entry_parts(name: str) -> tuple[str, ...]:
    clean = name.replace("\\", "/")
    if clean.startswith("/") or _DRIVE.match(clean):
        raise invalid_source(f"{name} is an absolute path; archive entries must be relative")
    parts = tuple(p for p in clean.split("/") if p not in ("", "."))
    if ".." in parts:
        raise invalid_source(f"{name} points outside the archive")
    return parts


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    return stat.S_ISLNK(info.external_attr >> 16)


class _ByteCounter:
    """Counts the bytes really decompressed across an archive, against the uncompressed cap."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.total = 0

    def read_entry(self, archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
        chunks: list[bytes] = []
        size = 0
        try:
            with archive.open(info) as fh:
                while chunk := fh.read(_CHUNK):
                    size += len(chunk)
                    self.total += len(chunk)
                    if size > info.file_size:
                        raise invalid_source(f"{info.filename} holds more bytes than its header declares")
                    if self.total > self.cap:
                        raise invalid_source(
                            f"the archive expands to more than {self.cap:,} bytes; refusing it as a zip bomb"
                        )
                    chunks.append(chunk)
        except InvalidInput:
            raise
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError, NotImplementedError) as exc:
            raise invalid_source(f"{info.filename} is damaged in the archive ({exc})") from exc
        return b"".join(chunks)


@contextmanager
def _checked_zip(
    file: IO[bytes], *, limits: ImportLimits, source: str
) -> Iterator[tuple[zipfile.ZipFile, int]]:
    """The open archive and its uncompressed cap, once its size and directory passed every check."""
    file.seek(0, os.SEEK_END)
    size = file.tell()
    file.seek(0)
    if size > limits.max_bytes:
        raise invalid_source(f"{source} is {size:,} bytes; the limit is {limits.max_bytes:,}")
    try:
        archive = zipfile.ZipFile(file)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        raise invalid_source(f"{source} is not a zip archive or a folder of images ({exc})") from exc
    with archive:
        infos = archive.infolist()
        if len(infos) > limits.max_files:
            raise invalid_source(f"{source} has {len(infos):,} entries; the limit is {limits.max_files:,}")
        cap = limits.uncompressed_cap(size)
        declared = 0
        for info in infos:
            _entry_parts(info.filename)
            if _is_symlink(info):
                raise invalid_source(
                    f"{info.filename} is a symbolic link; archives may hold only files and folders"
                )
            if info.flag_bits & 0x1:
                raise invalid_source(f"{info.filename} is encrypted; encrypted archives are not supported")
            declared += info.file_size
        if declared > cap:
            raise invalid_source(
                f"{source} declares {declared:,} uncompressed bytes, more than the {cap:,} allowed "
                f"(at most {limits.max_expansion:g}x its size and {limits.max_uncompressed_bytes:,} bytes); "
                "refusing it as a possible zip bomb"
            )
        yield archive, cap


def check_zip(file: IO[bytes], *, limits: ImportLimits, source: str = "the archive") -> None:
    """The checks ``read_zip`` makes before it decodes anything; cheap, as it reads only the directory.

    Raises the same ``InvalidInput`` as ``read_zip`` for the archive's size, its entry
    count, names that escape it, symbolic links, encryption and its declared size.
    """
    with _checked_zip(file, limits=limits, source=source):
        pass


def read_zip(
    file: IO[bytes],
    *,
    limits: ImportLimits,
    source: str = "the archive",
    on_progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> ImageArrays:
    """Check and decode a zip archive held in a seekable binary file object."""
    with _checked_zip(file, limits=limits, source=source) as (archive, cap):
        counter = _ByteCounter(cap)
        files: list[SourceFile] = []
        folders: set[tuple[str, ...]] = set()
        for info in archive.infolist():
            parts = _entry_parts(info.filename)
            if not parts or is_junk(parts):
                continue
            if info.is_dir():
                folders.add(parts)
                continue
            folders.update(parts[:i] for i in range(1, len(parts)))
            files.append(SourceFile(parts, lambda info=info: counter.read_entry(archive, info)))
        # Implicit parents are folders too; only explicit empty ones can be empty, which is what we check.
        return build_image_arrays(
            files, folders, source=source, on_progress=on_progress, should_stop=should_stop
        )


# --- Folders ---------------------------------------------------------------------------


def _walk_folder(root: Path, limits: ImportLimits) -> Iterator[tuple[tuple[str, ...], bool, int]]:
    """Yield ``(parts, is_folder, size)`` for everything under ``root``, refusing links and odd files."""
    count = 0
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in dirnames + sorted(filenames):
            full = Path(dirpath) / name
            parts = full.relative_to(root).parts
            info = full.lstat()
            count += 1
            if count > limits.max_files:
                raise invalid_source(f"{root} has more than {limits.max_files:,} entries")
            if stat.S_ISLNK(info.st_mode):
                raise invalid_source(
                    f"{'/'.join(parts)} is a symbolic link; the folder may hold only files and folders"
                )
            if stat.S_ISDIR(info.st_mode):
                yield parts, True, 0
            elif stat.S_ISREG(info.st_mode):
                yield parts, False, info.st_size
            else:
                raise invalid_source(f"{'/'.join(parts)} is not a regular file")


def read_folder(
    root: Path,
    *,
    limits: ImportLimits,
    on_progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> ImageArrays:
    """Check and decode a folder of class folders (see the module docstring)."""
    files: list[SourceFile] = []
    folders: set[tuple[str, ...]] = set()
    total = 0
    for parts, is_folder, size in _walk_folder(root, limits):
        if is_junk(parts):
            continue
        if is_folder:
            folders.add(parts)
            continue
        total += size
        if total > min(limits.max_bytes, limits.max_uncompressed_bytes):
            raise invalid_source(
                f"{root} holds more than {min(limits.max_bytes, limits.max_uncompressed_bytes):,} bytes"
            )
        files.append(SourceFile(parts, lambda p=root.joinpath(*parts): p.read_bytes()))
    return build_image_arrays(
        files, folders, source=str(root), on_progress=on_progress, should_stop=should_stop
    )


# --- Sources ---------------------------------------------------------------------------


def _spool(chunks: Iterable[bytes], *, limit: int, source: str) -> IO[bytes]:
    """Copy ``chunks`` into a temporary file (in memory while small), refusing more than ``limit`` bytes."""
    spool: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY)  # noqa: SIM115
    size = 0
    try:
        for chunk in chunks:
            size += len(chunk)
            if size > limit:
                raise invalid_source(f"{source} is larger than the {limit:,}-byte limit")
            spool.write(chunk)
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    return spool


def read_path(
    path: str | os.PathLike[str],
    *,
    limits: ImportLimits,
    on_progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> ImageArrays:
    """A local zip file or folder. Only for trusted callers: it reads any path the process can."""
    root = Path(path)
    callbacks = {"on_progress": on_progress, "should_stop": should_stop}
    if root.is_dir():
        return read_folder(root, limits=limits, **callbacks)
    if not root.is_file():
        raise invalid_source(f"{path} is neither a zip file nor a folder")
    with root.open("rb") as fh:
        return read_zip(fh, limits=limits, source=root.name, **callbacks)


def upload_name(upload: Any) -> str:
    """The name an upload's errors call it by: its file name without folders, or "the upload"."""
    return os.path.basename(str(getattr(upload, "name", "") or "the upload"))


@contextmanager
def spooled_upload(upload: Any, *, limits: ImportLimits) -> Iterator[IO[bytes]]:
    """An upload copied into a seekable temporary file, refused over ``limits.max_bytes``.

    ``upload`` is anything with ``.read()`` (and ideally ``.chunks()``, ``.size``, ``.name``).
    """
    name = upload_name(upload)
    declared = getattr(upload, "size", None)
    if isinstance(declared, int) and declared > limits.max_bytes:
        raise invalid_source(f"{name} is {declared:,} bytes; the limit is {limits.max_bytes:,}")
    if hasattr(upload, "seek"):
        upload.seek(0)
    chunks = upload.chunks() if hasattr(upload, "chunks") else iter(lambda: upload.read(_CHUNK), b"")
    with _spool(chunks, limit=limits.max_bytes, source=name) as spool:
        yield spool


def read_upload(
    upload: Any,
    *,
    limits: ImportLimits,
    on_progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> ImageArrays:
    """An uploaded zip: anything with ``.read()`` (and ideally ``.chunks()``, ``.size``, ``.name``)."""
    with spooled_upload(upload, limits=limits) as spool:
        return read_zip(
            spool, limits=limits, source=upload_name(upload), on_progress=on_progress, should_stop=should_stop
        )


def is_url(source: str) -> bool:
    """Whether a string source names a URL (any ``scheme://``) rather than a local path."""
    return "://" in source


def read_url(
    url: str,
    *,
    limits: ImportLimits,
    deadline_s: float | None = None,
    on_progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> ImageArrays:
    """Download a zip over http(s), at most ``limits.max_bytes`` of it, and decode it.

    ``learning.url_fetch`` makes the download: public addresses only (one message for every
    refused one), redirects checked hop by hop, and one deadline for the whole download,
    ``deadline_s`` or ``IMPORT_URL_DEADLINE_S``. ``IMPORT_FROM_URL = False`` turns it off.
    """
    if not settings.IMPORT_FROM_URL:
        raise invalid_source("importing from a URL is turned off on this server (setting IMPORT_FROM_URL)")
    deadline = settings.IMPORT_URL_DEADLINE_S if deadline_s is None else deadline_s
    spool: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY)  # noqa: SIM115
    with spool:
        fetch_url(url, spool, max_bytes=limits.max_bytes, deadline_s=deadline)
        spool.seek(0)
        name = os.path.basename(urllib.parse.urlsplit(url).path) or url
        return read_zip(spool, limits=limits, source=name, on_progress=on_progress, should_stop=should_stop)
