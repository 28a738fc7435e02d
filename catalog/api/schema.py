"""OpenAPI schema additions: the column registry's unit and UCD on every galaxy column."""

from __future__ import annotations

from catalog.columns import BY_NAME, DERIVED

_COLUMNS = {**BY_NAME, **{c.name: c for c in DERIVED}}


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
    return result
