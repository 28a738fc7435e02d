"""Inclinet-compatible endpoints, stored predictions, the worker task, the panel and the comparison page."""

from __future__ import annotations

import io

import pytest

from jobs.models import Job
from ml.inference import WeightsChecksumError
from ml.models import ModelVersion, Prediction
from ml.services import ensemble_for, register_weights
from ml.tasks import predict_images, stale_image_ids
from tests.factories import GalaxyFactory, GalaxyNameFactory, make_image
from tests.ml.makers import make_weights

pytestmark = pytest.mark.django_db


@pytest.fixture
def version(tmp_path):
    return register_weights(make_weights(tmp_path / "w", members=2), name="test", version="1")


@pytest.fixture
def galaxy():
    g = GalaxyFactory(pgc=4242, d25=1.2, pa=30.0)
    GalaxyNameFactory(galaxy=g, name="NGC 9999")
    make_image(g, "g", inc=75.0, size=96)
    make_image(g, "r", inc=75.0, size=128)
    return g


def _check_inclinet_fields(body: dict, members: list[str]) -> None:
    assert body["status"] == "success"
    assert "message" in body
    assert set(body["galaxy"]) == {"pgc", "ra", "dec", "fov", "pa", "objname"}
    inc = body["inclinations"]
    assert set(inc) == set(members) | {"summary"}
    assert set(inc["summary"]) == {"mean", "median", "stdev"}
    assert 45 <= inc["summary"]["median"] <= 90
    assert 0 <= body["rejection_likelihood"] <= 1


def test_register_weights_records_sha256_and_activates(version, tmp_path):
    assert version.active and len(version.sha256) == 64
    assert set(version.files) == {"member0.pt", "member1.pt"}
    other = register_weights(make_weights(tmp_path / "w2", members=1, seed=3), name="test", version="2")
    version.refresh_from_db()
    assert other.active and not version.active
    assert ModelVersion.objects.filter(active=True).count() == 1


def test_model_version_with_wrong_sha256_refuses_to_load(version):
    version.files = {**version.files, "member1.pt": "0" * 64}
    version.save()
    with pytest.raises(WeightsChecksumError):
        ensemble_for(version)


def test_pgc_endpoint_predicts_and_stores_once(client, version, galaxy):
    r = client.get("/api/pgc/4242")
    assert r.status_code == 200
    body = r.json()
    _check_inclinet_fields(body, ["member0", "member1"])
    assert body["galaxy"]["pgc"] == 4242 and body["galaxy"]["objname"] == "NGC 9999"
    assert body["galaxy"]["fov"] == pytest.approx(2.4)
    assert Prediction.objects.filter(galaxy=galaxy, model_version=version).count() == 2
    client.get("/api/pgc/4242")
    assert Prediction.objects.filter(galaxy=galaxy).count() == 2
    p = Prediction.objects.filter(galaxy=galaxy).first()
    assert set(p.extra["members"]) == {"member0", "member1"} and "reject_likelihood" in p.extra
    assert p.axis_ratio is None or 0 < p.axis_ratio <= 1


def test_objname_endpoint_and_unknowns(client, version, galaxy):
    r = client.get("/api/objname/ngc9999")
    assert r.status_code == 200 and r.json()["galaxy"]["pgc"] == 4242
    assert client.get("/api/objname/PGC%204242").json()["galaxy"]["pgc"] == 4242
    r = client.get("/api/objname/NGC%201")
    assert r.status_code == 404 and r.json()["status"] == "error" and "not in the catalog" in r.json()["message"]
    assert client.get("/api/pgc/1").status_code == 404
    GalaxyFactory(pgc=777)
    r = client.get("/api/pgc/777")
    assert r.status_code == 404 and "no image" in r.json()["message"]


def test_file_endpoint_on_a_shared_sdss_cutout(client, version, shared_data):
    path = shared_data / "sdss" / "pgc5440_r.png"
    with open(path, "rb") as fh:
        r = client.post("/api/file", {"file": fh})
    assert r.status_code == 200
    body = r.json()
    _check_inclinet_fields(body, ["member0", "member1"])
    assert body["filename"] == "pgc5440_r.png"
    with open(shared_data / "sdss" / "pgc1844_gri.jpg", "rb") as fh:
        assert client.post("/api/file", {"file": fh}).status_code == 200


