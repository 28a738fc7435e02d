"""Permissions of the API, from the roles of catalog.roles (Django groups)."""

from __future__ import annotations

from rest_framework.permissions import SAFE_METHODS, BasePermission

from catalog.roles import is_curator, is_member, is_volunteer


class IsVolunteer(BasePermission):
    message = "this needs a volunteer account (sign in, or send an API token)"

    def has_permission(self, request, view) -> bool:
        return is_volunteer(request.user)


class IsMember(BasePermission):
    message = "this needs a collaboration member account"

    def has_permission(self, request, view) -> bool:
        return is_member(request.user)


class IsCurator(BasePermission):
    message = "this needs a curator account"

    def has_permission(self, request, view) -> bool:
        return is_curator(request.user)


class ReadAnyoneWriteMember(BasePermission):
    """Anyone reads; members write."""

    message = "uploading needs a collaboration member account"

    def has_permission(self, request, view) -> bool:
        return request.method in SAFE_METHODS or is_member(request.user)


class ReadAnyoneWriteVolunteer(BasePermission):
    """Reading is open (the queryset limits what each sees); writing needs a volunteer."""

    message = "voting needs a volunteer account (sign in, or send an API token)"

    def has_permission(self, request, view) -> bool:
        return request.method in SAFE_METHODS or is_volunteer(request.user)
