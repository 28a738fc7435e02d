"""Roles of the catalog, as Django groups.

- public: anyone, signed in or not: reads public galaxies, images and releases;
- volunteer: votes on inclinations, sees own votes and jobs;
- member: collaboration member: uploads images, sees private releases, starts jobs, downloads;
- curator: curates: overrides consensus, opens re-votes, publishes releases, sees all votes/jobs.

Staff and superusers count as curators. Each role includes the rights of the ones above it.
"""

from __future__ import annotations

VOLUNTEER = "volunteer"
MEMBER = "member"
CURATOR = "curator"
ROLES = (VOLUNTEER, MEMBER, CURATOR)
_RANK = {None: 0, VOLUNTEER: 1, MEMBER: 2, CURATOR: 3}


def ensure_groups() -> None:
    """Create the role groups when missing."""
    from django.contrib.auth.models import Group

    for name in ROLES:
        Group.objects.get_or_create(name=name)


def role_of(user) -> str | None:
    """The highest role of a user (None for anonymous or role-less users)."""
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    if user.is_superuser or user.is_staff:
        return CURATOR
    cached = getattr(user, "_galcat_role", "unset")
    if cached != "unset":
        return cached
    return remember_role(user, user.groups.values_list("name", flat=True))


def remember_role(user, group_names) -> str | None:
    """Keep on the user object the highest role among its group names (read once per request)."""
    role = max((n for n in set(group_names) if n in _RANK), key=_RANK.__getitem__, default=None)
    user._galcat_role = role
    return role


def has_role(user, role: str) -> bool:
    """True when the user holds `role` or a higher one."""
    return _RANK[role_of(user)] >= _RANK[role]


def is_volunteer(user) -> bool:
    return has_role(user, VOLUNTEER)


def is_member(user) -> bool:
    return has_role(user, MEMBER)


def is_curator(user) -> bool:
    return has_role(user, CURATOR)


def grant(user, role: str) -> None:
    """Add a user to a role's group."""
    from django.contrib.auth.models import Group

    group, _ = Group.objects.get_or_create(name=role)
    user.groups.add(group)
    if hasattr(user, "_galcat_role"):
        del user._galcat_role
