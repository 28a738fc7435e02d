"""One JSON error format for the whole API: never an HTML page under /api/.

Every error answers ``{"message": str, "field": str | null, "errors": {...}, "status": int}``:
``message`` is the first human-readable reason, ``field`` the offending parameter or body field
(null when the error concerns the request as a whole), ``errors`` every reason keyed by field.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from drf_spectacular.utils import OpenApiResponse
from rest_framework import exceptions
from rest_framework.renderers import JSONRenderer
from rest_framework.views import exception_handler as drf_exception_handler

logger = logging.getLogger("galcat.api")
API_PREFIX = "/api/"
NON_FIELD_KEYS = ("non_field_errors", "detail", "__all__")
# The error answers most endpoints document in the OpenAPI schema.
ERROR_RESPONSES = {
    400: OpenApiResponse(description="Bad input: JSON with message and the offending field"),
    429: OpenApiResponse(description="Too many requests: JSON error, with Retry-After [s]"),
}


def _flatten(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """{field path: [messages]} from DRF's nested error detail."""
    out: dict[str, list[str]] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = "non_field_errors" if key in NON_FIELD_KEYS and not prefix else (f"{prefix}.{key}" if prefix else str(key))
            for k, v in _flatten(value, name).items():
                out.setdefault(k, []).extend(v)
    elif isinstance(detail, list | tuple):
        if all(not isinstance(v, dict | list | tuple) for v in detail):
            out.setdefault(prefix or "non_field_errors", []).extend(str(v) for v in detail)
        else:
            for i, v in enumerate(detail):
                for k, msgs in _flatten(v, f"{prefix}[{i}]" if prefix else f"[{i}]").items():
                    out.setdefault(k, []).extend(msgs)
    else:
        out.setdefault(prefix or "non_field_errors", []).append(str(detail))
    return out


class ApiError(exceptions.APIException):
    """An error with a status and the offending field, in the API's error format."""

    def __init__(self, message: str, *, status_code: int = 400, field: str | None = None, code: str = "invalid"):
        self.status_code = status_code
        super().__init__({field: [message]} if field else {"non_field_errors": [message]}, code)


def pgc_param(params) -> int | None:
    """The ``pgc`` query parameter as an integer (None when absent or empty); 400 when not one."""
    raw = params.get("pgc")
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise ApiError(f"pgc must be an integer, got {raw!r}", field="pgc") from None


def error_body(message: str, *, status: int, field: str | None = None, errors: dict | None = None) -> dict:
    """The body of an API error."""
    return {"message": message, "field": field, "errors": errors or ({field or "non_field_errors": [message]}), "status": status}


def body_from_detail(detail: Any, status: int) -> dict:
    """The error body for a DRF exception detail (string, list or dict of field errors)."""
    errors = _flatten(detail)
    field = None
    message = ""
    for key, messages in errors.items():
        if messages:
            field = None if key in NON_FIELD_KEYS else key
            message = messages[0]
            break
    if field and message and not message.startswith(field):
        message = f"{field}: {message}"
    return {"message": message or "error", "field": field, "errors": errors, "status": status}


def exception_handler(exc: Exception, context: dict) -> Any:
    """DRF exception handler: DRF's own handling (status, Retry-After, WWW-Authenticate) with
    the body rewritten to the API's error format, and always rendered as JSON."""
    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # an unexpected error: ApiJsonErrorsMiddleware answers a JSON 500
    response.data = body_from_detail(response.data, response.status_code)
    request = context.get("request")
    if request is not None:
        # Errors are JSON even when the client asked for CSV or VOTable.
        request.accepted_renderer = JSONRenderer()
        request.accepted_media_type = "application/json"
    return response


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith(API_PREFIX)


def json_error(message: str, status: int, field: str | None = None) -> JsonResponse:
    return JsonResponse(error_body(message, status=status, field=field), status=status, json_dumps_params={"separators": (",", ":")})


class ApiJsonErrorsMiddleware:
    """Under /api/, errors that escape DRF (unknown URLs, Http404 from plain views, crashes)
    answer the API's JSON error format instead of Django's HTML pages; other paths are untouched."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if not _is_api(request) or response.status_code < 400:
            return response
        content_type = response.get("Content-Type", "")
        if content_type.startswith("text/html") or (not content_type and not response.streaming):
            reason = getattr(response, "reason_phrase", "") or "error"
            if response.status_code == 404:
                reason = f"no API resource at {request.path}"
            new = json_error(reason, response.status_code)
            for header in ("Retry-After", "WWW-Authenticate", "Allow"):
                if header in response:
                    new[header] = response[header]
            return new
        return response

    def process_exception(self, request: HttpRequest, exc: Exception) -> HttpResponse | None:
        if not _is_api(request):
            return None
        if isinstance(exc, Http404):
            return json_error(str(exc) or f"no API resource at {request.path}", 404)
        if isinstance(exc, PermissionDenied):
            return json_error(str(exc) or "permission denied", 403)
        if isinstance(exc, exceptions.APIException):
            return JsonResponse(
                body_from_detail(exc.detail, exc.status_code), status=exc.status_code, json_dumps_params={"separators": (",", ":")}
            )
        logger.exception("API error at %s", request.path)
        return json_error("internal server error", 500)
