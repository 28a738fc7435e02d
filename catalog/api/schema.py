"""OpenAPI schema additions: the column registry's unit and UCD on every galaxy column, and
the conventions every endpoint shares (authentication, errors, paging, throttling)."""

from __future__ import annotations

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
