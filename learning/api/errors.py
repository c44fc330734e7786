"""API errors a client can read: JSON for every failure, and a 400 for JSON nested too deeply.

DRF turns the errors it knows into JSON; an unexpected exception would reach Django's HTML
500 page. Under ``/api/`` the middleware answers it with a plain JSON 500 instead (the
traceback goes to the log, never to the client). DRF's own errors pass through
:mod:`learning.api.exception_handler`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.core.exceptions import PermissionDenied, RequestDataTooBig, SuspiciousOperation
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

logger = logging.getLogger(__name__)

API_PREFIX = "/api/"


class DepthSafeJSONParser(JSONParser):
    """DRF's JSON parser, with a 400 instead of a crash for JSON nested past Python's recursion limit."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError as exc:
            raise ParseError("JSON parse error - the document is nested too deeply") from exc


class JsonServerErrorMiddleware:
    """Answers an unhandled exception in an API view with ``{"detail": ...}`` and status 500."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not request.path.startswith(API_PREFIX):
            return None
        if isinstance(exception, RequestDataTooBig):
            return JsonResponse({"detail": f"the request body is too large: {exception}"}, status=413)
        if isinstance(exception, SuspiciousOperation):
            return JsonResponse({"detail": "the request was refused as malformed"}, status=400)
        if isinstance(exception, (Http404, PermissionDenied)):
            return None  # Django's own 404 / 403
        logger.error("unhandled error in %s %s", request.method, request.path, exc_info=exception)
        return JsonResponse({"detail": "A server error occurred; it has been logged."}, status=500)
