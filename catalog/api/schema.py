"""OpenAPI schema additions: the column registry's unit and UCD on every galaxy column, and
the conventions every endpoint shares (authentication, errors, paging, throttling)."""

from __future__ import annotations

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from rest_framework.permissions import SAFE_METHODS

from catalog.columns import BY_NAME, DERIVED

_COLUMNS = {**BY_NAME, **{c.name: c for c in DERIVED}}


CONVENTIONS = """

**Authentication.** Reading public galaxies, images and releases needs none. Scripts send
`Authorization: Token <key>`; get a key with `POST /api/v1/token/` (user name and password, or
signed in), or on the profile page. One token per user: a new one replaces the old one, and
`DELETE /api/v1/token/` revokes it at once. Roles: volunteers vote; members also upload images
and read private releases; curators also read every vote and job.

**Errors** are JSON, never HTML: `{"message": ..., "field": <offending parameter or null>,
"errors": {field: [messages]}, "status": <HTTP status>}`.

**Lists** are paged by cursor: follow `next` until it is null; `page_size` (1-1000) and
`ordering` (one column, `-` for descending, NULLs last). Galaxy lists take `fields=` and answer
CSV, VOTable or FITS with `format=csv|votable|fits` (every matching row, streamed).

**Throttling.** Anonymous clients per IP address and users per account; past the limit the
answer is 429 with `Retry-After` in seconds.

**Units** of every galaxy column are in its description and in `x-unit` (with `x-ucd`).
"""


def add_column_units(result: dict, generator, request, public) -> dict:
    """drf-spectacular postprocessing hook: `x-unit` and `x-ucd` on the Galaxy schemas' column
    properties (the description already ends with the unit in brackets)."""
    for name, component in result.get("components", {}).get("schemas", {}).items():
        if not name.startswith("Galaxy"):
            continue
        for prop, schema in component.get("properties", {}).items():
            col = _COLUMNS.get(prop)
            if col is not None:
                schema["x-unit"] = col.unit
                schema["x-ucd"] = col.ucd
    info = result.setdefault("info", {})
    if CONVENTIONS.strip() not in info.get("description", ""):
        info["description"] = info.get("description", "") + CONVENTIONS
    return result


ERROR_SCHEMA = {
    "type": "object",
    "description": "The API's error format (core.api.errors)",
    "required": ["message", "field", "errors", "status"],
    "properties": {
        "message": {"type": "string", "description": "The first human-readable reason"},
        "field": {"type": "string", "nullable": True, "description": "The offending parameter or body field, or null"},
        "errors": {
            "type": "object",
            "description": "Every reason, keyed by field (non_field_errors for the request as a whole)",
            "additionalProperties": {"type": "array", "items": {"type": "string"}},
        },
        "status": {"type": "integer", "description": "The HTTP status"},
    },
}
ERROR_STATUSES = {
    "400": "Bad input: the message names the offending field",
    "401": "Authentication needed or the token is not valid",
    "403": "The account's role does not allow this (or a signed-in request lacks its CSRF token)",
    "404": "No such resource visible to the caller",
    "405": "Method not allowed on this resource",
    "406": "The requested answer format is not available here",
    "413": "The request body exceeds the size limit",
    "415": "Unsupported body media type",
    "429": "Too many requests: retry after Retry-After seconds",
}


def add_error_responses(result: dict, generator, request, public) -> dict:
    """drf-spectacular postprocessing hook: every operation documents every error status the
    API can answer, each with the one JSON error schema (schemathesis checks the answers
    against this)."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas["Error"] = ERROR_SCHEMA
    ref = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for operations in result.get("paths", {}).values():
        for method, operation in operations.items():
            if method not in ("get", "post", "put", "patch", "delete", "head", "options"):
                continue
            responses = operation.setdefault("responses", {})
            for code, description in ERROR_STATUSES.items():
                entry = responses.setdefault(code, {"description": description})
                entry.setdefault("description", description)
                entry["content"] = ref
    return result


class AutoSchema(SpectacularAutoSchema):
    """drf-spectacular's schema, plus: reads that a permission class lets anyone make
    (``anonymous_read = True``, e.g. core.api.permissions.ReadAnyoneWriteMember) are declared
    as needing no authentication."""

    def get_auth(self) -> list[dict]:
        auths = super().get_auth()
        if (
            {} not in auths
            and self.method in SAFE_METHODS
            and any(getattr(p, "anonymous_read", False) for p in self.view.get_permissions())
        ):
            auths.append({})
        return auths
