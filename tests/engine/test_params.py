"""Typed config declarations: one gives validation, the stored dict, the schema and the form fields."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from learning.engine.config import ConfigError
from learning.engine.params import Param, as_dict, form_params, json_schema, param, parse, required, section

RATE = Param(minimum=0.0, exclusive_minimum=True, maximum=10.0, help="a rate", form=True)


@dataclass(frozen=True)
class Inner:
    """A nested section."""

    width: int = param(8, minimum=1, maximum=64)
    names: tuple[str, ...] | None = param(None)


@dataclass(frozen=True)
class Source:
    """A section without defaults."""

    kind: str = required(choices=("a", "b"))


@dataclass(frozen=True)
class Example:
    """An example config."""

    steps: int = param(10, minimum=1, maximum=1000, help="how many", form=True)
    rate: float = RATE.field(0.5)
    eval_rate: float = RATE.field(0.5, default_from="rate", form=False)
    device: str = param("auto", choices=("auto", "cpu"), pattern=r"cuda:\d+")
    widths: tuple[int, ...] = param((4, 4), minimum=1, distinct=False, min_items=1)
    inner: Inner = section(lambda: Inner(width=16), "nested")
    source: Source | None = param(None)

    def check(self) -> None:
        if self.steps > 100 and self.rate > 1:
            raise ConfigError("rate", "must be <= 1 for long runs")


def test_defaults_fill_in_and_the_stored_dict_round_trips():
    parsed = parse(Example, {"rate": 2})
    stored = as_dict(parsed)
    assert stored == {
        "steps": 10,
        "rate": 2.0,
        "eval_rate": 2.0,  # taken from rate, because it was not given
        "device": "auto",
        "widths": [4, 4],
        "inner": {"width": 16, "names": None},  # the section's default instance, not the class default
        "source": None,
    }
    assert parse(Example, stored) == parsed


def test_an_integer_setting_refuses_floats_even_whole_ones():
    for value in (5.0, 1e7, 2.5, True, "5"):
        with pytest.raises(ConfigError, match=r"steps: must be an integer, got "):
            parse(Example, {"steps": value})
    with pytest.raises(ConfigError, match=r"steps: must be between 1 and 1000, got 1001"):
        parse(Example, {"steps": 1001})


@pytest.mark.parametrize(
    ("given", "field", "words"),
    [
        ({"rate": 0}, "rate", "must be > 0 and <= 10, got 0.0"),
        ({"rate": float("inf")}, "rate", "must be finite"),
        ({"device": "tpu"}, "device", "must be one of ['auto', 'cpu'] or match"),
        ({"widths": []}, "widths", "needs at least 1 entry"),
        ({"widths": [3, 0]}, "widths", "entries must be >= 1, got 0"),
        ({"inner": {"names": ["x", "x"]}}, "inner.names", "repeated entries ['x']"),
        ({"inner": {"depth": 2}}, "inner.depth", "unknown setting 'depth'"),
        ({"source": {}}, "source.kind", "is required"),
        ({"source": {"kind": "c"}}, "source.kind", "must be one of ['a', 'b']"),
        ({"steps": 200, "rate": 2}, "rate", "must be <= 1 for long runs"),
        ({"inner": 3}, "inner", "must be an object"),
    ],
)
def test_each_bad_value_names_its_dotted_field(given, field, words):
    with pytest.raises(ConfigError) as err:
        parse(Example, given)
    assert err.value.field == field and words in str(err.value)


def test_a_device_pattern_and_an_explicit_section_are_accepted():
    parsed = parse(Example, {"device": "cuda:1", "source": {"kind": "b"}, "widths": [2, 2, 2]})
    assert (parsed.device, parsed.source, parsed.widths) == ("cuda:1", Source("b"), (2, 2, 2))


def test_the_schema_is_openapi_3_0_with_bounds_defaults_and_help():
    schema = json_schema(Example, exclude=("source",))
    props = schema["properties"]
    assert schema["additionalProperties"] is False and "source" not in props
    assert props["steps"] == {
        "type": "integer",
        "minimum": 1,
        "maximum": 1000,
        "default": 10,
        "description": "how many",
    }
    assert props["rate"]["exclusiveMinimum"] is True and props["rate"]["minimum"] == 0.0
    assert props["widths"]["uniqueItems"] is False and props["widths"]["default"] == [4, 4]
    assert props["inner"]["properties"]["names"]["nullable"] is True


def test_form_params_are_the_settings_declared_for_the_form():
    assert [(p.name, p.default) for p in form_params(Example)] == [("steps", 10), ("rate", 0.5)]
