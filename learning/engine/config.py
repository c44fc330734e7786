"""The error every config check raises.

Training configs are plain JSON-able dicts (they come from a web form or the REST API
and are stored on the Job row). Each algorithm declares its settings as a typed dataclass
(:mod:`learning.engine.params`); validation fills defaults and raises
:class:`ConfigError`, whose message names the field (dotted path, e.g. ``task.n_way``)
and the bad value, so the Django side can attach the error to the right form field.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A config field is missing, of the wrong type or out of range.

    ``field`` is the dotted path of the offending field (``"task.n_way"``); the message
    starts with it and quotes the bad value.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