def _upload(client, name: str, data: bytes):
    f = io.BytesIO(data)
    f.name = name
    return client.post("/api/file", {"file": f})


def test_file_endpoint_rejections(client, version, shared_data, settings):
    png = (shared_data / "sdss" / "pgc5440_r.png").read_bytes()
    cases = [
        ("notes.png", b"just some text, not pixels", "not a readable"),
        ("cut.png", png[: len(png) // 3], "not a readable"),
        ("empty.png", b"", "empty"),
    ]
    for name, data, words in cases:
        r = _upload(client, name, data)
        assert r.status_code == 400, name
        assert r.json()["status"] == "error" and words in r.json()["message"], r.json()
    settings.GALCAT_UPLOAD_MAX_BYTES = 1000
    r = _upload(client, "big.png", png)
    assert r.status_code == 400 and "limit of 1000 bytes" in r.json()["message"]
    r = client.post("/api/file", {})
    assert r.status_code == 400 and '"file"' in r.json()["message"]
    assert client.get("/api/file").status_code == 405
    assert Prediction.objects.count() == 0


def test_predict_images_task_updates_job_and_upserts(version, galaxy):
    ids = list(galaxy.images.values_list("pk", flat=True))
    assert sorted(stale_image_ids(version)) == sorted(ids)
    job = Job.objects.create(kind="predict", total=0)
    out = predict_images(ids, job_id=job.pk)
    assert out == {"stored": 2, "skipped": 0}
    job.refresh_from_db()
    assert job.done == 2 and job.total == 2
    predict_images(ids)
    assert Prediction.objects.count() == 2
    assert stale_image_ids(version) == []


def test_galaxy_panel_and_compare_page(client, version, galaxy):
    client.get("/api/pgc/4242")
    page = client.get("/galaxies/4242/").content.decode()
    assert 'id="ml-panel"' in page and "member0" in page and 'id="ml-median"' in page
    r = client.get("/compare/")
    assert r.status_code == 200
    html = r.content.decode()
    assert "plotly.min.js" in html and "compare-data" in html and "4242" in html


def test_rest_api_lists_versions_and_predictions(client, version, galaxy):
    client.get("/api/pgc/4242")
    r = client.get("/api/v1/model-versions/")
    assert r.status_code == 200 and version.sha256 in r.content.decode()
    r = client.get("/api/v1/predictions/?pgc=4242")
    assert r.status_code == 200 and r.content.decode().count('"model_version"') == 2


def test_axis_ratio_baseline_uses_profile_fits_when_present(version, galaxy):
    """The baseline beside the CNN values takes b/a from a converged fit (bulge+disk before Sérsic),
    from image moments otherwise, and stored predictions follow fits stored later."""
    from fitting.engine.version import ENGINE_VERSION
    from fitting.models import FitResult
    from ml.inference import axis_ratio_inclination
    from ml.services import predict_and_store, q0, refresh_axis_ratios

    g_img, r_img = sorted(galaxy.images.all(), key=lambda im: im.band)
    FitResult.objects.create(image=g_img, model_kind="sersic", engine_version=ENGINE_VERSION, converged=True, q=0.5)
    FitResult.objects.create(image=r_img, model_kind="sersic", engine_version=ENGINE_VERSION, converged=False, q=0.9)
    predict_and_store([g_img.pk, r_img.pk], version)
    pg = Prediction.objects.get(image=g_img)
    pr = Prediction.objects.get(image=r_img)
    assert pg.axis_ratio == 0.5 and pg.extra["axis_ratio_source"] == "fit:sersic"
    assert abs(pg.axis_ratio_inc - float(axis_ratio_inclination(0.5, q0()))) < 1e-9
    assert pr.extra["axis_ratio_source"] == "moments" and pr.axis_ratio != 0.9  # unconverged fit ignored

    # a bulge+disk fit stored later wins over the Sérsic one
    FitResult.objects.create(image=g_img, model_kind="bulge_disk", engine_version=ENGINE_VERSION, converged=True, q=0.3)
    assert refresh_axis_ratios([g_img.pk, r_img.pk]) == 1
    pg.refresh_from_db()
    assert pg.axis_ratio == 0.3 and pg.extra["axis_ratio_source"] == "fit:bulge_disk"
    assert pg.axis_ratio_inc == pytest.approx(float(axis_ratio_inclination(0.3, q0())))
