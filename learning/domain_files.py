"""Reading a user's image data set (a zip, a folder, an upload or a URL) into ``ImageArrays``.

Accepted layouts, inside an archive or a folder:

- ``<class>/<image>``: one folder per class;
- ``<group>/<class>/<image>``: classes grouped one level up, as Omniglot's
  ``<alphabet>/<character>/<drawing>.png``; the class name becomes ``"<group>/<class>"``
  so names stay unique across groups.

A single top-level wrapper folder (``images_background/...``) is skipped when the files
sit at least three levels deep under it. Obvious junk is ignored: ``__MACOSX/``, dot
files and dot folders (``.DS_Store``), ``Thumbs.db`` and ``desktop.ini``. Every other
file must be an image Pillow can verify and decode, in one of ``IMAGE_FORMATS``.

Each image becomes 28x28 grayscale uint8 with ink high (``learning.engine.data``): it is
flattened onto white where it has transparency, resized with Lanczos, and inverted when
its border is light (black ink on white paper, as Omniglot is). Its header is read first:
more than ``MAX_IMAGE_PIXELS`` pixels is refused before anything is decoded. A large image
is shrunk while it is decoded, to about ``DECODE_GAP`` times 28 pixels a side (JPEG decodes
at 1/2, 1/4 or 1/8 scale; other formats are reduced by whole factors right after
decoding), so the conversions and the resampling never run on the full-size picture.
Sides under ``2 * DECODE_GAP * 28`` = 224 pixels are not shrunk: such images (Omniglot's
105x105) are resampled from their full size, as they always were.

Nothing is ever extracted to disk. Archives are checked before anything is decoded: the
archive's size, the number of entries, entry names that would escape the archive
(``..``, absolute paths, drive letters), symlinks, encryption, and the declared
uncompressed size (absolute and as a multiple of the archive's size, against zip
bombs). While reading, the real bytes are counted too, so a header that lies is caught.
Every problem raises ``InvalidInput`` with ``field="source"`` and a message naming it.
``check_zip`` makes those archive checks alone (it reads only the archive's directory), for
a request that hands a large archive to a job.

The readers take two optional callbacks, for a job that imports in the background:
``on_progress(done, total)`` after each image decoded (and once with 0 before the first;
``total`` counts the image files, junk left out), and ``should_stop()`` before each image,
which ends the import with ``ImportStopped`` when it returns True.
"""

from __future__ import annotations

import io
import os
import re
import stat
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
from django.conf import settings
from PIL import Image, UnidentifiedImageError

from learning.engine.data import IMAGE_SIZE, ImageArrays
from learning.errors import InvalidInput
from learning.heavy_work import raise_if_stopped

IMAGE_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP", "PPM")
"""Formats Pillow may open; others (EPS, which runs Ghostscript, among them) are refused."""
MAX_IMAGE_PIXELS = 4096 * 4096
"""The largest image (width x height) decoded; bigger ones are refused before decoding."""
DECODE_GAP = 4
"""Large images are decoded down to at least this many times the 28-pixel side, then resampled."""
THUMBNAIL_SIZE = 56
JUNK_NAMES = frozenset({"thumbs.db", "desktop.ini"})
DOWNLOAD_TIMEOUT_S = 60
_CHUNK = 1024 * 1024
_SPOOL_IN_MEMORY = 32 * 1024 * 1024
_DRIVE = re.compile(r"^[A-Za-z]:")

ProgressFn = Callable[[int, int], None]
"""``on_progress(done, total)``: image files decoded so far, out of the image files to decode."""
StopFn = Callable[[], bool]


class ImportStopped(Exception):
    """``should_stop()`` returned True while the images were decoded; nothing was stored."""

    def __init__(self, done: int, total: int) -> None:
        super().__init__(f"import stopped after {done:,} of {total:,} image files")
        self.done = done
        self.total = total


def _invalid(message: str) -> InvalidInput:
    return InvalidInput(message, field="source")


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


# --- Images ----------------------------------------------------------------------------


