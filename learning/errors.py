"""The one error type that services raise for bad input.

Views, serializers, forms and commands turn it into a 400, a form error or a command
error; its message names the problem, and ``field`` names the input it belongs to.
"""

from __future__ import annotations


class InvalidInput(Exception):
    """Bad input: nothing was written. ``field`` is the input's name, or None for the whole request."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def as_dict(self) -> dict[str, list[str]]:
        """The error as DRF and Django forms expect: ``{field or "non_field_errors": [message]}``."""
        return {self.field or "non_field_errors": [self.message]}
