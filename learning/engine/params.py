"""Typed configs: one frozen dataclass per algorithm, each setting declared once.

A setting is a dataclass field declared with :func:`param` (its default, bounds, choices
and a one-line help), in the manner of nanoGPT's ``GPTConfig``::

    @dataclass(frozen=True)
    class ProtoNetConfig(ImageConfig):
        algorithm: str = "protonet"
        steps: int = STEPS.field(2000)       # a shared declaration with this algorithm's default

Everything else is derived from the declaration: :func:`parse` (validation with a
:class:`ConfigError` that names the field), :func:`as_dict` (the JSON stored with jobs
and models), :func:`json_schema` (the API's OpenAPI schema) and :func:`form_params` (the
fields of the launch form). Supported types: ``int``, ``float``, ``bool``, ``str``,
``tuple[int, ...]`` and ``tuple[str, ...]`` (JSON lists, of distinct entries unless
declared otherwise), any of those ``| None``, ``dict | None`` (an opaque JSON object) and
nested config dataclasses.

Integers must be JSON integers: ``5.0`` and ``1e3`` are refused, naming the field. A
config class may define ``check(self)`` for rules between fields; it raises
:class:`ConfigError`.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import MISSING, dataclass
from typing import Any, TypeVar, cast

from learning.engine.config import ConfigError

C = TypeVar("C")


@dataclass(frozen=True)
class Param:
    """How one setting is checked and shown; kept in the field's metadata under ``"param"``."""

    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    """``minimum`` itself is refused (a learning rate must be > 0)."""
    choices: tuple[str, ...] | None = None
    pattern: str | None = None
    """A regular expression a string must match in full, in addition to ``choices``."""
    help: str = ""
    label: str = ""
    """What a form calls the setting; empty: its name, spelled out."""
    form: bool = False
    """Offered on the launch form (the API accepts every setting)."""
    default_from: str | None = None
    """When absent, take the (parsed) value of this sibling setting instead of the default."""
    distinct: bool = True
    """Lists only: refuse repeated entries (class indices); ``minimum``/``maximum`` bound each entry."""
    min_items: int = 0
    max_items: int | None = None
    """Lists only: the most entries a list may have (None: no limit)."""

    def field(self, default: Any, **changes: Any) -> Any:
        """A dataclass field with this declaration and ``default`` (lists become tuples)."""
        spec = dataclasses.replace(self, **changes) if changes else self
        if isinstance(default, list):
            default = tuple(default)
        return dataclasses.field(default=default, metadata={"param": spec})


def param(default: Any, **declaration: Any) -> Any:
    """A dataclass field for a setting; ``declaration`` holds :class:`Param`'s fields."""
    return Param(**declaration).field(default)


def required(**declaration: Any) -> Any:
    """A dataclass field for a setting that has no default (declare it before defaulted ones)."""
    return dataclasses.field(metadata={"param": Param(**declaration)})


def section(factory: Any, help: str = "") -> Any:
    """A nested config field (``model``, ``task``) whose default is ``factory()``."""
    return dataclasses.field(default_factory=factory, metadata={"param": Param(help=help)})


