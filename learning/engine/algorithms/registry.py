"""The algorithm registry: one entry per ``(name, domain)``, filled when the algorithm modules are imported.

Algorithm modules import :func:`register_algorithm` from here (not from the package, whose
``__init__`` imports them) and call it at import time; :mod:`learning.engine.algorithms`
imports every algorithm module, so once the package is imported the registry is complete.
See the package docstring for how to add an algorithm.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from torch import Tensor, nn

from learning.engine.config import ConfigError
from learning.engine.data import ImageArrays
from learning.engine.loop import TrainResult
from learning.engine.params import is_config
from learning.engine.progress import StopFn


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


TrainFn = Callable[..., TrainResult]
"""``fn(config, data, *, on_progress=None, should_stop=None, checkpoint=None) -> TrainResult``."""

KINDS = ("meta_train", "transfer", "baseline")
"""``meta_train`` learns from a source domain; ``transfer`` adapts a source model to a target;
``baseline`` is what a run is compared with (never launched on its own)."""


@dataclass(frozen=True)
class AlgorithmEntry:
    """One registered algorithm: its config declaration, how to train it and (images) classify with it.

    ``config`` is a frozen dataclass of :mod:`learning.engine.params` settings; the engine's
    validation, the API schema and the launch form all derive from it. ``label`` is the
    name people read; ``offered`` says whether the site launches it as a job. ``model``
    holds the items every ``model_config`` it saves has (``{"arch": "conv4", "head":
    "none"}``), and ``adapts`` says that its models adapt with gradient steps when used, so
    their ``model_config`` records ``adapt``: a weights file claiming the algorithm must agree.
    """

    name: str
    domain: str
    train: TrainFn
    config: type
    classify: ClassifyFn | None
    data_type: type | None
    label: str
    kind: str
    offered: bool
    model: Mapping[str, Any]
    adapts: bool


REGISTRY: dict[tuple[str, str], AlgorithmEntry] = {}
"""``(algorithm, domain)`` -> entry; the only registry."""


def register_algorithm(
    name: str,
    train_fn: TrainFn,
    *,
    config: type,
    label: str,
    kind: str = "meta_train",
    classify: ClassifyFn | None = None,
    domain: str = "image",
    data_type: type | None = None,
    offered: bool = True,
    model: Mapping[str, Any] | None = None,
    adapts: bool = False,
) -> None:
    """Add (or replace) ``name`` for ``domain``; see the package docstring. Returns None.

    ``data_type`` defaults to :class:`ImageArrays` in the ``image`` domain.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if not is_config(config):
        raise TypeError(f"config of {name!r} must be a config dataclass, got {config!r}")
    if data_type is None and domain == "image":
        data_type = ImageArrays
    entry = AlgorithmEntry(
        name, domain, train_fn, config, classify, data_type, label, kind, offered, dict(model or {}), adapts
    )
    REGISTRY[(name, domain)] = entry


def unregister_algorithm(name: str, domain: str = "image") -> None:
    """Remove ``name`` for ``domain`` (tests that register a toy algorithm clean up with it)."""
    REGISTRY.pop((name, domain), None)


def offered(kind: str, domain: str | None = None) -> list[AlgorithmEntry]:
    """The entries of ``kind`` the site launches (in ``domain``, if given), in registration order."""
    return [
        e
        for e in REGISTRY.values()
        if e.kind == kind and e.offered and (domain is None or e.domain == domain)
    ]


def available_algorithms() -> dict[str, list[str]]:
    """``{domain: sorted algorithm names}`` of everything registered."""
    out: dict[str, list[str]] = {}
    for name, domain in REGISTRY:
        out.setdefault(domain, []).append(name)
    return {d: sorted(v) for d, v in sorted(out.items())}


def get_entry(name: str, domain: str | None = None, data: object = None) -> AlgorithmEntry:
    """The registry entry for ``name``; ``domain`` None means: infer from ``data`` or the only one.

    Raises :class:`ConfigError` (field ``algorithm`` or ``domain``) when nothing matches.
    """
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
        # Data of one type for several domains (a transfer's TransferData) says which by its ``domain``.
        data_domain = getattr(data, "domain", None)
        if len(matching) > 1 and isinstance(data_domain, str):
            matching = [e for e in matching if e.domain == data_domain]
        if len(matching) == 1:
            return matching[0]
    if len(candidates) == 1:
        return candidates[0]
    for e in candidates:
        if e.domain == "image":
            return e
    raise ConfigError("domain", f"algorithm {name!r} exists for several domains; set 'domain'")


__all__ = [
    "REGISTRY",
    "AlgorithmEntry",
    "ClassifyFn",
    "TrainFn",
    "available_algorithms",
    "get_entry",
    "offered",
    "register_algorithm",
    "unregister_algorithm",
]
