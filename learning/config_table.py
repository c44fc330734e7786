"""Configs as people read them: one row per setting, defaults marked, long lists summarized.

A job's engine config or a model's hyperparameters nest sections (``task``, ``model``)
and hold class lists of a hundred indices. :func:`config_rows` flattens them to dotted
keys (``task.n_way``), summarizes a long list as a count and ranges ("70 classes:
0-59, 64-73") with the whole list kept for a reader who expands it, and marks each
value that equals the algorithm's default. An optional setting that was never set
(``None`` where the default is ``None`` too) is left out rather than shown as a dash.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from learning.engine.algorithms import validate_config
from learning.engine.config import ConfigError
from learning.templatetags.catalog import number

SUMMARIZE_OVER = 8
"""Lists longer than this are shown as a count and ranges."""


@dataclass(frozen=True)
class ConfigRow:
    key: str
    """Dotted path, e.g. ``task.n_way``."""
    value: str
    """The value as shown: a summary for long lists."""
    full: str | None
    """The whole value where ``value`` summarizes it, else None."""
    is_default: bool | None
    """Whether the value is the algorithm's default; None where no default is known."""


def engine_defaults(algorithm: str, domain: str) -> dict[str, Any]:
    """The complete default config of ``algorithm`` on ``domain`` (``image`` or ``function``); {} if none."""
    try:
        return validate_config({"algorithm": algorithm, "domain": domain})
    except ConfigError:
        return {}  # an algorithm that needs settings without defaults, or one no longer registered


def config_rows(config: Mapping[str, Any], defaults: Mapping[str, Any] | None = None) -> list[ConfigRow]:
    """The rows of ``config`` in its own order, each compared with ``defaults`` (see the module)."""
    flat_defaults = _flatten(defaults or {})
    rows = []
    for key, value in _flatten(config).items():
        default_known = key in flat_defaults
        if value is None and (not default_known or flat_defaults[key] is None):
            continue
        shown, full = _shown(key, value)
        rows.append(ConfigRow(key, shown, full, flat_defaults[key] == value if default_known else None))
    return rows


def _flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _shown(key: str, value: Any) -> tuple[str, str | None]:
    if isinstance(value, Sequence) and not isinstance(value, str) and len(value) > SUMMARIZE_OVER:
        full = ", ".join(str(v) for v in value)
        noun = "classes" if key.endswith("classes") else "groups" if key.endswith("groups") else "items"
        if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return f"{len(value)} {noun}: {_ranges(value)}", full
        return f"{len(value)} {noun}: {', '.join(str(v) for v in value[:3])}, …", full
    if isinstance(value, str):
        return value, None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return number(value), None  # as every number on the pages: 2,000 and 0.001
    return json.dumps(value), None


def _ranges(values: Sequence[int]) -> str:
    """``0, 1, 2, 5, 7, 8`` as ``0-2, 5, 7-8`` (sorted, duplicates once)."""
    ordered = sorted(set(values))
    parts: list[str] = []
    start = prev = ordered[0]
    for v in [*ordered[1:], None]:
        if v is not None and v == prev + 1:
            prev = v
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if v is not None:
            start = prev = v
    return ", ".join(parts)