def _path(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _spec(f: dataclasses.Field) -> Param:
    return f.metadata.get("param") or Param()


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    """``(inner type, True)`` for ``X | None``; ``(tp, False)`` otherwise."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0], True
    return tp, False


def _default(f: dataclasses.Field) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return MISSING


def is_config(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def parse(cls: type[C], data: Any, *, prefix: str = "", base: C | None = None) -> C:
    """A ``cls`` from the JSON-like ``data``: defaults filled, every value checked.

    ``base`` (an instance of ``cls``) supplies the values of absent keys instead of the
    class defaults. Unknown keys are refused rather than ignored, because a typo
    (``inner_step``) would otherwise silently train with the default. Raises
    :class:`ConfigError` naming the dotted path of the first bad setting.
    """
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(prefix or "config", f"must be an object, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cast(Any, cls))}
    for key in data:
        if key not in fields:
            raise ConfigError(_path(prefix, str(key)), f"unknown setting {key!r}; known: {sorted(fields)}")
    hints = _hints(cls)
    values: dict[str, Any] = {}
    for name, f in fields.items():
        tp, optional = _unwrap_optional(hints[name])
        spec, path = _spec(f), _path(prefix, name)
        fallback = getattr(base, name) if base is not None else _default(f)
        if is_config(tp):
            raw = data.get(name, fallback)
            if raw is None and optional:
                values[name] = None
            else:
                values[name] = parse(tp, data.get(name), prefix=path, base=fallback)
            continue
        if name in data:
            raw = data[name]
        elif spec.default_from is not None and base is None:
            raw = values[spec.default_from]
        else:
            raw = fallback
        if raw is MISSING:
            raise ConfigError(path, "is required")
        values[name] = None if raw is None and optional else _value(tp, raw, spec, path)
    out = cls(**values)
    check = getattr(out, "check", None)
    if check is not None:
        check()
    return out


def _value(tp: Any, raw: Any, spec: Param, path: str) -> Any:
    if raw is None:
        raise ConfigError(path, "is required")
    if tp is bool:
        if not isinstance(raw, bool):
            raise ConfigError(path, f"must be true or false, got {raw!r}")
        return raw
    if tp is int:
        return _bounded(_integer(raw, path), spec, path)
    if tp is float:
        if isinstance(raw, bool) or not isinstance(raw, (int, float)):
            raise ConfigError(path, f"must be a number, got {raw!r}")
        value = float(raw)
        if not math.isfinite(value):
            raise ConfigError(path, f"must be finite, got {raw!r}")
        return _bounded(value, spec, path)
    if tp is str:
        if not isinstance(raw, str):
            raise ConfigError(path, f"must be a string, got {raw!r}")
        if (
            spec.choices is not None
            and raw not in spec.choices
            and not (spec.pattern and re.fullmatch(spec.pattern, raw))
        ):
            extra = f" or match {spec.pattern!r}" if spec.pattern else ""
            raise ConfigError(path, f"must be one of {list(spec.choices)}{extra}, got {raw!r}")
        if spec.choices is None and spec.pattern and not re.fullmatch(spec.pattern, raw):
            raise ConfigError(path, f"must match {spec.pattern!r}, got {raw!r}")
        return raw
    if typing.get_origin(tp) is tuple:
        return _list(typing.get_args(tp)[0], raw, spec, path)
    if tp is dict or typing.get_origin(tp) is dict:
        if not isinstance(raw, Mapping):
            raise ConfigError(path, f"must be an object, got {raw!r}")
        return dict(raw)
    raise TypeError(f"{path}: unsupported config type {tp!r}")


def _integer(raw: Any, path: str) -> int:
    # bool is an int subclass; a form that sends true for a step count is a bug, not 1 step.
    # A float is refused even when whole: 1e7 steps is more likely a slip than a plan.
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise ConfigError(path, f"must be an integer, got {raw!r}")
    return raw


def _bounded(value: float, spec: Param, path: str) -> Any:
    low, high = spec.minimum, spec.maximum
    too_low = low is not None and (value <= low if spec.exclusive_minimum else value < low)
    too_high = high is not None and value > high
    if not (too_low or too_high):
        return value
    if low is not None and high is not None and not spec.exclusive_minimum:
        raise ConfigError(path, f"must be between {_num(low)} and {_num(high)}, got {value!r}")
    bounds = []
    if low is not None:
        bounds.append(f"{'>' if spec.exclusive_minimum else '>='} {_num(low)}")
    if high is not None:
        bounds.append(f"<= {_num(high)}")
    raise ConfigError(path, f"must be {' and '.join(bounds)}, got {value!r}")


def _num(bound: float) -> str:
    """``0`` rather than ``0.0`` for a whole bound, so messages read as the user wrote them."""
    return str(int(bound)) if float(bound).is_integer() else str(bound)


def _list(item: Any, raw: Any, spec: Param, path: str) -> tuple[Any, ...]:
    kind = "integers" if item is int else "strings"
    if isinstance(raw, (str, bytes)) or not isinstance(raw, (list, tuple)):
        raise ConfigError(path, f"must be a list of {kind}, got {raw!r}")
    if len(raw) < spec.min_items:
        entries = "entry" if spec.min_items == 1 else "entries"
        raise ConfigError(path, f"needs at least {spec.min_items} {entries}, got {list(raw)!r}")
    if spec.max_items is not None and len(raw) > spec.max_items:
        raise ConfigError(path, f"has {len(raw)} entries; at most {spec.max_items} are allowed")
    out = []
    for entry in raw:
        if item is int:
            if isinstance(entry, bool) or not isinstance(entry, int):
                raise ConfigError(path, f"must contain only integers, got {entry!r}")
            low, high = spec.minimum, spec.maximum
            if (low is not None and entry < low) or (high is not None and entry > high):
                bounds = " and ".join(
                    b
                    for b in (low is not None and f">= {_num(low)}", high is not None and f"<= {_num(high)}")
                    if b
                )
                raise ConfigError(path, f"entries must be {bounds}, got {entry!r}")
        elif not isinstance(entry, str):
            raise ConfigError(path, f"must contain only strings, got {entry!r}")
        out.append(entry)
    if spec.distinct and len(set(out)) != len(out):
        raise ConfigError(path, f"has repeated entries {sorted({e for e in out if out.count(e) > 1})}")
    return tuple(out)


def as_dict(config: Any) -> dict[str, Any]:
    """The JSON-able dict of a parsed config (tuples become lists, sections dicts)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            value = as_dict(value)
        elif isinstance(value, tuple):
            value = list(value)
        elif isinstance(value, dict):
            value = dict(value)
        out[f.name] = value
    return out


_JSON_TYPES = {int: "integer", float: "number", bool: "boolean", str: "string"}


def json_schema(cls: type, *, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    """The schema (OpenAPI 3.0 flavour: ``nullable``, boolean ``exclusiveMinimum``) of ``cls``.

    Types, bounds, choices, defaults and help; ``exclude`` drops top-level settings.
    """
    hints = _hints(cls)
    properties: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name in exclude:
            continue
        tp, optional = _unwrap_optional(hints[f.name])
        spec = _spec(f)
        if is_config(tp):
            prop = json_schema(tp)
        elif typing.get_origin(tp) is tuple:
            prop = {"type": "array", "items": {"type": _JSON_TYPES[typing.get_args(tp)[0]]}}
            prop["uniqueItems"] = spec.distinct
            if spec.min_items:
                prop["minItems"] = spec.min_items
            if spec.max_items is not None:
                prop["maxItems"] = spec.max_items
        elif tp is dict or typing.get_origin(tp) is dict:
            prop = {"type": "object"}
        else:
            prop = {"type": _JSON_TYPES[tp]}
            if spec.minimum is not None:
                prop["minimum"] = spec.minimum
                if spec.exclusive_minimum:
                    prop["exclusiveMinimum"] = True
            if spec.maximum is not None:
                prop["maximum"] = spec.maximum
            if spec.choices is not None and not spec.pattern:
                prop["enum"] = list(spec.choices)
            elif spec.pattern:
                prop["pattern"] = spec.pattern
        default = _default(f)
        if default is not MISSING and not is_config(tp):
            prop["default"] = list(default) if isinstance(default, tuple) else default
        if optional:
            prop["nullable"] = True
        if spec.help:
            prop["description"] = spec.help
        properties[f.name] = prop
    doc = (cls.__doc__ or "").strip().split("\n\n")[0]
    return {"type": "object", "description": doc, "properties": properties, "additionalProperties": False}


@dataclass(frozen=True)
class FormParam:
    """One launch-form field derived from a config declaration."""

    name: str
    type: type
    default: Any
    spec: Param


def check_form_value(param: FormParam, raw: Any) -> Any:
    """``raw`` parsed and bounds-checked as ``param`` alone; raises :class:`ConfigError` naming it.

    Lets a form report every out-of-range setting at once; rules that relate several
    settings are checked when the whole config is parsed.
    """
    return _value(param.type, raw, param.spec, param.name)


def form_params(cls: type) -> list[FormParam]:
    """The settings of ``cls`` declared with ``form=True``, in declaration order."""
    hints = _hints(cls)
    return [
        FormParam(f.name, _unwrap_optional(hints[f.name])[0], _default(f), _spec(f))
        for f in dataclasses.fields(cls)
        if _spec(f).form
    ]
