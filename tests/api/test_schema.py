"""The OpenAPI schema: valid OpenAPI 3, every endpoint in it, every field described (with its
unit for galaxy columns), docs pages served without internet."""

from __future__ import annotations

import pytest
import yaml
from openapi_spec_validator import validate

from catalog.columns import COLUMNS

pytestmark = pytest.mark.django_db


@pytest.fixture
def schema(client) -> dict:
    r = client.get("/api/schema/")
    assert r.status_code == 200
    return yaml.safe_load(r.content)


def test_schema_validates_and_lists_every_endpoint(schema):
    validate(schema)
    paths = set(schema["paths"])
    for expected in (
        "/api/v1/galaxies/",
        "/api/v1/galaxies/{pgc}/",
        "/api/v1/images/",
        "/api/v1/images/{id}/",
        "/api/v1/votes/",
        "/api/v1/votes/{id}/",
        "/api/v1/releases/",
        "/api/v1/releases/{slug}/",
        "/api/v1/releases/{slug}/rows/",
        "/api/v1/jobs/",
        "/api/v1/jobs/{id}/",
        "/api/v1/token/",
    ):
        assert expected in paths, expected
    assert "post" in schema["paths"]["/api/v1/images/"] and "post" in schema["paths"]["/api/v1/votes/"]
    assert "multipart/form-data" in schema["paths"]["/api/v1/images/"]["post"]["requestBody"]["content"]
    listing = schema["paths"]["/api/v1/galaxies/"]["get"]
    names = {p["name"] for p in listing["parameters"]}
    assert {"ra", "dec", "radius", "ordering", "fields", "cursor", "page_size", "inc_min", "vhel_max", "q"} <= names
    security = {k for item in schema["components"]["securitySchemes"] for k in [item]}
    assert {"tokenAuth", "cookieAuth"} <= security


def test_every_field_has_a_description_and_galaxy_columns_their_unit(schema):
    missing = []
    for name, component in schema["components"]["schemas"].items():
        for prop, spec in component.get("properties", {}).items():
            if not spec.get("description") and "allOf" not in spec and "$ref" not in spec:
                missing.append(f"{name}.{prop}")
    assert missing == [], missing
    galaxy = schema["components"]["schemas"]["Galaxy"]["properties"]
    for col in COLUMNS:
        assert galaxy[col.name]["description"] == col.help_text
        assert galaxy[col.name]["x-unit"] == col.unit and galaxy[col.name]["x-ucd"] == col.ucd
    assert galaxy["vhel"]["description"].endswith("[km/s]")


def test_docs_pages_use_the_bundled_sidecar_assets(client):
    for url in ("/api/docs/", "/api/redoc/"):
        r = client.get(url)
        assert r.status_code == 200
        html = r.content.decode()
        assert "/static/drf_spectacular_sidecar/" in html and "cdn" not in html.lower()
    assert client.get("/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js").status_code == 200
