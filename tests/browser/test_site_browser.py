"""The site as a user meets it, at desktop (1400 px) and phone (400 px) widths: real OpenNGC names,
real SDSS images, derived columns, no sideways scrolling, labelled plots, the upload page.

Screenshots are kept as test artefacts in var/test-artefacts/screenshots/<page>-<width>.png
(GALCAT_SCREENSHOTS overrides the folder)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.conf import settings

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SHOTS = Path(os.environ.get("GALCAT_SCREENSHOTS", settings.BASE_DIR / "var" / "test-artefacts" / "screenshots"))
WIDTHS = (1400, 400)
SEARCH_EXAMPLES = {
    "NGC 4565": 42038,
    "ngc4565": 42038,
    "UGC 7772": 42038,
    "Needle Galaxy": 42038,
    "M31": 2557,
    "Andromeda": 2557,
    "M 64": 44182,
}


@pytest.fixture
def site(transactional_db, shared_data, tmp_path):
    """OpenNGC rows (the shared images' galaxies among them), the EDD table, the images of two
    galaxies, and consensus, CNN and fit values for one."""
    from catalog.importers.images import import_images
    from catalog.importers.tables import import_catalog
    from catalog.models import Image
    from fitting.models import FitResult
    from ml.models import ModelVersion, Prediction
    from tests.catalog.openngc_data import openngc_subset
    from zoo.models import ConsensusInclination

    import_catalog(openngc_subset(tmp_path), "openngc")
    import_catalog(shared_data / "edd_cf4_sample.txt", "edd")
    files = [shared_data / "sdss" / f"pgc44182_{b}" for b in ("g.png", "r.png", "i.png", "gri.jpg")]
    import_images(files, survey="SDSS", orientation=Image.Orientation.MAJOR_HORIZONTAL)
    img = Image.objects.filter(galaxy_id=44182, band="g").get()
    ConsensusInclination.objects.create(galaxy_id=44182, inc=58.5, inc_e=2.1, inc_n=5, flag="A", method="m", version="1")
    mv = ModelVersion.objects.create(name="cnn", version="1", architecture="vgg", weights_path="x", sha256="1" * 64, active=True)
    Prediction.objects.create(
        image=img, galaxy_id=44182, model_version=mv, value=60.2, uncertainty=1.4, reject_likelihood=0.05, axis_ratio_inc=61.0,
        extra={"members": {"m0": 60.0, "m1": 60.4}},
    )  # fmt: skip
    FitResult.objects.create(
        image=img, model_kind="sersic", engine_version="1", re=30.0, re_err=0.5, n=1.3, n_err=0.1, q=0.52, q_err=0.01, theta=1.0,
        chi2=120.0, dof=100, converged=False,
    )  # fmt: skip
    return img


def _shot(page, name: str, width: int) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}-{width}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def _no_sideways_scroll(page) -> None:
    over = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert over <= 0, f"{page.url} scrolls sideways by {over} px"


@pytest.fixture
def login(live_server, member):
    def do(page):
        page.goto(f"{live_server.url}/accounts/login/")
        page.fill("input[name=username]", member.username)
        page.fill("input[name=password]", "pw-for-tests-123")
        page.click("button[type=submit], input[type=submit]")
        page.wait_for_load_state("domcontentloaded")

    return do


@pytest.mark.parametrize("width", WIDTHS)
def test_pages_fit_the_width_and_keep_their_screenshots(browser, live_server, site, width):
    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30000)
    pages = {
        "home": "/",
        "galaxies": "/galaxies/",
        "galaxies-derived": "/galaxies/?col=pgc&col=type&col=consensus_inc&col=cnn_inc&col=axis_ratio_inc&col=fit_q&has_images=true",
        "galaxy": "/galaxies/44182/",
        "galaxy-no-image": "/galaxies/42038/",
        "search-not-found": "/galaxies/?q=NGC+4566",
        "compare": "/compare/",
        "releases": "/releases/",
        "jobs": "/jobs/",
        "zoo": "/zoo/",
        "login": "/accounts/login/",
    }
    for name, path in pages.items():
        page.goto(f"{live_server.url}{path}", wait_until="networkidle")
        _no_sideways_scroll(page)
        _shot(page, name, width)
    nav = page.locator(".site-nav")
    page.goto(f"{live_server.url}/")
    if width < 700:
        assert not nav.is_visible()
        page.click(".nav-toggle-label")
        assert nav.is_visible() and page.locator(".site-nav a", has_text="Compare").is_visible()
        _shot(page, "home-menu-open", width)
    else:
        assert nav.is_visible() and not page.locator(".nav-toggle-label").is_visible()
    assert page.locator(".site-nav a", has_text="Admin").count() == 0  # not for anonymous users
    page.goto(f"{live_server.url}/accounts/login/")
    assert page.inner_text(".brand") == settings.GALCAT_SITE_NAME
    context.close()


def test_search_examples_find_their_galaxies(page, live_server, site):
    for text, pgc in SEARCH_EXAMPLES.items():
        page.goto(f"{live_server.url}/galaxies/")
        page.fill("#search-q", text)
        page.click("#search-go")
        page.wait_for_url(f"**/galaxies/{pgc}/")
        assert page.locator("#galaxy-title").inner_text().startswith(f"PGC {pgc}")
    page.goto(f"{live_server.url}/galaxies/")
    page.fill("#search-q", "189.086 25.988")
    page.click("#search-go")
    page.wait_for_selector("#galaxy-table")
    assert page.locator("#galaxy-table tbody tr td a", has_text="42038").count() == 1
    page.goto(f"{live_server.url}/galaxies/?q=NGC+4566")
    note = page.inner_text("#name-not-found")
    assert "No galaxy called" in note and "NGC 4565" in note and "NGC 4567" in note


def test_galaxy_page_is_compact_with_labelled_plots_and_viewer_links(page, live_server, site):
    page.set_viewport_size({"width": 1400, "height": 900})
    page.goto(f"{live_server.url}/galaxies/44182/", wait_until="networkidle")
    links = page.inner_text("#external-links")
    for viewer in ("NED", "HyperLEDA", "SDSS", "Legacy Survey"):
        assert viewer in links
    tops = page.eval_on_selector_all("#galaxy-images img", "els => els.map(e => Math.round(e.getBoundingClientRect().top))")
    assert len(tops) == 4 and len(set(tops)) == 1  # the four bands side by side
    assert "No image, so no CNN prediction" in page.inner_text("#ml-panel") or page.locator("#ml-median").count() == 1
    page.goto(f"{live_server.url}/galaxies/42038/", wait_until="networkidle")
    assert "No image, so no CNN prediction" in page.inner_text("#ml-panel")
    page.goto(f"{live_server.url}/", wait_until="networkidle")
    page.wait_for_selector("#sky-map .main-svg")
    sky = page.inner_text("#sky-map")
    assert "galaxies per cell" in sky and "RA 180°" in sky and "Dec +30°" in sky
    page.goto(f"{live_server.url}/compare/", wait_until="networkidle")
    assert "N = 1" in page.inner_text("#stats-cnn-axis") and "RMS" in page.inner_text("#stats-cnn-axis")
    assert "No galaxy has both values yet" in page.inner_text("#plot-cnn-published") or "N = 1" in page.inner_text("#stats-cnn-published")
    assert page.locator("nav a", has_text="Compare").count() == 1


def test_filters_send_only_what_was_set(page, live_server, site):
    page.goto(f"{live_server.url}/galaxies/?has_images=true")
    page.click("details.filters summary") if not page.locator("#filter-form").is_visible() else None
    assert page.locator("select[name=has_cnn] option").all_inner_texts() == ["any", "yes", "no"]
    page.fill("input[name=consensus_inc_min]", "50")
    page.click("#filter-form button[type=submit]")
    page.wait_for_selector("#galaxy-table")
    query = page.url.split("?", 1)[1]
    assert sorted(query.split("&")) == ["consensus_inc_min=50", "has_images=true"], query
    assert page.locator("#galaxy-table tbody tr").count() == 1


def test_votable_download_with_derived_columns_parses_with_units(page, live_server, site):
    from tests.utils import read_votable

    page.goto(f"{live_server.url}/galaxies/?col=pgc&col=consensus_inc&col=cnn_inc&col=fit_q&col=fit_q_e&has_images=true")
    href = page.get_attribute("#download-votable", "href")
    r = page.request.get(f"{live_server.url}{href}")
    assert r.status == 200
    table = read_votable(r.body()).to_table()
    assert list(table["pgc"]) == [44182]
    assert str(table["consensus_inc"].unit) == "deg" and table["consensus_inc"][0] == 58.5
    assert str(table["cnn_inc"].unit) == "deg" and table["cnn_inc"][0] == pytest.approx(60.2)
    assert table["fit_q"][0] == pytest.approx(0.52)


def test_member_uploads_images_on_the_upload_page(page, live_server, site, login, shared_data):
    from catalog.models import Image

    login(page)
    page.goto(f"{live_server.url}/upload/?pgc=1844")
    _shot(page, "upload", 1280)
    page.set_input_files("input[name=files]", [str(shared_data / "sdss" / "pgc1844_g.png"), str(Path(settings.BASE_DIR) / "README.md")])
    page.select_option("select[name=band]", "g")
    page.select_option("select[name=orientation]", "major_horizontal")
    page.click("#upload-form button[type=submit]")
    page.wait_for_selector("#upload-results")
    text = page.inner_text("#upload-results")
    _shot(page, "upload-done", 1280)
    assert "stored" in text and "512×512 png" in text and "refused" in text
    img = Image.objects.get(galaxy_id=1844)
    assert (img.width, img.height, img.format, len(img.sha256)) == (512, 512, "png", 64)
