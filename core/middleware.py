"""Limits every request meets before any view or parser reads it.

- Bodies: at most DATA_UPLOAD_MAX_MEMORY_SIZE bytes for everything but multipart uploads (JSON
  included, which DRF's parser reads whole without Django's own check), and GALCAT_REQUEST_MAX_BYTES
  for multipart/form-data (files go to temporary files past FILE_UPLOAD_MAX_MEMORY_SIZE). A larger
  declared Content-Length answers 413 at once, without reading the body: JSON under /api/.
- NUL characters in the path or the query string answer 400: no text column of PostgreSQL can
  hold one, so they could only end in a database error.
"""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from core.api.errors import API_PREFIX, json_error


def body_limit(request: HttpRequest) -> int | None:
    """The largest body accepted for `request` [bytes]; None: no limit."""
    if request.content_type == "multipart/form-data":
        return settings.GALCAT_REQUEST_MAX_BYTES
    return settings.DATA_UPLOAD_MAX_MEMORY_SIZE


def _refuse(request: HttpRequest, message: str, status: int, field: str | None = None) -> HttpResponse:
    if request.path_info.startswith(API_PREFIX):
        return json_error(message, status, field)
    return HttpResponse(message, status=status, content_type="text/plain; charset=utf-8")


class RequestLimitsMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if "\x00" in request.path_info or b"\x00" in unquote_to_bytes(request.META.get("QUERY_STRING", "")):
            return _refuse(request, "NUL characters are not allowed in the address", 400)
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return _refuse(request, "Content-Length is not a number", 400)
        limit = body_limit(request)
        if limit is not None and length > limit:
            return _refuse(request, f"the request body of {length} bytes exceeds the limit of {limit} bytes", 413)
        return self.get_response(request)


class SecurityHeadersMiddleware:
    """Content-Security-Policy (GALCAT_CSP) on every answer that sets none of its own."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        policy = settings.GALCAT_CSP
        if policy and "Content-Security-Policy" not in response:
            response["Content-Security-Policy"] = policy
        return response
