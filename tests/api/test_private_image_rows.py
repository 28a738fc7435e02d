"""Rows about a private image (CNN predictions, profile fits) reach members only, like the image:
in their own endpoints and in the galaxy detail."""

from __future__ import annotations

import pytest

from fitting.models import FitResult
from ml.models import ModelVersion, Prediction
from tests.factories import GalaxyFactory, make_image

pytestmark = pytest.mark.django_db


@pytest.fixture
def rows():
    galaxy = GalaxyFactory(pgc=301, ra=10.0, dec=5.0)
    public, private = make_image(galaxy, "g"), make_image(galaxy, "r")
    private.is_public = False
    private.save(update_fields=["is_public"])
    version = ModelVersion.objects.create(name="cnn", version="0", architecture="vgg", weights_path="x", sha256="0" * 64, active=True)
    for image, value in ((public, 70.0), (private, 80.0)):
        Prediction.objects.create(image=image, galaxy=galaxy, model_version=version, value=value, uncertainty=1.0, reject_likelihood=0.1)
        FitResult.objects.create(
            image=image, model_kind="sersic", engine_version="1", re=value / 10, n=1.0, q=0.3, chi2=1.0, dof=1, converged=True
        )
    return galaxy, public, private


def _images(items) -> set[int]:
    return {item["image"] for item in items}


@pytest.mark.parametrize("url", ["/api/v1/predictions/", "/api/v1/fits/"])
def test_anonymous_lists_leave_out_rows_of_private_images(anon_client, member_client, rows, url):
    _, public, private = rows
    assert _images(anon_client.get(url).json()["results"]) == {public.pk}
    assert _images(member_client.get(url).json()["results"]) == {public.pk, private.pk}


def test_anonymous_cannot_open_a_row_of_a_private_image(anon_client, member_client, rows):
    _, _, private = rows
    pk = Prediction.objects.get(image=private).pk
    assert anon_client.get(f"/api/v1/predictions/{pk}/").status_code == 404
    assert member_client.get(f"/api/v1/predictions/{pk}/").status_code == 200


def test_the_galaxy_detail_shows_rows_of_private_images_to_members_only(anon_client, member_client, rows):
    galaxy, public, private = rows
    url = f"/api/v1/galaxies/{galaxy.pk}/"
    anonymous, member = anon_client.get(url).json(), member_client.get(url).json()
    assert _images(anonymous["predictions"]) == _images(anonymous["fits"]) == {public.pk}
    assert _images(member["predictions"]) == _images(member["fits"]) == {public.pk, private.pk}
