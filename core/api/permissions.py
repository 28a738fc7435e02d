"""Permissions of the API, from the roles of core.roles (Django groups)."""

from __future__ import annotations

from rest_framework.permissions import SAFE_METHODS, BasePermission

from core.roles import is_member, is_volunteer


class IsVolunteer(BasePermission):
    message = "this needs a volunteer account (sign in, or send an API token)"

    def has_permission(self, request, view) -> bool:
        return is_volunteer(request.user)


class ReadAnyoneWriteMember(BasePermission):
    """Anyone reads; members write."""

    message = "uploading needs a collaboration member account"
    anonymous_read = True  # the API schema declares its reads open to anonymous clients

    def has_permission(self, request, view) -> bool:
        return request.method in SAFE_METHODS or is_member(request.user)
