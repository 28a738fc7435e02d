"""Limits every request meets before any view or parser reads it.

- Bodies: at most DATA_UPLOAD_MAX_MEMORY_SIZE bytes for everything but multipart uploads (JSON
  included, which DRF's parser reads whole without Django's own check), and GALCAT_REQUEST_MAX_BYTES
  for multipart/form-data (files go to temporary files past FILE_UPLOAD_MAX_MEMORY_SIZE). A larger
  declared Content-Length answers 413 at once, without reading the body: JSON under /api/.
- NUL characters in the path or the query string answer 400: no text column of PostgreSQL can
  hold one, so they could only end in a database error.
"""

from __future__ import annotations

import functools
import threading
import time
from collections import OrderedDict
from urllib.parse import unquote_to_bytes

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.urls import Resolver404, resolve

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


class PublicCacheMiddleware:
    """Anonymous GETs of the views in GALCAT_PUBLIC_CACHE_VIEWS get a copy of the same answer
    made at most GALCAT_PUBLIC_CACHE_SECONDS ago in this process.

    Anonymous means no Authorization header and no cookie but the CSRF one; only answers that are
    200, not streamed, set no cookie, carry no CSRF token and are not private or no-store are kept, keyed by
    scheme, host, path with query, Accept and Accept-Encoding. Entries beyond GALCAT_PUBLIC_CACHE_BYTES
    push out the oldest. A popular page then costs one view run per interval and process, however
    many visitors ask; signed-in users and API tokens always get a fresh answer.
    """

    def __init__(self, get_response):
        self.get_response = get_response
        self._entries: OrderedDict[tuple, tuple[float, int, list, bytes]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def __call__(self, request: HttpRequest) -> HttpResponse:
        ttl = settings.GALCAT_PUBLIC_CACHE_SECONDS
        if ttl <= 0 or request.method != "GET" or not _anonymous(request) or not _public_view(request.path_info):
            return self.get_response(request)
        meta = request.META
        key = (
            request.scheme,
            request.get_host(),
            request.get_full_path(),
            meta.get("HTTP_ACCEPT", ""),
            meta.get("HTTP_ACCEPT_ENCODING", ""),
        )
        now = time.monotonic()
        with self._lock:
            hit = self._entries.get(key)
        if hit is not None and hit[0] > now:
            expires, status, headers, content = hit
            response = HttpResponse(content, status=status)
            for name, value in headers:
                response[name] = value
            response["Age"] = str(int(ttl - (expires - now)))
            return response
        response = self.get_response(request)
        if _keepable(request, response):
            self._keep(key, (now + ttl, response.status_code, list(response.items()), response.content))
        return response

    def _keep(self, key: tuple, entry: tuple) -> None:
        size = len(entry[3])
        budget = settings.GALCAT_PUBLIC_CACHE_BYTES
        if size > budget // 8:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= len(old[3])
            self._entries[key] = entry
            self._bytes += size
            while self._bytes > budget:
                _, dropped = self._entries.popitem(last=False)
                self._bytes -= len(dropped[3])


def _anonymous(request: HttpRequest) -> bool:
    return "HTTP_AUTHORIZATION" not in request.META and set(request.COOKIES) <= {settings.CSRF_COOKIE_NAME}


def _public_view(path: str) -> bool:
    return _view_name(path) in settings.GALCAT_PUBLIC_CACHE_VIEWS


@functools.lru_cache(maxsize=4096)
def _view_name(path: str) -> str | None:
    try:
        return resolve(path).view_name
    except Resolver404:
        return None


def _keepable(request: HttpRequest, response: HttpResponse) -> bool:
    """A 200 for anyone: not streamed, no cookie set, no CSRF token in it (one visitor's token must
    never reach another), not marked private or no-store."""
    if response.status_code != 200 or response.streaming or response.cookies:
        return False
    if request.META.get("CSRF_COOKIE_NEEDS_UPDATE"):
        return False
    cache_control = response.get("Cache-Control", "").lower()
    return "private" not in cache_control and "no-store" not in cache_control
