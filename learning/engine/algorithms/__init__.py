"""Algorithm registry and the single entry point :func:`train`.

The Django side calls::

    result = train(config, data, on_progress=..., should_stop=..., checkpoint=store)

``config["algorithm"]`` picks the algorithm; ``config["domain"]`` (``"image"`` by
default) picks between algorithms of the same name for different kinds of data (MAML
trains a Conv4 on images and an MLP on functions). :func:`validate_config` fills the
defaults and raises :class:`ConfigError` naming the bad field; :func:`train` calls it
first, so a train function always receives a complete, valid config.

Registering an algorithm (e.g. from ``learning/engine/algorithms/neural_process.py``)::

    from learning.engine.algorithms import register_algorithm

    register_algorithm(
        "cnp",                       # the config["algorithm"] value
        train_cnp,                   # (config, data, *, on_progress, should_stop, checkpoint) -> TrainResult
        validate=validate_cnp_config,  # (config dict) -> complete config dict; raise ConfigError
        domain="function",           # config["domain"]; default "image"
        data_type=FunctionDomain,    # isinstance check that also lets train() infer the domain
    )

at the module's import time. Modules outside this package's built-ins are imported on
demand from :data:`PLUGIN_MODULES` (add yours there), so a broken or missing plugin
never breaks the image algorithms. Train functions should build on
:func:`learning.engine.loop.run_training` (progress, stop, checkpoint, resume for free)
and, for MAML on any ``nn.Module``, on :mod:`learning.engine.functional`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from torch import Tensor, nn

from learning.engine.checkpoints import CheckpointStore
from learning.engine.config import ConfigError
from learning.engine.data import ImageArrays
from learning.engine.loop import ProgressFn, StopFn, TrainResult

TrainFn = Callable[..., TrainResult]
"""``fn(config, data, *, on_progress=None, should_stop=None, checkpoint=None) -> TrainResult``."""

ValidateFn = Callable[[dict[str, Any]], dict[str, Any]]


class ClassifyFn(Protocol):
    """``fn(model, x_support (B,S,C,H,W), y_support (B,S), x_query (B,Q,C,H,W), adapt) -> scores (B,Q,N)``.

    The predicted label of a query is the argmax over the last dim; ``adapt`` holds the
    evaluation-time settings (e.g. ``inner_lr``, ``inner_steps``) of MAML-family methods.
    ``should_stop`` is polled between inner steps by methods that adapt, which then raise
    :class:`learning.engine.functional.AdaptationStopped`; one-pass methods ignore it.
    """

    def __call__(
        self,
        model: nn.Module,
        xs: Tensor,
        ys: Tensor,
        xq: Tensor,
        adapt: Mapping[str, Any],
        /,
        *,
        should_stop: StopFn | None = None,
    ) -> Tensor: ...


@dataclass(frozen=True)
class AlgorithmEntry:
    """One registered algorithm: how to validate its config, train it and (images) classify with it."""

    name: str
    domain: str
    train: TrainFn
    validate: ValidateFn | None
    classify: ClassifyFn | None
    data_type: type | None


REGISTRY: dict[tuple[str, str], AlgorithmEntry] = {}
"""``(algorithm, domain)`` -> entry; the full registry."""

ALGORITHMS: dict[str, TrainFn] = {}
"""``algorithm`` -> train function (the image-domain one when a name exists in several domains)."""

BUILTIN_MODULES: tuple[str, ...] = (
    "learning.engine.algorithms.maml",
    "learning.engine.algorithms.reptile",
    "learning.engine.algorithms.protonet",
    "learning.engine.algorithms.siamese",
)
PLUGIN_MODULES: list[str] = [
    "learning.engine.algorithms.neural_process",
    "learning.engine.algorithms.function_maml",
    "learning.engine.transfer",
]
"""Modules imported on demand (by :func:`load_plugins`) that register more algorithms or model archs."""

_plugins_loaded = False


def register_algorithm(
    name: str,
    train_fn: TrainFn,
    *,
    validate: ValidateFn | None = None,
    classify: ClassifyFn | None = None,
    domain: str = "image",
    data_type: type | None = None,
) -> None:
    """Add (or replace) ``name`` for ``domain``; see the module docstring. Returns None."""
    if data_type is None and domain == "image":
        data_type = ImageArrays
    entry = AlgorithmEntry(name, domain, train_fn, validate, classify, data_type)
    REGISTRY[(name, domain)] = entry
    if domain == "image" or name not in ALGORITHMS:
        ALGORITHMS[name] = train_fn


def load_plugins() -> None:
    """Import every module in :data:`PLUGIN_MODULES` once; a module that does not exist is skipped.

    Any other import error propagates: a plugin that exists but fails must be seen.
    """
    global _plugins_loaded
    if _plugins_loaded:
        return
    for module in PLUGIN_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
    # Only now: a plugin that failed to import raises again on the next lookup instead of
    # silently leaving its algorithms unknown.
    _plugins_loaded = True


def available_algorithms() -> dict[str, list[str]]:
    """``{domain: sorted algorithm names}`` of everything registered (plugins loaded)."""
    load_plugins()
    out: dict[str, list[str]] = {}
    for name, domain in REGISTRY:
        out.setdefault(domain, []).append(name)
    return {d: sorted(v) for d, v in sorted(out.items())}


def get_entry(name: str, domain: str | None = None, data: object = None) -> AlgorithmEntry:
    """The registry entry for ``name``; ``domain`` None means: infer from ``data`` or the only one.

    Raises :class:`ConfigError` (field ``algorithm`` or ``domain``) when nothing matches.
    """
    candidates = [e for (n, _), e in REGISTRY.items() if n == name]
    # Plugins are imported only when the built-ins cannot answer, so a broken plugin never
    # breaks the image algorithms; but a name the built-ins share (maml) may have its
    # asked-for domain, or the variant for this data, in a plugin.
    missing_domain = domain is not None and all(e.domain != domain for e in candidates)
    missing_data_type = data is not None and not any(
        e.data_type is not None and isinstance(data, e.data_type) for e in candidates
    )
    if not candidates or missing_domain or missing_data_type:
        load_plugins()
        candidates = [e for (n, _), e in REGISTRY.items() if n == name]
    if not candidates:
        known = sorted({n for n, _ in REGISTRY})
        raise ConfigError("algorithm", f"unknown algorithm {name!r}; known: {known}")
    if domain is not None:
        for e in candidates:
            if e.domain == domain:
                return e
        raise ConfigError(
            "domain",
            f"algorithm {name!r} has no {domain!r} variant; domains: {sorted(e.domain for e in candidates)}",
        )
    if data is not None:
        matching = [e for e in candidates if e.data_type is not None and isinstance(data, e.data_type)]
        if len(matching) == 1:
            return matching[0]
    if len(candidates) == 1:
        return candidates[0]
    for e in candidates:
        if e.domain == "image":
            return e
    raise ConfigError("domain", f"algorithm {name!r} exists for several domains; set 'domain'")


def validate_config(config: Mapping[str, Any], data: object = None) -> dict[str, Any]:
    """A complete copy of ``config`` with defaults filled in, including ``domain``.

    ``data`` (optional) lets the domain be inferred when the config does not name it.
    Raises :class:`ConfigError` whose ``field`` names the offending setting.
    """
    if not isinstance(config, Mapping):
        raise ConfigError("config", f"must be an object, got {type(config).__name__}")
    name = config.get("algorithm")
    if not isinstance(name, str):
        raise ConfigError("algorithm", f"is required and must be a string, got {name!r}")
    domain = config.get("domain")
    if domain is not None and not isinstance(domain, str):
        raise ConfigError("domain", f"must be a string, got {domain!r}")
    entry = get_entry(name, domain, data)
    out = dict(config)
    out["domain"] = entry.domain
    if entry.validate is not None:
        out = entry.validate(out)
        out["domain"] = entry.domain
    return out


def train(
    config: Mapping[str, Any],
    data: object,
    *,
    on_progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
    checkpoint: CheckpointStore | None = None,
) -> TrainResult:
    """Validate ``config`` and run the algorithm it names on ``data``; returns its :class:`TrainResult`.

    ``should_stop`` is polled before every step and between task chunks (many times a
    second for fast steps), so it must be cheap: e.g. read a flag that a database query
    refreshes at most every half second. ``on_progress`` is called at most every 0.5 s.

    Raises :class:`ConfigError` for a bad config or data that does not fit the algorithm.
    """
    full = validate_config(config, data)
    entry = get_entry(full["algorithm"], full["domain"])
    if entry.data_type is not None and not isinstance(data, entry.data_type):
        raise ConfigError(
            "domain",
            f"algorithm {entry.name!r} ({entry.domain}) needs {entry.data_type.__name__} data, "
            f"got {type(data).__name__}",
        )
    return entry.train(full, data, on_progress=on_progress, should_stop=should_stop, checkpoint=checkpoint)


__all__ = [
    "ALGORITHMS",
    "REGISTRY",
    "AlgorithmEntry",
    "ClassifyFn",
    "ConfigError",
    "TrainFn",
    "TrainResult",
    "available_algorithms",
    "get_entry",
    "load_plugins",
    "register_algorithm",
    "train",
    "validate_config",
]

for _module in BUILTIN_MODULES:
    importlib.import_module(_module)
