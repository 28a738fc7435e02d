"""FitResult storage, the fit command, the worker task, the galaxy panel and its PNGs (real SDSS files)."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from catalog.importers.images import import_images
from catalog.models import Image
from fitting.engine import ENGINE_VERSION
from fitting.models import FitResult, axis_ratio_inclination
from fitting.services import fit_and_store, prepare_image
from fitting.tasks import fit_images
from jobs.models import Job

pytestmark = pytest.mark.django_db


@pytest.fixture
def sdss_images(shared_data):
    """Two real SDSS g-band cutouts (512 x 512 PNG, galaxy dark on light)."""
    import_images([shared_data / "sdss" / "pgc1844_g.png", shared_data / "sdss" / "pgc2813_g.png"], orientation="major_horizontal")
    return list(Image.objects.order_by("pk"))


def test_axis_ratio_inclination():
    assert axis_ratio_inclination(1.0, 0.3) == 0.0
    assert axis_ratio_inclination(0.2, 0.3) == 90.0
    assert axis_ratio_inclination(0.5, 0.3) == pytest.approx(65.2, abs=0.1)  # cos^2 i = (0.25 - 0.09) / 0.91
    assert axis_ratio_inclination(None) is None


def test_prepare_inverts_and_bins(sdss_images):
    prep = prepare_image(sdss_images[0])
    assert prep.data.shape == (128, 128) and prep.scale == 4
    # light positive: the centre is brighter than the border after inversion
    assert prep.data[56:72, 56:72].mean() > prep.data[:8].mean() + 5 * prep.sigma[0, 0]


def test_command_writes_rows_once_when_run_twice(sdss_images):
    call_command("fit", "--pgc", "1844", "2813", "--no-progress")
    rows = {r.image_id: (r.pk, r.updated) for r in FitResult.objects.all()}
    assert set(rows) == {im.pk for im in sdss_images}
    call_command("fit", "--pgc", "1844", "2813", "--no-progress")
    again = {r.image_id: (r.pk, r.updated) for r in FitResult.objects.all()}
    assert FitResult.objects.count() == 2
    assert {k: v[0] for k, v in again.items()} == {k: v[0] for k, v in rows.items()}  # same rows, updated in place
    assert all(again[k][1] > rows[k][1] for k in rows)
    fit = FitResult.objects.get(image__galaxy_id=1844)
    assert fit.converged, fit.reason
    assert fit.engine_version == ENGINE_VERSION and fit.model_kind == "sersic" and fit.scale == 4.0
    assert 0.05 < fit.q <= 1 and fit.q_err > 0 and fit.re > 1 and fit.inclination is not None
    assert set(fit.params) == {"x0", "y0", "sky", "flux", "re", "n", "q", "theta"}
    assert Job.objects.filter(kind="fit", status=Job.Status.SUCCEEDED).count() == 2


def test_command_rejects_unknown_pgc_and_writes_nothing(sdss_images):
    with pytest.raises(CommandError, match="unknown pgc: 999999999"):
        call_command("fit", "--pgc", "999999999", "--no-progress")
    assert FitResult.objects.count() == 0


def test_task_writes_rows_once_and_reports_progress(sdss_images):
    ids = [im.pk for im in sdss_images]
    job = Job.objects.create(kind="fit", total=0)
    out = fit_images(ids, "bulge_disk", job_id=job.pk)
    assert out["stored"] == 2
    fit_images(ids, "bulge_disk")
    assert FitResult.objects.filter(model_kind="bulge_disk").count() == 2
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED and job.done == job.total == 2
    f = FitResult.objects.filter(model_kind="bulge_disk").first()
    assert "disk.q" in f.params and f.errors["disk.n"] == 0.0


def test_unknown_model_is_rejected(sdss_images):
    with pytest.raises(ValueError, match="unknown model"):
        fit_and_store([sdss_images[0].pk], "moffat")
    assert FitResult.objects.count() == 0


def test_galaxy_panel_and_pngs(client, sdss_images):
    fit_and_store([sdss_images[0].pk])
    fit = FitResult.objects.get()
    page = client.get("/galaxies/1844/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="fitting-panel"' in html and "without a PSF model" in html
    assert f"{fit.inclination:.1f} deg" in html
    for which in ("data", "model", "residual"):
        resp = client.get(f"/fitting/{fit.pk}/{which}.png")
        assert resp.status_code == 200 and resp["Content-Type"] == "image/png"
        assert resp.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert client.get(f"/fitting/{fit.pk}/other.png").status_code == 404
