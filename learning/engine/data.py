"""Domain arrays: the normalized on-disk form of an image data set or an embedded text data set.

An image domain is stored as one ``.npz`` file (written with ``np.savez``, read with
``allow_pickle=False``) holding:

- ``images``: ``(N, 28, 28)`` uint8, ink high (255 = ink, 0 = background);
- ``labels``: ``(N,)`` int64, a class index into ``class_names``;
- ``class_names``: ``(C,)`` unicode, unique;
- ``class_groups``: ``(C,)`` unicode, the group (e.g. Omniglot alphabet) of each
  class, ``""`` where the domain has no groups.

Example order is by class, then by the sorted file name within the class, so the
same source gives the same arrays on any machine.

An embedded text domain (:class:`TextArrays`) is stored the same way, with ``embeddings``
``(N, D)`` float32 (one frozen sentence-encoder vector per text, see
:mod:`learning.engine.text_encoder`) in place of ``images`` and an ``encoder`` string that
names the model that made them (``""``: unknown); the texts themselves stay with the site.
The episode samplers (:mod:`learning.engine.episodes`) draw from either kind.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

IMAGE_SIZE = 28


class DataFormatError(ValueError):
    """The arrays do not follow the layout described in this module."""


class _LabeledClasses:
    """Class bookkeeping shared by :class:`ImageArrays` and :class:`TextArrays` (a mixin)."""

    labels: np.ndarray
    class_names: tuple[str, ...]
    class_groups: tuple[str, ...]

    def _check_labels(self, n: int) -> None:
        """Raise :class:`DataFormatError` unless the labels and class lists fit ``n`` examples."""
        if self.labels.shape != (n,):
            raise DataFormatError(f"labels must have shape ({n},), got {self.labels.shape}")
        if len(self.class_names) != len(self.class_groups):
            raise DataFormatError("class_names and class_groups differ in length")
        if len(set(self.class_names)) != len(self.class_names):
            raise DataFormatError("class names are not unique")
        if n and (self.labels.min() < 0 or self.labels.max() >= len(self.class_names)):
            raise DataFormatError("a label is outside the class list")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def groups(self) -> tuple[str, ...]:
        """The distinct non-empty groups, sorted."""
        return tuple(sorted({g for g in self.class_groups if g}))

    def class_counts(self) -> np.ndarray:
        """Examples per class, shape ``(C,)`` int64."""
        return np.bincount(self.labels, minlength=self.num_classes)

    def indices_by_class(self) -> list[np.ndarray]:
        """For each class index, the example indices (sorted ascending)."""
        order = np.argsort(self.labels, kind="stable")
        bounds = np.cumsum(np.r_[0, self.class_counts()])
        return [order[bounds[c] : bounds[c + 1]] for c in range(self.num_classes)]


@dataclass(frozen=True)
class ImageArrays(_LabeledClasses):
    """An image domain in memory; see the module docstring for shapes and dtypes."""

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    class_groups: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.images.dtype != np.uint8 or self.images.ndim != 3:
            raise DataFormatError(
                f"images must be (N, H, W) uint8, got {self.images.dtype} {self.images.shape}"
            )
        self._check_labels(self.images.shape[0])


@dataclass(frozen=True)
class TextArrays(_LabeledClasses):
    """An embedded text domain in memory: ``embeddings`` ``(N, D)`` float32, finite, one row per text;
    ``labels``, ``class_names`` and ``class_groups`` as in :class:`ImageArrays`; ``encoder`` names
    the sentence encoder that made the embeddings (e.g. :data:`learning.engine.text_encoder.ENCODER`).
    """

    embeddings: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    class_groups: tuple[str, ...]
    encoder: str = ""

    def __post_init__(self) -> None:
        e = self.embeddings
        if e.dtype != np.float32 or e.ndim != 2 or e.shape[1] < 1:
            raise DataFormatError(f"embeddings must be (N, D) float32 with D >= 1, got {e.dtype} {e.shape}")
        if not np.isfinite(e).all():
            raise DataFormatError("embeddings hold a NaN or an infinity")
        self._check_labels(e.shape[0])

    @property
    def dim(self) -> int:
        """``D``, the size of one embedding."""
        return int(self.embeddings.shape[1])


EpisodeData = ImageArrays | TextArrays
"""What episodes are drawn from: an image domain or an embedded text domain."""


def save_image_arrays(arrays: ImageArrays, target: BinaryIO) -> None:
    """Write ``arrays`` to a binary file object as an uncompressed ``.npz``."""
    np.savez(
        target,
        images=arrays.images,
        labels=arrays.labels.astype(np.int64),
        class_names=np.array(arrays.class_names, dtype=np.str_),
        class_groups=np.array(arrays.class_groups, dtype=np.str_),
    )


def image_arrays_to_bytes(arrays: ImageArrays) -> bytes:
    """The ``.npz`` bytes of ``arrays``."""
    buffer = io.BytesIO()
    save_image_arrays(arrays, buffer)
    return buffer.getvalue()


def load_image_arrays(source: BinaryIO | str) -> ImageArrays:
    """Read an ``.npz`` written by :func:`save_image_arrays`; never unpickles."""
    try:
        with np.load(source, allow_pickle=False) as npz:
            return ImageArrays(
                images=npz["images"],
                labels=npz["labels"].astype(np.int64),
                class_names=tuple(str(s) for s in npz["class_names"]),
                class_groups=tuple(str(s) for s in npz["class_groups"]),
            )
    except (KeyError, ValueError) as exc:
        raise DataFormatError(f"not a MetaKB image-array file: {exc}") from exc


def save_text_arrays(arrays: TextArrays, target: BinaryIO) -> None:
    """Write ``arrays`` to a binary file object as an uncompressed ``.npz``."""
    np.savez(
        target,
        embeddings=arrays.embeddings,
        labels=arrays.labels.astype(np.int64),
        class_names=np.array(arrays.class_names, dtype=np.str_),
        class_groups=np.array(arrays.class_groups, dtype=np.str_),
        encoder=np.array(arrays.encoder, dtype=np.str_),
    )


def text_arrays_to_bytes(arrays: TextArrays) -> bytes:
    """The ``.npz`` bytes of ``arrays``."""
    buffer = io.BytesIO()
    save_text_arrays(arrays, buffer)
    return buffer.getvalue()


def load_text_arrays(source: BinaryIO | str) -> TextArrays:
    """Read an ``.npz`` written by :func:`save_text_arrays`; never unpickles."""
    try:
        with np.load(source, allow_pickle=False) as npz:
            return TextArrays(
                embeddings=npz["embeddings"],
                labels=npz["labels"].astype(np.int64),
                class_names=tuple(str(s) for s in npz["class_names"]),
                class_groups=tuple(str(s) for s in npz["class_groups"]),
                encoder=str(npz["encoder"]),
            )
    except (KeyError, ValueError) as exc:
        raise DataFormatError(f"not a MetaKB text-array file: {exc}") from exc
