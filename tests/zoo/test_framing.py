"""The voting page compares like with like: the target and the standards framed at one scale (the
major axis spanning the same share of the panel), rendered standards with the target's PSF and
noise. Measured on the real SDSS images of the shared sample and through the served PNGs."""

from __future__ import annotations

import csv
import io
import json
import re

import numpy as np
import pytest
from PIL import Image as PILImage

from tests.factories import GalaxyFactory
from zoo.frames import look_params
from zoo.framing import FRAME_FRACTION, FRAME_SIZE, FWHM_PER_SIGMA, Look, frame_target, measure, render_standard
from zoo.standards import ensure_rendered_standards

FRACTION_TOLERANCE = 0.05  # of the panel width


def sdss(shared_data, pgc: str, band: str) -> np.ndarray:
    return np.asarray(PILImage.open(shared_data / "sdss" / f"pgc{pgc}_{band}.png").convert("L"), dtype=np.float64)


def labels(shared_data) -> dict[str, float]:
    rows = csv.DictReader((shared_data / "sdss" / "labels.csv").open())
    return {r["pgc"]: float(r["inc"] or 70) for r in rows}


def test_targets_and_their_standards_span_the_same_share_of_the_panel(shared_data):
    """Every g image of the sample: the original's major axis spans 29-78% of its frame; served,
    target and rendered standard (at the galaxy's EDD inclination, with its look) agree."""
    spans = []
    for pgc, inc in labels(shared_data).items():
        grey = sdss(shared_data, pgc, "g")
        framed, look, original = frame_target(grey)
        target = measure(framed, psf=False).fraction(FRAME_SIZE)
        standard = measure(render_standard(inc, look, seed=1), psf=False).fraction(FRAME_SIZE)
        spans.append(original.fraction(grey.shape[1]))
        assert framed.shape == (FRAME_SIZE, FRAME_SIZE)
        assert abs(target - FRAME_FRACTION) < FRACTION_TOLERANCE, (pgc, target)
        assert abs(standard - target) < FRACTION_TOLERANCE, (pgc, standard, target)
    assert min(spans) < FRAME_FRACTION - 0.2 and max(spans) > FRAME_FRACTION + 0.1  # as stored they differ widely


@pytest.mark.parametrize("pgc,band", [("42530", "r"), ("44182", "g"), ("1844", "i"), ("2813", "i")])
def test_standards_carry_the_target_noise_and_psf(shared_data, pgc, band):
    _, look, _ = frame_target(sdss(shared_data, pgc, band))
    m = measure(render_standard(70.0, look, seed=3))
    assert m.noise == pytest.approx(look.noise, rel=0.1)
    assert m.sky == pytest.approx(look.sky, abs=2)
    if m.psf_fwhm is not None:  # its field stars, measured as the target's are
        assert m.psf_fwhm == pytest.approx(look.psf_fwhm, rel=0.2)


def test_noisier_and_blurrier_targets_get_noisier_and_blurrier_standards():
    sharp = Look(sky=235, noise=3, ink=20, psf_fwhm=1.5)
    soft = Look(sky=235, noise=20, ink=20, psf_fwhm=5.0)
    a, b = measure(render_standard(85.0, sharp)), measure(render_standard(85.0, soft))
    assert b.noise > 4 * a.noise
    # The edge-on disk's thickness on the minor axis grows with the PSF.
    thick = [(np.asarray(render_standard(89.0, lk, stars=False), float)[:, FRAME_SIZE // 2] < lk.sky - 60).sum() for lk in (sharp, soft)]
    assert thick[1] > thick[0]


def test_psf_estimate_recovers_gaussian_stars():
    rng = np.random.default_rng(5)
    size, fwhm = 256, 3.2
    yy, xx = np.mgrid[0:size, 0:size]
    signal = 150 * np.exp(-(((xx - 128) / 40.0) ** 2 + ((yy - 128) / 12.0) ** 2))  # a galaxy in the middle
    s = fwhm / FWHM_PER_SIGMA
    for x, y in [(30, 30), (220, 40), (40, 220), (200, 210), (128, 30), (128, 230)]:
        signal += 120 * np.exp(-((xx - x - 0.3) ** 2 + (yy - y + 0.2) ** 2) / (2 * s * s))
    grey = np.clip(235 - signal + rng.normal(0, 4, signal.shape), 0, 255)
    m = measure(grey)
    assert m.stars >= 5 and m.psf_fwhm == pytest.approx(fwhm, rel=0.1)
    assert m.noise == pytest.approx(4, rel=0.15) and m.dark_on_light


@pytest.mark.django_db
def test_the_page_serves_framed_target_and_matching_standards(client, volunteer, shared_data, settings):
    from catalog.importers.images import decode_image, store_image_bytes
    from catalog.models import Image

    settings.GALCAT_ZOO_CALIBRATION_RATE = 0
    ensure_rendered_standards(variants=1, size=32)
    data = (shared_data / "sdss" / "pgc2813_g.png").read_bytes()
    decoded = decode_image(data, "pgc2813_g.png")
    sha, name = store_image_bytes(data, decoded)
    g = GalaxyFactory(pgc=2813)
    img = Image.objects.create(galaxy=g, band="g", file=name, format="png", width=512, height=512, channels=1, sha256=sha)

    assert client.get(f"/zoo/target/{img.pk}.png").status_code == 302  # login first
    client.force_login(volunteer)
    html = client.get("/zoo/").content.decode()
    assert f'src="/zoo/target/{img.pk}.png"' in html and "spans 60% of the panel" in html
    payload = json.loads(re.search(r'<script id="zoo-data" type="application/json">(.*?)</script>', html, re.S).group(1))
    target = np.asarray(PILImage.open(io.BytesIO(client.get(f"/zoo/target/{img.pk}.png").content)), dtype=np.float64)
    tm = measure(target)
    url = payload["standards"]["60"][0]["url"]
    r = client.get(url)
    assert r.status_code == 200 and r["Content-Type"] == "image/png"
    sm = measure(np.asarray(PILImage.open(io.BytesIO(r.content)), dtype=np.float64))
    assert abs(tm.fraction(FRAME_SIZE) - FRAME_FRACTION) < FRACTION_TOLERANCE
    assert abs(sm.fraction(FRAME_SIZE) - tm.fraction(FRAME_SIZE)) < FRACTION_TOLERANCE
    assert sm.noise == pytest.approx(tm.noise, rel=0.15)
    # The URL carries the target's look; a look out of range is refused.
    _, look, _ = frame_target(sdss(shared_data, "2813", "g"))
    assert all(f"{k}={v}" in url for k, v in look_params(look).items())
    assert client.get("/zoo/standards/60/0.png", {"sky": "900", "noise": "3", "ink": "0", "psf": "2"}).status_code == 400
    assert client.get("/zoo/standards/30/0.png").status_code == 404
    img.is_public = False
    img.save()
    assert client.get(f"/zoo/target/{img.pk}.png").status_code == 404
