"""API authentication: DRF's token scheme, with the user's role read in the same query."""

from __future__ import annotations

from django.contrib.auth.models import Group
from django.contrib.postgres.expressions import ArraySubquery
from django.db.models import OuterRef
from django.utils.translation import gettext_lazy as _
from rest_framework import authentication, exceptions

from core.roles import remember_role


class TokenAuthentication(authentication.TokenAuthentication):
    """`Authorization: Token <key>`; the token, its user and the user's role groups come in one
    query, so permission checks that follow (core.roles) need none of their own."""

    def authenticate_credentials(self, key: str):
        groups = Group.objects.filter(user=OuterRef("user_id")).values("name")
        token = self.get_model().objects.select_related("user").annotate(group_names=ArraySubquery(groups)).filter(key=key).first()
        if token is None:
            raise exceptions.AuthenticationFailed(_("Invalid token."))
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        remember_role(token.user, token.group_names)
        return token.user, token
