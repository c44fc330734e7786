"""The domains every MetaKB has, offline, on any machine: two function families and a digit set.

- ``sinusoid``: ``y = A sin(x - phi)``, ``A ~ U[0.1, 5]``, ``phi ~ U[0, pi]``, ``x ~ U[-5, 5]``
  (Finn, Abbeel and Levine 2017, the MAML regression benchmark).
- ``gp-1d``: functions drawn from a zero-mean Gaussian process with an RBF kernel,
  length scale 0.4 and signal variance 1, observed with Gaussian noise of standard
  deviation 0.02 at ``x ~ U[-2, 2]`` (Garnelo et al. 2018, the neural-process 1-D
  regression task; a short length scale gives a few bumps over the range, and a small
  noise keeps the observations near the curve). These equal the defaults of
  ``learning.engine.functions``.
- ``digits``: scikit-learn's bundled copy of the UCI optical-recognition digits, 1,797
  8x8 images with values 0..16 (ink high), scaled to 0..255 and upsampled to 28x28,
  classes ``"0"``..``"9"``, no groups.

This module only describes them; ``learning.services.domains.builtin_domains_register``
writes them to the catalog.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from learning.engine.data import IMAGE_SIZE, ImageArrays


@dataclass(frozen=True)
class BuiltinDomain:
    """One built-in domain: its catalog text, and a generator (function domains) or nothing (images)."""

    name: str
    modality: str
    description: str
    citation: str
    license: str = ""
    source_url: str = ""
    generator: dict = field(default_factory=dict)


SINUSOID_GENERATOR = {
    "family": "sinusoid",
    "amplitude": [0.1, 5.0],
    "phase": [0.0, math.pi],
    "x_range": [-5.0, 5.0],
}
GP_1D_GENERATOR = {
    "family": "gp-1d",
    "kernel": "rbf",
    "length_scale": 0.4,
    "signal_variance": 1.0,
    "noise_std": 0.02,
    "x_range": [-2.0, 2.0],
}
FUNCTION_FAMILIES = ("sinusoid", "gp-1d")

BUILTIN_DOMAINS: tuple[BuiltinDomain, ...] = (
    BuiltinDomain(
        name="sinusoid",
        modality="function_regression",
        description=(
            "Sine waves y = A sin(x - phase) with amplitude A in [0.1, 5.0] and phase in [0, pi], "
            "observed without noise at x in [-5, 5]. Each task is one sine wave."
        ),
        citation=(
            "Finn, C., Abbeel, P. and Levine, S. (2017). Model-Agnostic Meta-Learning for Fast "
            "Adaptation of Deep Networks. ICML 2017."
        ),
        generator=SINUSOID_GENERATOR,
    ),
    BuiltinDomain(
        name="gp-1d",
        modality="function_regression",
        description=(
            "Functions drawn from a zero-mean Gaussian process with an RBF kernel (length scale 0.4, "
            "signal variance 1.0), observed with Gaussian noise (standard deviation 0.02) at x in [-2, 2]. "
            "Each task is one function."
        ),
        citation=(
            "Garnelo, M., Schwarz, J., Rosenbaum, D., Viola, F., Rezende, D. J., Eslami, S. M. A. and "
            "Teh, Y. W. (2018). Neural Processes. ICML 2018 Workshop on Theoretical Foundations and "
            "Applications of Deep Generative Models."
        ),
        generator=GP_1D_GENERATOR,
    ),
    BuiltinDomain(
        name="digits",
        modality="image_classification",
        description=(
            "Handwritten digits 0-9: 1,797 images of 8x8 pixels (16 gray levels) from scikit-learn's "
            "bundled copy of the UCI data set, upsampled to 28x28. Ten classes, no groups."
        ),
        citation=(
            "Alpaydin, E. and Kaynak, C. (1998). Optical Recognition of Handwritten Digits. "
            "UCI Machine Learning Repository. https://doi.org/10.24432/C50P49"
        ),
        license="CC BY 4.0 (UCI data); scikit-learn loader BSD-3-Clause",
        source_url="https://archive.ics.uci.edu/dataset/80/optical+recognition+of+handwritten+digits",
    ),
)


def generator_sha256(generator: dict) -> str:
    """The content hash of a function domain: sha256 of its generator as canonical JSON."""
    canonical = json.dumps(generator, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def family_params(generator: dict) -> tuple[str, dict[str, float]]:
    """The generator as ``(family name, flat parameters)``, the form ``FunctionFamily.from_spec`` takes.

    ``{"family": "sinusoid", "amplitude": [a, b], ...}`` becomes ``("sinusoid",
    {"amplitude_min": a, "amplitude_max": b, ...})``; ranges become ``*_min`` / ``*_max``
    (``x_range`` becomes ``x_min`` / ``x_max``), and the ``kernel`` name is dropped.
    """
    params: dict[str, float] = {}
    for key, value in generator.items():
        if key in ("family", "kernel"):
            continue
        if isinstance(value, list | tuple):
            stem = key.removesuffix("_range")
            params[f"{stem}_min"], params[f"{stem}_max"] = (float(v) for v in value)
        else:
            params[key] = float(value)
    return str(generator["family"]), params


def digits_arrays() -> ImageArrays:
    """scikit-learn's digits as ``ImageArrays``: 28x28 uint8, ink high, ordered by class, then by index."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = np.argsort(digits.target, kind="stable")
    images = []
    for raw in digits.images[order]:
        small = Image.fromarray(np.round(raw * (255.0 / 16.0)).astype(np.uint8), mode="L")
        images.append(np.asarray(small.resize((IMAGE_SIZE, IMAGE_SIZE), Image.LANCZOS), dtype=np.uint8))
    return ImageArrays(
        images=np.stack(images),
        labels=digits.target[order].astype(np.int64),
        class_names=tuple(str(d) for d in range(10)),
        class_groups=("",) * 10,
    )
