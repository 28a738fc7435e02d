"""Headless Chromium: a volunteer logs in, votes through both steps with the keyboard, and finds
the vote on the profile page."""

from __future__ import annotations

import pytest
from django.db import connections

from tests.factories import GalaxyFactory, UserFactory, make_image
from zoo.models import InclinationVote
from zoo.standards import ensure_rendered_standards

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

PASSWORD = "Edge-on-galaxy-9"


@pytest.fixture
def zoo_browser(page):
    """The shared headless Chromium page (tests/browser/conftest.py), with a longer timeout."""
    page.set_default_timeout(30000)
    yield page
    # Inside playwright's sync context Django's connection handler is a separate one (asgiref
    # Local follows the running event loop): close what the test body opened there, or the
    # test database cannot be dropped.
    connections.close_all()


def test_vote_with_the_keyboard_through_both_steps(zoo_browser, live_server, settings):
    settings.GALCAT_ZOO_CALIBRATION_RATE = 0
    ensure_rendered_standards(variants=1, size=64)
    user = UserFactory(username="kbd", password=PASSWORD)
    from core.roles import VOLUNTEER, grant

    grant(user, VOLUNTEER)
    galaxy = GalaxyFactory()
    make_image(galaxy)
    page = zoo_browser

    page.goto(f"{live_server.url}/accounts/login/?next=/zoo/")
    page.fill("input[name=username]", "kbd")
    page.fill("input[name=password]", PASSWORD)
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#strip .std")
    assert page.locator("#strip .std").count() == 9
    assert page.get_attribute("#zoo", "data-step") == "A"
    assert page.locator("#rendered-note").is_visible()
    # Step A: the target starts between 65 and 70 deg; two steps right: between 75 and 80.
    page.keyboard.press("d")
    page.keyboard.press("ArrowRight")
    assert "Between 75° and 80°" in page.inner_text("#zoo-result")
    page.keyboard.press("Enter")
    # Step B: 73..81 deg, 1 deg apart; the target starts between 77 and 78, one step left.
    assert page.get_attribute("#zoo", "data-step") == "B"
    labels = page.locator("#strip .std span").all_inner_texts()
    assert labels == [f"{d}°" for d in range(73, 82)]
    page.keyboard.press("a")
    assert "Inclination 76.5°" in page.inner_text("#zoo-result")
    page.check("input[name=not_sure]")
    page.keyboard.press("Enter")
    page.wait_for_selector(".messages li.success")
    assert f"Vote on PGC {galaxy.pgc} recorded: 76.5 deg" in page.inner_text(".messages")

    vote = InclinationVote.objects.get(user=user)
    assert vote.galaxy_id == galaxy.pgc and vote.inc == 76.5 and vote.not_sure and vote.checkout_time is not None
    assert vote.source == InclinationVote.Source.WEB

    page.goto(f"{live_server.url}/accounts/profile/")
    row = page.locator(f'tr.vote-row[data-pgc="{galaxy.pgc}"]')
    assert row.count() == 1 and "76.5" in row.inner_text() and "not sure" in row.inner_text()


def test_face_on_needs_a_second_enter(zoo_browser, live_server, settings):
    settings.GALCAT_ZOO_CALIBRATION_RATE = 0
    ensure_rendered_standards(variants=1, size=64)
    user = UserFactory(username="faceon", password=PASSWORD)
    from core.roles import VOLUNTEER, grant

    grant(user, VOLUNTEER)
    galaxy = GalaxyFactory()
    make_image(galaxy)
    page = zoo_browser
    page.goto(f"{live_server.url}/accounts/login/?next=/zoo/")
    page.fill("input[name=username]", "faceon")
    page.fill("input[name=password]", PASSWORD)
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#strip .std")
    for _ in range(10):
        page.keyboard.press("a")  # to the leftmost slot: more face-on than 45 deg
    page.keyboard.press("Enter")
    assert "once more" in page.inner_text("#zoo-result")
    assert not InclinationVote.objects.filter(user=user).exists()  # one Enter submits nothing
    page.keyboard.press("d")  # moving away disarms it
    page.keyboard.press("a")
    page.keyboard.press("Enter")
    assert not InclinationVote.objects.filter(user=user).exists()
    page.keyboard.press("Enter")
    page.wait_for_selector(".messages li.success")
    assert "face-on" in page.inner_text(".messages")
    vote = InclinationVote.objects.get(user=user)
    assert vote.face_on and vote.inc is None


def test_target_and_standards_framed_alike(zoo_browser, live_server, settings, shared_data):
    """A real SDSS target (PGC 2813, small in its stored frame): on the page its major axis spans
    the standards' share of their panels, and both face-on ways need a confirmation. Screenshots
    zoo-vote-1400.png and zoo-vote-400.png (GALCAT_SCREENSHOTS or var/test-artefacts/screenshots)."""
    import io
    import time

    import numpy as np
    from PIL import Image as PILImage

    from catalog.importers.images import import_images
    from catalog.models import Image
    from core.roles import VOLUNTEER, grant
    from tests.browser.test_site_browser import _no_sideways_scroll, _shot
    from zoo.framing import FRAME_FRACTION, FRAME_SIZE, measure

    settings.GALCAT_ZOO_CALIBRATION_RATE = 0
    ensure_rendered_standards(variants=1, size=32)
    import_images([shared_data / "sdss" / "pgc2813_g.png"], survey="SDSS", orientation=Image.Orientation.MAJOR_HORIZONTAL)
    user = UserFactory(username="framer", password=PASSWORD)
    grant(user, VOLUNTEER)
    page = zoo_browser
    page.goto(f"{live_server.url}/accounts/login/?next=/zoo/")
    page.fill("input[name=username]", "framer")
    page.fill("input[name=password]", PASSWORD)
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#strip .std img")
    for _ in range(300):  # the framed target and the renders (the page's CSP forbids wait_for_function's eval)
        if page.evaluate("() => Array.from(document.images).every((i) => i.complete && i.naturalWidth > 0)"):
            break
        time.sleep(0.2)
    assert "spans 60% of the panel" in page.inner_text("#frame-note")

    def fraction(src: str) -> float:
        body = page.request.get(f"{live_server.url}{src}").body()
        return measure(np.asarray(PILImage.open(io.BytesIO(body)), dtype=np.float64), psf=False).fraction(FRAME_SIZE)

    target = fraction(page.get_attribute("#target-img", "src"))
    standards = [
        fraction(src) for src in page.locator("#strip .std img").evaluate_all("(els) => els.map((e) => e.getAttribute('src'))")[:3]
    ]
    assert abs(target - FRAME_FRACTION) < 0.05 and all(abs(s - target) < 0.05 for s in standards), (target, standards)
    # The face-on button arms; only Confirm submits.
    page.click("#btn-faceon")
    assert page.get_attribute("#zoo", "data-slot") == "0" and "once more" in page.inner_text("#zoo-result")
    assert not InclinationVote.objects.filter(user=user).exists()
    for width in (1400, 400):
        page.set_viewport_size({"width": width, "height": 900})
        _no_sideways_scroll(page)
        _shot(page, "zoo-vote", width)
    page.click("#btn-confirm")
    page.wait_for_selector(".messages li.success")
    assert InclinationVote.objects.get(user=user).face_on
