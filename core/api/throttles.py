"""Throttling: per anonymous IP address and per signed-in user.

Rates are read from settings at each request (GALCAT_API_THROTTLE_ANON and
GALCAT_API_THROTTLE_USER, e.g. "120/min"; environment variables of the same names), so a test
can override them. An empty rate turns that throttle off. A throttled request answers 429 with
Retry-After (seconds). Counts live in Django's default cache: a deployment with several
processes needs a shared cache (database or Redis) for the limits to be global.
"""

from __future__ import annotations

from rest_framework.throttling import AnonRateThrottle, UserRateThrottle

from core.conf import conf


class AnonThrottle(AnonRateThrottle):
    """Requests of anonymous clients, counted per IP address."""

    scope = "anon"
    setting = "API_THROTTLE_ANON"

    def get_rate(self) -> str | None:
        return getattr(conf, self.setting) or None


class UserThrottle(UserRateThrottle):
    """Requests of signed-in users, counted per user (anonymous ones are left to AnonThrottle)."""

    scope = "user"
    setting = "API_THROTTLE_USER"

    def get_rate(self) -> str | None:
        return getattr(conf, self.setting) or None

    def allow_request(self, request, view) -> bool:
        if not (request.user and request.user.is_authenticated):
            return True
        return super().allow_request(request, view)


class InferenceThrottle(UserRateThrottle):
    """POST /api/file (the CNN in the web process): its own, lower rate, per user or address."""

    scope = "inference"
    setting = "API_THROTTLE_INFERENCE"

    def get_rate(self) -> str | None:
        return getattr(conf, self.setting) or None


class UploadThrottle(InferenceThrottle):
    """Image uploads (decoded and stored): per user."""

    scope = "upload"
    setting = "API_THROTTLE_UPLOAD"
