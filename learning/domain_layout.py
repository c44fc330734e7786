"""From the files of a data set (in an archive or a folder) to ``ImageArrays``: its layout, checked.

Accepted layouts:

- ``<class>/<image>``: one folder per class;
- ``<group>/<class>/<image>``: classes grouped one level up, as Omniglot's
  ``<alphabet>/<character>/<drawing>.png``; the class name becomes ``"<group>/<class>"``
  so names stay unique across groups.

A single top-level wrapper folder (``images_background/...``) is skipped when the files
sit at least three levels deep under it. Obvious junk is ignored: ``__MACOSX/``, dot
files and dot folders (``.DS_Store``), ``Thumbs.db`` and ``desktop.ini``. Every other
file must be an image that ``learning.images.normalize_image`` decodes. Every problem
raises ``InvalidInput`` with ``field="source"`` and a message naming it.

``build_image_arrays`` takes two optional callbacks, for a job that imports in the
background: ``on_progress(done, total)`` after each image decoded (and once with 0 before
the first; ``total`` counts the image files, junk left out), and ``should_stop()`` before
each image, which ends the import with ``ImportStopped`` when it returns True.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from learning.engine.data import ImageArrays
from learning.errors import InvalidInput
from learning.heavy_work import raise_if_stopped
from learning.images import normalize_image

JUNK_NAMES = frozenset({"thumbs.db", "desktop.ini"})

ProgressFn = Callable[[int, int], None]
"""``on_progress(done, total)``: image files decoded so far, out of the image files to decode."""
StopFn = Callable[[], bool]


class ImportStopped(Exception):
    """``should_stop()`` returned True while the images were decoded; nothing was stored."""

    def __init__(self, done: int, total: int) -> None:
        super().__init__(f"import stopped after {done:,} of {total:,} image files")
        self.done = done
        self.total = total


def invalid_source(message: str) -> InvalidInput:
    """The error for a problem with an imported data set: ``InvalidInput`` on the ``source`` field."""
    return InvalidInput(message, field="source")


@dataclass(frozen=True)
class SourceFile:
    """One file of a data set: its path split into folders and name, and how to read its bytes."""

    parts: tuple[str, ...]
    read: Callable[[], bytes]

    @property
    def path(self) -> str:
        return "/".join(self.parts)


def is_junk(parts: tuple[str, ...]) -> bool:
    """Whether a path is junk to skip: a dot file or folder, ``__MACOSX`` or a ``JUNK_NAMES`` file."""
    return any(p.startswith(".") or p == "__MACOSX" for p in parts) or parts[-1].lower() in JUNK_NAMES


def _strip_wrapper(
    files: list[SourceFile], folders: set[tuple[str, ...]]
) -> tuple[list[SourceFile], set[tuple[str, ...]]]:
    tops = {f.parts[0] for f in files} | {d[0] for d in folders}
    if len(tops) != 1 or any(len(f.parts) < 3 for f in files):
        return files, folders
    return (
        [SourceFile(f.parts[1:], f.read) for f in files],
        {d[1:] for d in folders if len(d) > 1},
    )


def build_image_arrays(
    files: list[SourceFile],
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
        raise invalid_source(f"{source} holds no image files")
    files, folders = _strip_wrapper(files, folders)
    depth = max(len(f.parts) for f in files)
    loose = next((f for f in files if len(f.parts) == 1), None)
    if loose is not None:
        raise invalid_source(
            f"{loose.path} is not inside a class folder; expected <class>/<image> or <group>/<class>/<image>"
        )
    if depth > 3:
        deep = next(f for f in files if len(f.parts) == depth)
        raise invalid_source(
            f"{deep.path} is nested too deeply; expected <class>/<image> or <group>/<class>/<image>"
        )
    shallow = next((f for f in files if len(f.parts) != depth), None)
    if shallow is not None:
        deep = next(f for f in files if len(f.parts) == depth)
        raise invalid_source(
            f"mixed layout: {shallow.path} is a class of its own but {deep.path} is in a group; "
            "use either <class>/<image> or <group>/<class>/<image> throughout"
        )

    by_class: dict[tuple[str, ...], list[SourceFile]] = {}
    for f in files:
        by_class.setdefault(f.parts[:-1], []).append(f)
    for folder in sorted(folders):
        if any(key[: len(folder)] == folder for key in by_class):
            continue
        label = "/".join(folder)
        if len(folder) == depth - 1:
            raise invalid_source(f"class {label} has no images")
        if len(folder) < depth - 1:
            raise invalid_source(f"folder {label} has no class folders with images")
        raise invalid_source(f"folder {label} is nested too deeply inside a class folder")
    if len(by_class) < 2:
        only = ", ".join("/".join(k) for k in by_class)
        raise invalid_source(f"{source} has only one class ({only}); a domain needs at least 2 classes")

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
