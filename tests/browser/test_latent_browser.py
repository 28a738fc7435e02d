"""The latent space in the browser, on the shared SDSS images: the galaxy page's strip of similar
galaxies and the latent map (hover shows the image, click opens the galaxy), at 1400 and 400 px.

Screenshots: var/test-artefacts/screenshots/latent-*-<width>.png (GALCAT_SCREENSHOTS overrides)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.conf import settings

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SHOTS = Path(os.environ.get("GALCAT_SCREENSHOTS", settings.BASE_DIR / "var" / "test-artefacts" / "screenshots"))
WIDTHS = (1400, 400)


@pytest.fixture
def embedded(transactional_db, shared_data, tmp_path):
    """The EDD table and the 40 SDSS images of the shared folder, embedded by a registered latent model."""
    from catalog.importers.images import import_images
    from catalog.importers.tables import import_catalog
    from catalog.models import Image
    from ml.latent_services import embed_and_store
    from ml.services import register_latent
    from tests.ml.latent_makers import latent_weights_for_tests

    import_catalog(shared_data / "edd_cf4_sample.txt", "edd")
    import_images(sorted((shared_data / "sdss").glob("pgc*")), survey="SDSS", orientation=Image.Orientation.MAJOR_HORIZONTAL)
    mv = register_latent(latent_weights_for_tests(tmp_path))
    out = embed_and_store(Image.objects.values_list("pk", flat=True), mv)
    assert out["stored"] == 40
    return mv


def _first_point(page) -> tuple[float, float]:
    """Page coordinates of the map's point nearest the plot's centre (clear of the mode bar and the hover box)."""
    return page.evaluate(
        """() => {
        const gd = document.getElementById("latent-map"), t = gd.data[gd.data.length - 1];
        const box = gd.querySelector(".nsewdrag").getBoundingClientRect(), xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
        let best = null;
        t.x.forEach((x, i) => {
            const px = box.left + xa.l2p(x), py = box.top + ya.l2p(t.y[i]);
            const d = Math.hypot(px - box.left - box.width / 2, py - box.top - box.height / 2);
            if (best === null || d < best[2]) best = [px, py, d];
        });
        return [best[0], best[1]];
    }"""
    )


def _shot(page, name: str, width: int) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}-{width}.png"), full_page=True)


@pytest.mark.parametrize("width", WIDTHS)
def test_similar_strip_and_latent_map(browser, live_server, embedded, width):
    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30000)
    errors = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)

    page.goto(f"{live_server.url}/galaxies/44182/", wait_until="networkidle")
    items = page.locator("#similar-strip li")
    assert items.count() == 8
    assert "PGC 44182" not in page.inner_text("#similar-strip")
    assert all(page.evaluate("Array.from(document.querySelectorAll('#similar-strip img')).map(i => i.complete && i.naturalWidth > 0)"))
    assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0
    page.locator("#similar-panel").scroll_into_view_if_needed()
    _shot(page, "latent-galaxy", width)
    first = page.locator("#similar-strip li .sim-pgc a").first
    target = first.inner_text()
    first.click()
    page.wait_for_load_state("domcontentloaded")
    assert page.locator("#galaxy-title").inner_text().startswith(target)

    page.goto(f"{live_server.url}/latent/map/?colour=outlier_score", wait_until="networkidle")
    page.wait_for_selector("#latent-map .main-svg")
    assert "40 images" in page.inner_text("#latent-map-note")
    assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0
    page.mouse.move(*_first_point(page))
    page.wait_for_selector("#latent-hover:not([hidden])")
    assert page.evaluate("document.getElementById('latent-hover-img').src").endswith((".png", ".jpg"))
    _shot(page, "latent-map", width)
    page.select_option("#colour", "vhel")
    page.wait_for_url("**colour=vhel")
    page.wait_for_selector("#latent-map .main-svg")
    x, y = _first_point(page)
    page.mouse.move(x, y)
    page.wait_for_selector("#latent-hover:not([hidden])")
    pgc = page.inner_text("#latent-hover-text").split()[1]
    page.mouse.click(x, y)
    page.wait_for_url(f"**/galaxies/{pgc}/")
    assert not errors, errors
    context.close()


@pytest.mark.parametrize("width", WIDTHS)
def test_curators_review_the_most_unusual(browser, live_server, embedded, curator, width):
    from ml.models import ImageEmbedding, OutlierVerdict

    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30000)
    page.goto(f"{live_server.url}/accounts/login/?next=/latent/outliers/")
    page.fill("input[name=username]", curator.username)
    page.fill("input[name=password]", "pw-for-tests-123")
    page.click("button[type=submit], input[type=submit]")
    page.wait_for_url("**/latent/outliers/")
    top = ImageEmbedding.objects.order_by("-outlier_score", "pk").first()
    first = page.locator("#outlier-list li.outlier").first
    assert first.get_attribute("id") == f"image-{top.image_id}"
    assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0
    _shot(page, "latent-outliers", width)
    first.locator("input[value=artefact]").check()
    first.locator("input[name=note]").fill("saturated star")
    first.locator("button[type=submit]").click()
    page.wait_for_url(f"**/latent/outliers/#image-{top.image_id}")
    assert "Verdict: artefact" in page.locator(f"#image-{top.image_id}").inner_text()
    v = OutlierVerdict.objects.get()
    assert (v.image_id, v.verdict, v.note, v.user_id) == (top.image_id, "artefact", "saturated star", curator.pk)
    v.delete()
    context.close()
