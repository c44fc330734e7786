"""Function-regression domains: families of 1-D functions and their few-shot task samplers.

A *function family* is a distribution over functions ``f: R -> R``. A *task* is one
function drawn from it, observed at ``K`` context points and ``T`` target points.
Two families are known:

- ``sinusoid`` (Finn et al., 2017): ``y = A sin(x - phi)`` with ``A ~ U[0.1, 5]``,
  ``phi ~ U[0, pi]`` and ``x ~ U[-5, 5]``; observations are noise free.
- ``gp-1d`` (Garnelo et al., 2018): functions drawn from a zero-mean Gaussian process
  with the RBF kernel ``k(x, x') = signal_variance * exp(-(x - x')^2 / (2 length_scale^2))``,
  observed with Gaussian noise of standard deviation ``noise_std``; ``x ~ U[-2, 2]``.

Every parameter lives in ``FunctionFamily.params`` (defaults filled in), so a catalog
entry can record the family exactly and rebuild it with :meth:`FunctionFamily.from_spec`.

Randomness only ever comes from a ``numpy.random.Generator`` on ``PCG64`` that the caller
passes in, never from global state. :func:`split_rng` and :func:`step_rng` derive
generators from ``(seed, split[, step])`` through ``SeedSequence`` spawn keys, so the
meta-training, validation and meta-test streams of one seed are distinct, independent
streams, and the batch of step ``n`` can be drawn again without replaying steps ``0..n-1``
(which is what makes an interrupted run resume exactly).

The random draws are bitwise identical on any machine. ``sinusoid`` values are computed
element-wise; ``gp-1d`` values go through a float64 Cholesky factor, whose last bits can
differ between BLAS builds (about 1e-15 relative), far below the float32 of the output.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from learning.engine.gp import RBFParams, sample_gp

SPLITS: tuple[str, ...] = ("train", "val", "test")
"""Task streams of one seed. ``train`` is meta-training; ``test`` is for held-out evaluation."""

_DEFAULTS: dict[str, dict[str, float]] = {
    "sinusoid": {
        "amplitude_min": 0.1,
        "amplitude_max": 5.0,
        "phase_min": 0.0,
        "phase_max": math.pi,
        "x_min": -5.0,
        "x_max": 5.0,
    },
    "gp-1d": {
        "length_scale": 0.4,
        "signal_variance": 1.0,
        "noise_std": 0.02,
        "x_min": -2.0,
        "x_max": 2.0,
    },
}

FAMILY_NAMES: tuple[str, ...] = tuple(_DEFAULTS)


class FunctionSpecError(ValueError):
    """A function family, its parameters or a sampling request is impossible."""


class FunctionTasks(NamedTuple):
    """A batch of ``B`` regression tasks; all arrays float32.

    Unpacks as ``x_ctx, y_ctx, x_tgt, y_tgt``. Context and target inputs are drawn
    independently from the family's input range, so the two sets are disjoint with
    probability one.
    """

    x_ctx: np.ndarray
    """Context inputs, shape ``(B, K, 1)``."""
    y_ctx: np.ndarray
    """Context outputs, shape ``(B, K, 1)``."""
    x_tgt: np.ndarray
    """Target inputs, shape ``(B, T, 1)``."""
    y_tgt: np.ndarray
    """Target outputs, shape ``(B, T, 1)``."""

    @property
    def batch(self) -> int:
        return int(self.x_ctx.shape[0])

    @property
    def k_context(self) -> int:
        return int(self.x_ctx.shape[1])

    @property
    def n_target(self) -> int:
        return int(self.x_tgt.shape[1])

    def select(self, index: slice | np.ndarray) -> FunctionTasks:
        """The tasks at ``index`` along the batch axis (a view for slices)."""
        return FunctionTasks(self.x_ctx[index], self.y_ctx[index], self.x_tgt[index], self.y_tgt[index])


def _check_positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise FunctionSpecError(f"{name} must be an integer, got {value!r}")
    if value <= 0:
        raise FunctionSpecError(f"{name} must be at least 1, got {value}")
    return int(value)


@dataclass(frozen=True)
class FunctionFamily:
    """A named distribution over 1-D functions, with every parameter in ``params``.

    Build one with :meth:`from_spec` to fill defaults in; the constructor checks that
    ``params`` names exactly the family's parameters with usable values.
    """

    name: str
    params: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.name not in _DEFAULTS:
            raise FunctionSpecError(
                f"unknown function family {self.name!r}; known: {', '.join(FAMILY_NAMES)}"
            )
        expected = set(_DEFAULTS[self.name])
        given = set(self.params)
        if given != expected:
            missing = sorted(expected - given)
            unknown = sorted(given - expected)
            raise FunctionSpecError(
                f"{self.name} parameters: missing {missing}, unknown {unknown}; expected {sorted(expected)}"
            )
        clean: dict[str, float] = {}
        for key in _DEFAULTS[self.name]:
            value = self.params[key]
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise FunctionSpecError(f"{self.name} parameter {key} must be a number, got {value!r}")
            if not math.isfinite(float(value)):
                raise FunctionSpecError(f"{self.name} parameter {key} must be finite, got {value}")
            clean[key] = float(value)
        self._check_values(clean)
        # A plain dict of floats in the canonical key order, so to_spec() is stable JSON.
        object.__setattr__(self, "params", clean)

    def _check_values(self, p: dict[str, float]) -> None:
        if p["x_min"] >= p["x_max"]:
            raise FunctionSpecError(f"{self.name}: x_min ({p['x_min']}) must be below x_max ({p['x_max']})")
        if self.name == "sinusoid":
            if p["amplitude_min"] < 0 or p["amplitude_min"] > p["amplitude_max"]:
                raise FunctionSpecError(
                    f"sinusoid: need 0 <= amplitude_min <= amplitude_max, "
                    f"got {p['amplitude_min']} and {p['amplitude_max']}"
                )
            if p["phase_min"] > p["phase_max"]:
                raise FunctionSpecError(
                    f"sinusoid: phase_min ({p['phase_min']}) exceeds phase_max ({p['phase_max']})"
                )
        else:
            if p["length_scale"] <= 0:
                raise FunctionSpecError(f"gp-1d: length_scale must be positive, got {p['length_scale']}")
            if p["signal_variance"] <= 0:
                raise FunctionSpecError(
                    f"gp-1d: signal_variance must be positive, got {p['signal_variance']}"
                )
            if p["noise_std"] < 0:
                raise FunctionSpecError(f"gp-1d: noise_std must be non-negative, got {p['noise_std']}")

    @classmethod
    def from_spec(cls, name: str, params: Mapping[str, float] | None = None) -> FunctionFamily:
        """The family ``name`` with ``params`` overriding its defaults.

        Returns the validated family; raises :class:`FunctionSpecError` for an unknown
        name, an unknown parameter or an impossible value.
        """
        if name not in _DEFAULTS:
            raise FunctionSpecError(f"unknown function family {name!r}; known: {', '.join(FAMILY_NAMES)}")
        merged: dict[str, float] = dict(_DEFAULTS[name])
        merged.update(params or {})
        return cls(name, merged)

    @classmethod
    def from_dict(cls, spec: Mapping[str, object]) -> FunctionFamily:
        """Rebuild a family from :meth:`to_spec`'s ``{"name": ..., "params": {...}}``."""
        name = spec.get("name")
        params = spec.get("params", {})
        if not isinstance(name, str):
            raise FunctionSpecError(f"a function family spec needs a string 'name', got {name!r}")
        if not isinstance(params, Mapping):
            raise FunctionSpecError(f"'params' must be a mapping, got {type(params).__name__}")
        return cls.from_spec(name, params)

    def to_spec(self) -> dict[str, object]:
        """``{"name": str, "params": {str: float}}``, JSON-ready and complete."""
        return {"name": self.name, "params": dict(self.params)}

    @property
    def gp_params(self) -> RBFParams:
        """The GP prior of a ``gp-1d`` family; raises for any other family."""
        if self.name != "gp-1d":
            raise FunctionSpecError(f"{self.name} is not a Gaussian-process family")
        p = self.params
        return RBFParams(p["length_scale"], p["signal_variance"], p["noise_std"])

    def sample_tasks(
        self, rng: np.random.Generator, batch: int, k_context: int, n_target: int
    ) -> FunctionTasks:
        """Draw ``batch`` tasks, each observed at ``k_context`` context and ``n_target`` target points.

        Returns :class:`FunctionTasks` with ``x_ctx, y_ctx`` of shape ``(batch, k_context, 1)``
        and ``x_tgt, y_tgt`` of shape ``(batch, n_target, 1)``, float32. The output depends
        only on the family, the three sizes and the state of ``rng``.
        """
        if not isinstance(rng, np.random.Generator):
            raise FunctionSpecError(f"rng must be a numpy Generator, got {type(rng).__name__}")
        batch = _check_positive_int("batch", batch)
        k_context = _check_positive_int("k_context", k_context)
        n_target = _check_positive_int("n_target", n_target)
        p = self.params
        n = k_context + n_target
        # Round inputs to float32 first so y is the function at exactly the returned inputs.
        x = rng.uniform(p["x_min"], p["x_max"], size=(batch, n, 1)).astype(np.float32).astype(np.float64)
        if self.name == "sinusoid":
            amplitude = rng.uniform(p["amplitude_min"], p["amplitude_max"], size=(batch, 1, 1))
            phase = rng.uniform(p["phase_min"], p["phase_max"], size=(batch, 1, 1))
            y = amplitude * np.sin(x - phase)
        else:
            y = sample_gp(rng, x, self.gp_params)
        x32 = x.astype(np.float32)
        y32 = y.astype(np.float32)
        return FunctionTasks(x32[:, :k_context], y32[:, :k_context], x32[:, k_context:], y32[:, k_context:])


