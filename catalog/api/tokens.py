"""API tokens: one per user, issued and revoked here (API and profile page alike).

A token authenticates as 'Authorization: Token <key>'. Revoking deletes it, and since every
request looks the key up, a revoked token is refused from the next request on.
"""

from __future__ import annotations

from django.db import transaction
from rest_framework.authtoken.models import Token


def token_for(user) -> Token | None:
    """The user's token, or None."""
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    return Token.objects.filter(user=user).first()


def issue_token(user) -> Token:
    """A new token for the user, replacing (and so revoking) any previous one."""
    if user is None or not getattr(user, "is_authenticated", False):
        raise PermissionError("sign in to get an API token")
    with transaction.atomic():
        Token.objects.filter(user=user).delete()
        return Token.objects.create(user=user)


def revoke_token(user) -> bool:
    """Delete the user's token; True when there was one."""
    if user is None or not getattr(user, "is_authenticated", False):
        return False
    deleted, _ = Token.objects.filter(user=user).delete()
    return deleted > 0
