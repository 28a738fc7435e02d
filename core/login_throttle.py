"""Failed-login throttling, per account and per client address.

Failures are counted (Django's ``user_login_failed`` signal) in the default cache under
GALCAT_LOGIN_FAILURES_PER_ACCOUNT and GALCAT_LOGIN_FAILURES_PER_IP ("N/SECONDS"; empty turns one
off); past a limit every attempt, right password or not, on the login page or the API's token
endpoint, is refused with a message saying when to retry.
"""

from __future__ import annotations

import hashlib
import time

from django.conf import settings
from django.contrib.auth.signals import user_login_failed
from django.core.cache import cache
from django.dispatch import receiver


def _rate(value: str) -> tuple[int, int] | None:
    if not value:
        return None
    count, seconds = value.split("/")
    return int(count), int(seconds)


def _keys(username: str | None, ip: str | None) -> list[tuple[str, tuple[int, int]]]:
    keys = []
    if (rate := _rate(settings.GALCAT_LOGIN_FAILURES_PER_ACCOUNT)) and username:
        keys.append(("login-fail:user:" + hashlib.sha256(username.strip().lower().encode()).hexdigest(), rate))
    if (rate := _rate(settings.GALCAT_LOGIN_FAILURES_PER_IP)) and ip:
        keys.append((f"login-fail:ip:{ip}", rate))
    return keys


def client_ip(request) -> str | None:
    return request.META.get("REMOTE_ADDR") if request is not None else None


def login_blocked(username: str | None, ip: str | None) -> str | None:
    """The message to show when logins for `username` or from `ip` are paused, else None."""
    now = time.time()
    for key, (count, seconds) in _keys(username, ip):
        recent = [t for t in cache.get(key, []) if t > now - seconds]
        if len(recent) >= count:
            wait = int(recent[0] + seconds - now) + 1
            return f"Too many failed sign-ins; try again in {wait} seconds."
    return None


@receiver(user_login_failed)
def _count_failure(sender, credentials: dict, request=None, **kwargs) -> None:
    now = time.time()
    for key, (_count, seconds) in _keys(credentials.get("username"), client_ip(request)):
        recent = [t for t in cache.get(key, []) if t > now - seconds]
        cache.set(key, [*recent, now], seconds)
