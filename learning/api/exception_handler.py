"""DRF's exception handler, with 404s in the API's words.

A lookup that finds nothing would answer "No MetaModel matches the given query", naming
the class behind the resource; this says "no model 7", with the view's ``resource_noun``
and the key that was asked for. (Its own module: ``learning.api.errors`` is loaded while
DRF reads its settings, before ``rest_framework.views`` can be imported.)
"""

from __future__ import annotations

from django.http import Http404, HttpResponse
from rest_framework.exceptions import NotFound
from rest_framework.views import exception_handler


def api_exception_handler(exc: Exception, context: dict) -> HttpResponse | None:
    """DRF's handler, with a lookup's 404 worded by the view's ``resource_noun`` and the key asked for."""
    view = context.get("view")
    noun = getattr(view, "resource_noun", None)
    # Only Django's own lookup message is replaced; a 404 that says why keeps its words.
    if isinstance(exc, Http404) and noun and "matches the given query" in str(exc):
        key = view.kwargs.get(view.lookup_url_kwarg or view.lookup_field, "")
        exc = NotFound(f"no {noun} {key}" if key else f"no such {noun}")
    return exception_handler(exc, context)
