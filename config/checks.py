"""Start-up refusals of a misconfigured deployment (called by settings, wsgi and asgi)."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

# The public key of development checkouts: DEBUG must be on to use it.
DEV_SECRET_KEY = "dev-only-insecure-key-change-me-in-production"


def require_real_secret_key(debug: bool, secret_key: str) -> None:
    """ImproperlyConfigured when the site would serve with DEBUG off and the public development
    key (anyone could then forge sessions, password-reset links and signed task payloads)."""
    if not debug and secret_key == DEV_SECRET_KEY:
        raise ImproperlyConfigured(
            "DEBUG is off but DJANGO_SECRET_KEY is not set: the site refuses to serve with the public development key. "
            "Set DJANGO_SECRET_KEY to a long random value (`make run` makes one in var/secret_key.txt), "
            "or DJANGO_DEBUG=1 for development."
        )