def _to_gray(image: Image.Image) -> Image.Image:
    """The image as mode ``L``: transparency flattened onto white, wide integer modes rescaled."""
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("L")
    if image.mode in ("I", "F") or image.mode.startswith("I;"):
        values = np.asarray(image, dtype=np.float64)
        low, high = float(values.min()), float(values.max())
        scaled = (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)
        return Image.fromarray(np.round(scaled).astype(np.uint8), mode="L")
    return image.convert("L")


def _shrunk(image: Image.Image) -> Image.Image:
    """The loaded ``image`` reduced by whole factors to at least ``DECODE_GAP * 28`` pixels a side.

    Images smaller than twice that are returned as they are. Modes Pillow cannot reduce
    (palette, bilevel, 16-bit) are converted first, keeping their transparency.
    """
    target = IMAGE_SIZE * DECODE_GAP
    factors = (max(1, image.width // target), max(1, image.height // target))
    if factors == (1, 1):
        return image
    if image.mode in ("P", "PA"):
        image = image.convert("RGBA")
    elif image.mode == "1":
        image = image.convert("L")
    elif image.mode.startswith("I;16"):
        image = image.convert("I")
    return image.reduce(factors)


def normalize_image(data: bytes, *, name: str) -> np.ndarray:
    """Verify and decode one image file; return it as ``(28, 28)`` uint8 with ink high.

    Raises ``InvalidInput`` naming ``name`` when the bytes are not an image in
    ``IMAGE_FORMATS``, are damaged, or hold more than ``MAX_IMAGE_PIXELS`` pixels (checked
    on the header, before decoding).
    """
    try:
        with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as probe:
            if probe.width * probe.height > MAX_IMAGE_PIXELS:
                raise _invalid(
                    f"{name}: image is {probe.width}x{probe.height} pixels, "
                    f"at most {MAX_IMAGE_PIXELS:,} allowed"
                )
            probe.verify()
        with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as image:
            # JPEG only: decode at 1/2, 1/4 or 1/8 scale when that still leaves the target size.
            image.draft(None, (IMAGE_SIZE * DECODE_GAP, IMAGE_SIZE * DECODE_GAP))
            image.load()
            gray = _to_gray(_shrunk(image))
    except InvalidInput:
        raise
    except UnidentifiedImageError as exc:
        raise _invalid(f"{name} is not an image in a known format ({', '.join(IMAGE_FORMATS)})") from exc
    except Image.DecompressionBombError as exc:
        raise _invalid(
            f"{name}: image is too large, at most {MAX_IMAGE_PIXELS:,} pixels allowed ({exc})"
        ) from exc
    except (OSError, SyntaxError, ValueError, EOFError, TypeError, IndexError, zlib.error) as exc:
        raise _invalid(f"{name} is not a readable image ({exc})") from exc
    if gray.width == 0 or gray.height == 0:
        raise _invalid(f"{name} is an empty image")
    pixels = np.asarray(gray, dtype=np.float64)
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    resized = np.asarray(gray.resize((IMAGE_SIZE, IMAGE_SIZE), Image.LANCZOS), dtype=np.uint8)
    # A light border means dark ink on light paper: invert, so ink is high.
    return 255 - resized if border.mean() > 127.5 else resized.copy()


def thumbnail_png(image: np.ndarray, *, size: int = THUMBNAIL_SIZE) -> bytes:
    """A ``size`` x ``size`` PNG of one ink-high image, drawn ink dark on light like the original."""
    picture = Image.fromarray(255 - np.asarray(image, dtype=np.uint8), mode="L")
    buffer = io.BytesIO()
    picture.resize((size, size), Image.LANCZOS).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


# --- Layout ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _File:
    parts: tuple[str, ...]
    read: Callable[[], bytes]

    @property
    def path(self) -> str:
        return "/".join(self.parts)


def _is_junk(parts: tuple[str, ...]) -> bool:
    return any(p.startswith(".") or p == "__MACOSX" for p in parts) or parts[-1].lower() in JUNK_NAMES


def _strip_wrapper(
    files: list[_File], folders: set[tuple[str, ...]]
) -> tuple[list[_File], set[tuple[str, ...]]]:
    tops = {f.parts[0] for f in files} | {d[0] for d in folders}
    if len(tops) != 1 or any(len(f.parts) < 3 for f in files):
        return files, folders
    return (
        [_File(f.parts[1:], f.read) for f in files],
        {d[1:] for d in folders if len(d) > 1},
    )


def build_image_arrays(
    files: list[_File],
    folders: Iterable[tuple[str, ...]],
    *,
    source: str,
    on_progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> ImageArrays:
    """Check the layout of ``files`` (junk already dropped) and decode them, class by class.

    ``on_progress`` and ``should_stop``: see the module docstring.
    """
    folders = set(folders)
    if not files:
        raise _invalid(f"{source} holds no image files")
    files, folders = _strip_wrapper(files, folders)
    depth = max(len(f.parts) for f in files)
    loose = next((f for f in files if len(f.parts) == 1), None)
    if loose is not None:
        raise _invalid(
            f"{loose.path} is not inside a class folder; expected <class>/<image> or <group>/<class>/<image>"
        )
    if depth > 3:
        deep = next(f for f in files if len(f.parts) == depth)
        raise _invalid(
            f"{deep.path} is nested too deeply; expected <class>/<image> or <group>/<class>/<image>"
        )
    shallow = next((f for f in files if len(f.parts) != depth), None)
    if shallow is not None:
        deep = next(f for f in files if len(f.parts) == depth)
        raise _invalid(
            f"mixed layout: {shallow.path} is a class of its own but {deep.path} is in a group; "
            "use either <class>/<image> or <group>/<class>/<image> throughout"
        )

    by_class: dict[tuple[str, ...], list[_File]] = {}
    for f in files:
        by_class.setdefault(f.parts[:-1], []).append(f)
    for folder in sorted(folders):
        if any(key[: len(folder)] == folder for key in by_class):
            continue
        label = "/".join(folder)
        if len(folder) == depth - 1:
            raise _invalid(f"class {label} has no images")
        if len(folder) < depth - 1:
            raise _invalid(f"folder {label} has no class folders with images")
        raise _invalid(f"folder {label} is nested too deeply inside a class folder")
    if len(by_class) < 2:
        only = ", ".join("/".join(k) for k in by_class)
        raise _invalid(f"{source} has only one class ({only}); a domain needs at least 2 classes")

    keys = sorted(by_class)
    images: list[np.ndarray] = []
    labels: list[int] = []
    total = len(files)
    if on_progress is not None:
        on_progress(0, total)
    for label_index, key in enumerate(keys):
        for f in sorted(by_class[key], key=lambda f: f.parts[-1]):
            raise_if_stopped()
            if should_stop is not None and should_stop():
                raise ImportStopped(len(images), total)
            images.append(normalize_image(f.read(), name=f.path))
            labels.append(label_index)
            if on_progress is not None:
                on_progress(len(images), total)
    return ImageArrays(
        images=np.stack(images).astype(np.uint8),
        labels=np.asarray(labels, dtype=np.int64),
        class_names=tuple("/".join(k) for k in keys),
        class_groups=tuple(k[0] if depth == 3 else "" for k in keys),
    )


# --- Zip archives ----------------------------------------------------------------------


def _entry_parts(name: str) -> tuple[str, ...]:
    clean = name.replace("\\", "/")
    if clean.startswith("/") or _DRIVE.match(clean):
        raise _invalid(f"{name} is an absolute path; archive entries must be relative")
    parts = tuple(p for p in clean.split("/") if p not in ("", "."))
    if ".." in parts:
        raise _invalid(f"{name} points outside the archive")
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
                        raise _invalid(f"{info.filename} holds more bytes than its header declares")
                    if self.total > self.cap:
                        raise _invalid(
                            f"the archive expands to more than {self.cap:,} bytes; refusing it as a zip bomb"
                        )
                    chunks.append(chunk)
        except InvalidInput:
            raise
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError, NotImplementedError) as exc:
            raise _invalid(f"{info.filename} is damaged in the archive ({exc})") from exc
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
        raise _invalid(f"{source} is {size:,} bytes; the limit is {limits.max_bytes:,}")
    try:
        archive = zipfile.ZipFile(file)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        raise _invalid(f"{source} is not a zip archive or a folder of images ({exc})") from exc
    with archive:
        infos = archive.infolist()
        if len(infos) > limits.max_files:
            raise _invalid(f"{source} has {len(infos):,} entries; the limit is {limits.max_files:,}")
        cap = limits.uncompressed_cap(size)
        declared = 0
        for info in infos:
            _entry_parts(info.filename)
            if _is_symlink(info):
                raise _invalid(
                    f"{info.filename} is a symbolic link; archives may hold only files and folders"
                )
            if info.flag_bits & 0x1:
                raise _invalid(f"{info.filename} is encrypted; encrypted archives are not supported")
            declared += info.file_size
        if declared > cap:
            raise _invalid(
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
        files: list[_File] = []
        folders: set[tuple[str, ...]] = set()
        for info in archive.infolist():
            parts = _entry_parts(info.filename)
            if not parts or _is_junk(parts):
                continue
            if info.is_dir():
                folders.add(parts)
                continue
            folders.update(parts[:i] for i in range(1, len(parts)))
            files.append(_File(parts, lambda info=info: counter.read_entry(archive, info)))
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
                raise _invalid(f"{root} has more than {limits.max_files:,} entries")
            if stat.S_ISLNK(info.st_mode):
                raise _invalid(
                    f"{'/'.join(parts)} is a symbolic link; the folder may hold only files and folders"
                )
            if stat.S_ISDIR(info.st_mode):
                yield parts, True, 0
            elif stat.S_ISREG(info.st_mode):
                yield parts, False, info.st_size
            else:
                raise _invalid(f"{'/'.join(parts)} is not a regular file")


def read_folder(
    root: Path,
    *,
    limits: ImportLimits,
    on_progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> ImageArrays:
    """Check and decode a folder of class folders (see the module docstring)."""
    files: list[_File] = []
    folders: set[tuple[str, ...]] = set()
    total = 0
    for parts, is_folder, size in _walk_folder(root, limits):
        if _is_junk(parts):
            continue
        if is_folder:
            folders.add(parts)
            continue
        total += size
        if total > min(limits.max_bytes, limits.max_uncompressed_bytes):
            raise _invalid(
                f"{root} holds more than {min(limits.max_bytes, limits.max_uncompressed_bytes):,} bytes"
            )
        files.append(_File(parts, lambda p=root.joinpath(*parts): p.read_bytes()))
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
                raise _invalid(f"{source} is larger than the {limit:,}-byte limit")
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
        raise _invalid(f"{path} is neither a zip file nor a folder")
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
        raise _invalid(f"{name} is {declared:,} bytes; the limit is {limits.max_bytes:,}")
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
    timeout: float = DOWNLOAD_TIMEOUT_S,
    on_progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> ImageArrays:
    """Download a zip over http(s), at most ``limits.max_bytes`` of it, and decode it."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise _invalid(f"{url} is not an http or https URL")
    request = urllib.request.Request(url, headers={"User-Agent": "MetaKB domain import"})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)  # the scheme was checked above
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise _invalid(f"could not download {url} ({exc})") from exc
    with response:
        length = response.headers.get("Content-Length")
        if length and length.isdigit() and int(length) > limits.max_bytes:
            raise _invalid(f"{url} is {int(length):,} bytes; the limit is {limits.max_bytes:,}")
        try:
            spool = _spool(iter(lambda: response.read(_CHUNK), b""), limit=limits.max_bytes, source=url)
        except (OSError, urllib.error.URLError) as exc:
            raise _invalid(f"the download of {url} failed ({exc})") from exc
    name = os.path.basename(parsed.path) or url
    with spool:
        return read_zip(spool, limits=limits, source=name, on_progress=on_progress, should_stop=should_stop)
