"""Engine test fixtures: one CPU thread (the machine is shared), and decoded Omniglot splits."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from learning.engine.data import ImageArrays
from learning.engine.omniglot import load_omniglot_zip

torch.set_num_threads(1)

OMNIGLOT_DIR = Path(
    os.environ.get("METAKB_OMNIGLOT_DIR", Path(__file__).resolve().parents[2].parent / "shared/data/omniglot")
)


def _load(name: str) -> ImageArrays:
    path = OMNIGLOT_DIR / name
    if not path.exists():
        pytest.fail(f"Omniglot test data missing: {path} (set METAKB_OMNIGLOT_DIR)")
    return load_omniglot_zip(path)


@pytest.fixture(scope="session")
def omniglot_small1() -> ImageArrays:
    """images_background_small1 (Balinese, Early_Aramaic, Greek, Korean, Latin), 28x28, ink high."""
    return _load("images_background_small1.zip")


@pytest.fixture(scope="session")
def omniglot_small2() -> ImageArrays:
    """images_background_small2 (Greek, Japanese_(katakana), Latin, Sanskrit, Tagalog), 28x28, ink high."""
    return _load("images_background_small2.zip")
