"""Engine-side reader for Omniglot zips (for tests, benchmarks and CLIs).

Reads ``<top>/<Alphabet>/<character>/<file>.png`` members of a zip (the layout of
``images_background.zip``, ``images_evaluation.zip`` and the ``_small1/2`` splits),
and returns :class:`ImageArrays` following the usual protocol: each 105x105 drawing is
resized to 28x28 with a box (area) filter, then inverted so ink is high (255). The
class name is ``"<Alphabet>/<character>"``, its group the alphabet. Classes are sorted by
name and examples by file name, so any machine gets identical arrays.

The Django import service has its own reader; this one keeps the engine's tests and
benchmarks free of Django.
"""

from __future__ import annotations

import io
import os
import zipfile
from collections import defaultdict
from pathlib import PurePosixPath

import numpy as np
from PIL import Image

from learning.engine.data import IMAGE_SIZE, ImageArrays


class OmniglotFormatError(ValueError):
    """The zip does not hold Omniglot's ``<top>/<Alphabet>/<character>/*.png`` layout."""


def _decode(raw: bytes, size: int) -> np.ndarray:
    """A ``(size, size)`` uint8 image with ink high from PNG bytes (ink dark on light)."""
    with Image.open(io.BytesIO(raw)) as img:
        gray = img.convert("L").resize((size, size), Image.Resampling.BOX)
    return 255 - np.asarray(gray, dtype=np.uint8)


def load_omniglot_zip(path: str | os.PathLike[str], size: int = IMAGE_SIZE) -> ImageArrays:
    """The drawings of the Omniglot zip at ``path`` as :class:`ImageArrays` (``(N, size, size)`` uint8).

    Raises :class:`OmniglotFormatError` when no member matches the layout.
    """
    members: dict[tuple[str, str], list[str]] = defaultdict(list)
    with zipfile.ZipFile(path) as zf:
        for name in zf.namelist():
            parts = PurePosixPath(name).parts
            if len(parts) != 4 or not parts[3].lower().endswith(".png") or parts[3].startswith("."):
                continue
            _, alphabet, character, _ = parts
            members[(alphabet, character)].append(name)
        if not members:
            raise OmniglotFormatError(
                f"{os.fspath(path)!r} holds no <top>/<Alphabet>/<character>/*.png files"
            )
        keys = sorted(members)
        images: list[np.ndarray] = []
        labels: list[int] = []
        for label, key in enumerate(keys):
            for name in sorted(members[key], key=lambda n: PurePosixPath(n).name):
                images.append(_decode(zf.read(name), size))
                labels.append(label)
    return ImageArrays(
        images=np.stack(images),
        labels=np.array(labels, dtype=np.int64),
        class_names=tuple(f"{a}/{c}" for a, c in keys),
        class_groups=tuple(a for a, _ in keys),
    )
