"""Serializers that refuse fields they do not declare, instead of silently dropping them.

A typo in a request (``"step": 100``) would otherwise run with the default, so the
request is refused with a 400 that names each unknown field.
"""

from __future__ import annotations

from typing import Any

from rest_framework import serializers


class StrictFieldsMixin:
    """Mix into a ``Serializer``: unknown keys in the input are a validation error on each key."""

    def to_internal_value(self, data: Any) -> Any:
        if hasattr(data, "keys"):
            known = set(self.fields)  # type: ignore[attr-defined]
            unknown = sorted(str(k) for k in data if k not in known)
            if unknown:
                raise serializers.ValidationError(
                    {key: [f"unknown field; known: {', '.join(sorted(known))}"] for key in unknown}
                )
        return super().to_internal_value(data)  # type: ignore[misc]
