"""Predictions (ml) and fits (fitting) reach the API through their api_v1 modules and the
galaxy detail's extras hook, without the catalog importing them."""

from __future__ import annotations

import pytest

from tests.factories import GalaxyFactory, make_image

pytestmark = pytest.mark.django_db
ml_models = pytest.importorskip("ml.models")


def test_predictions_listed_and_in_galaxy_detail(anon_client):
    g = GalaxyFactory(ra=30.0, dec=30.0)
    other = GalaxyFactory(ra=31.0, dec=30.0)
    version = ml_models.ModelVersion.objects.create(
        name="inclinet-synth", version="1", architecture="VGG", weights_path="w", sha256="0" * 64
    )
    for galaxy, inc in ((g, 71.5), (other, 55.0)):
        image = make_image(galaxy, "g", size=32)
        ml_models.Prediction.objects.create(
            image=image, galaxy=galaxy, model_version=version, value=inc, uncertainty=2.0, reject_likelihood=0.1
        )
    rows = anon_client.get(f"/api/v1/predictions/?pgc={g.pgc}").json()["results"]
    assert [(r["galaxy"], r["value"]) for r in rows] == [(g.pgc, 71.5)]
    detail = anon_client.get(f"/api/v1/galaxies/{g.pgc}/").json()
    assert [p["value"] for p in detail["predictions"]] == [71.5]
    assert detail["predictions"][0]["model_version"] == version.pk
    r = anon_client.get("/api/v1/predictions/?pgc=abc")
    assert r.status_code == 400 and r.json()["field"] == "pgc"
    assert anon_client.get("/api/v1/model-versions/").json()["results"][0]["name"] == "inclinet-synth"
