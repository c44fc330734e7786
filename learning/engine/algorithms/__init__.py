"""Algorithm registry and the single entry point :func:`train`.

The Django side calls::

    result = train(config, data, on_progress=..., should_stop=..., checkpoint=store)

``config["algorithm"]`` picks the algorithm; ``config["domain"]`` (``"image"`` by
default) picks between algorithms of the same name for different kinds of data (MAML
trains a Conv4 on images, an MLP on functions and an MLP over sentence embeddings on
text). :func:`validate_config` fills the
defaults and raises :class:`ConfigError` naming the bad field; :func:`train` calls it
first, so a train function always receives a complete, valid config.

Every algorithm module is imported here, at the package's import time, so the registry
(:data:`REGISTRY`, keyed by ``(algorithm, domain)``) is complete as soon as anything in
the package is imported. Adding an algorithm takes two steps. In its module (e.g.
``learning/engine/algorithms/neural_process.py``), at import time::

    from learning.engine.algorithms.registry import register_algorithm

    register_algorithm(
        "cnp",                        # the config["algorithm"] value
        train_neural_process,         # (config, data, *, on_progress, should_stop, checkpoint) -> TrainResult
        config=NeuralProcessConfig,   # frozen dataclass of params.param(...) settings
        label="Conditional Neural Process",   # what pages and forms call it
        domain="function",            # config["domain"]; default "image"
        data_type=FunctionFamily,     # isinstance check that also lets train() infer the domain
    )

(import from ``.registry``, never from this package, whose ``__init__`` imports the
algorithm modules); then add the module to the imports below and to :data:`MODULES`.
``kind="transfer"`` marks a transfer method, ``offered=False`` an algorithm the site does
not launch. CONTRIBUTING.md walks through a whole new algorithm.
Image algorithms also pass ``classify`` (a :class:`ClassifyFn`), which the evaluation
and the predictions use. A new network architecture goes into :mod:`learning.engine.nets`
(or a module it imports), so that :func:`learning.engine.nets.build_model` rebuilds any
saved model without this package. Train functions should build on
:func:`learning.engine.loop.run_training` (progress, stop, checkpoint, resume for free)
and, for MAML on any ``nn.Module``, on :mod:`learning.engine.functional`.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import ModuleType
from typing import Any

from learning.engine.algorithms import (
    function_maml,
    maml,
    neural_process,
    protonet,
    reptile,
    siamese,
    statistician,
    text,
    transfer,
)
from learning.engine.algorithms.registry import (
    REGISTRY,
    AlgorithmEntry,
    ClassifyFn,
    TrainFn,
    available_algorithms,
    get_entry,
    offered,
    register_algorithm,
    unregister_algorithm,
)
from learning.engine.checkpoints import CheckpointStore
from learning.engine.config import ConfigError
from learning.engine.loop import ProgressFn, StopFn, TrainResult
from learning.engine.params import as_dict, parse

MODULES: tuple[ModuleType, ...] = (
    maml,
    reptile,
    protonet,
    siamese,
    statistician,
    neural_process,
    function_maml,
    transfer,
    text,
)
"""The modules that register the algorithms (all imported with this package)."""


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
    given = {**_without_retired(config), "domain": entry.domain}
    return as_dict(parse(entry.config, given))


_RETIRED = {
    "eval_episodes": 0,
    "eval_classes": None,
    "eval_groups": None,
    "eval_within_group": False,
    "eval_n_way": 5,
    "eval_k_shot": 1,
    "eval_query": 15,
}
"""Evaluation settings that training configs held before the protocol moved to
:mod:`learning.engine.experiments`, with their "no evaluation" values."""


def _without_retired(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` without retired settings that hold their no-op values, so that a job stored
    before an upgrade still resumes; any other value stays, and is refused as unknown."""
    return {k: v for k, v in config.items() if not (k in _RETIRED and v == _RETIRED[k])}


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
    "MODULES",
    "REGISTRY",
    "AlgorithmEntry",
    "ClassifyFn",
    "ConfigError",
    "TrainFn",
    "TrainResult",
    "available_algorithms",
    "get_entry",
    "offered",
    "register_algorithm",
    "train",
    "unregister_algorithm",
    "validate_config",
]
