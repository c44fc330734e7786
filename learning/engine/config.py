"""Config validation shared by every engine algorithm.

Training configs are plain JSON-able dicts (they come from a web form or the REST API
and are stored on the Job row). Validation fills defaults and raises
:class:`ConfigError`, whose message names the field (dotted path, e.g. ``task.n_way``)
and the bad value, so the Django side can attach the error to the right form field.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any


class ConfigError(ValueError):
    """A config field is missing, of the wrong type or out of range.

    ``field`` is the dotted path of the offending field (``"task.n_way"``); the message
    starts with it and quotes the bad value.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def _path(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def reject_unknown(section: Mapping[str, Any], allowed: Iterable[str], prefix: str = "") -> None:
    """Raise :class:`ConfigError` for the first key of ``section`` not in ``allowed``.

    Unknown keys are rejected rather than ignored because a typo (``inner_step``) would
    otherwise silently train with the default.
    """
    known = set(allowed)
    for key in section:
        if key not in known:
            raise ConfigError(_path(prefix, str(key)), f"unknown setting {key!r}; known: {sorted(known)}")


def get_section(config: Mapping[str, Any], key: str, prefix: str = "") -> dict[str, Any]:
    """The sub-dict ``config[key]`` (a copy; ``{}`` when absent); raises if it is not a mapping."""
    value = config.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(_path(prefix, key), f"must be an object, got {value!r}")
    return dict(value)


def get_int(
    config: Mapping[str, Any],
    key: str,
    default: int | None,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    prefix: str = "",
) -> int:
    """``config[key]`` as an int within ``[minimum, maximum]``; ``default`` when absent (None = required)."""
    field = _path(prefix, key)
    value = config.get(key, default)
    if value is None:
        raise ConfigError(field, "is required")
    # bool is an int subclass; a form that sends true for a step count is a bug, not 1 step.
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise ConfigError(field, f"must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ConfigError(field, f"must be >= {minimum}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ConfigError(field, f"must be <= {maximum}, got {value!r}")
    return value


def get_float(
    config: Mapping[str, Any],
    key: str,
    default: float | None,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    positive: bool = False,
    prefix: str = "",
) -> float:
    """``config[key]`` as a finite float (``positive``: > 0) within the bounds; ``default`` when absent."""
    field = _path(prefix, key)
    value = config.get(key, default)
    if value is None:
        raise ConfigError(field, "is required")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(field, f"must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ConfigError(field, f"must be finite, got {value!r}")
    if positive and value <= 0:
        raise ConfigError(field, f"must be > 0, got {value!r}")
    if minimum is not None and value < minimum:
        raise ConfigError(field, f"must be >= {minimum}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ConfigError(field, f"must be <= {maximum}, got {value!r}")
    return value


def get_bool(config: Mapping[str, Any], key: str, default: bool, *, prefix: str = "") -> bool:
    """``config[key]`` as a bool (only true/false accepted); ``default`` when absent."""
    value = config.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(_path(prefix, key), f"must be true or false, got {value!r}")
    return value


def get_choice(
    config: Mapping[str, Any], key: str, default: str | None, choices: Sequence[str], *, prefix: str = ""
) -> str:
    """``config[key]`` as one of ``choices``; ``default`` when absent (None = required)."""
    field = _path(prefix, key)
    value = config.get(key, default)
    if value is None:
        raise ConfigError(field, f"is required; one of {list(choices)}")
    if value not in choices:
        raise ConfigError(field, f"must be one of {list(choices)}, got {value!r}")
    return str(value)


def get_int_list(
    config: Mapping[str, Any], key: str, *, minimum: int | None = None, prefix: str = ""
) -> list[int] | None:
    """``config[key]`` as a list of distinct ints (None when absent or null)."""
    field = _path(prefix, key)
    value = config.get(key)
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ConfigError(field, f"must be a list of integers, got {value!r}")
    out: list[int] = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, int):
            raise ConfigError(field, f"must contain only integers, got {item!r}")
        if minimum is not None and item < minimum:
            raise ConfigError(field, f"entries must be >= {minimum}, got {item!r}")
        out.append(item)
    if len(set(out)) != len(out):
        dupes = sorted({i for i in out if out.count(i) > 1})
        raise ConfigError(field, f"has repeated entries {dupes}")
    return out


def get_str_list(config: Mapping[str, Any], key: str, *, prefix: str = "") -> list[str] | None:
    """``config[key]`` as a list of distinct strings (None when absent or null)."""
    field = _path(prefix, key)
    value = config.get(key)
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise ConfigError(field, f"must be a list of strings, got {value!r}")
    for item in value:
        if not isinstance(item, str):
            raise ConfigError(field, f"must contain only strings, got {item!r}")
    if len(set(value)) != len(value):
        raise ConfigError(field, f"has repeated entries in {list(value)!r}")
    return list(value)