def _split_index(split: str) -> int:
    if split not in SPLITS:
        raise FunctionSpecError(f"unknown task split {split!r}; known: {', '.join(SPLITS)}")
    return SPLITS.index(split)


def _check_seed(seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise FunctionSpecError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def split_rng(seed: int, split: str) -> np.random.Generator:
    """The PCG64 generator of task stream ``split`` (``train``, ``val`` or ``test``) of ``seed``.

    Returns a fresh generator; streams of different splits of one seed never coincide.
    """
    seq = np.random.SeedSequence(_check_seed(seed), spawn_key=(_split_index(split),))
    return np.random.Generator(np.random.PCG64(seq))


def step_rng(seed: int, split: str, step: int) -> np.random.Generator:
    """The PCG64 generator for training step ``step`` (0-based) of stream ``split`` of ``seed``.

    Returns a fresh generator that depends only on its three arguments, so step ``n``
    can be redrawn after a resume. Distinct from every :func:`split_rng` stream.
    """
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
        raise FunctionSpecError(f"step must be a non-negative integer, got {step!r}")
    # The trailing 1 keeps step streams apart from split_rng's (split,) key.
    seq = np.random.SeedSequence(_check_seed(seed), spawn_key=(_split_index(split), 1, int(step)))
    return np.random.Generator(np.random.PCG64(seq))


def heldout_tasks(
    family: FunctionFamily, *, seed: int, n_tasks: int, k_context: int, n_target: int, split: str = "test"
) -> FunctionTasks:
    """``n_tasks`` tasks from stream ``split`` (default ``test``) of ``seed``: a fixed evaluation set.

    Returns :class:`FunctionTasks`; the same arguments give the same tasks, so several
    models can be compared on identical tasks.
    """
    return family.sample_tasks(split_rng(seed, split), n_tasks, k_context, n_target)
