"""Synthetic generator: Hubble axis ratios, labels, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from ml.synth import SynthConfig, apparent_axis_ratio, bayes_inclination_from_axis_ratio, inclination_from_axis_ratio, render_one, sersic_bn
from ml.synth.render import Q0_RANGE, _disk_galaxy, _grid


def _moment_q(img: np.ndarray) -> float:
    y, x = np.mgrid[0 : img.shape[0], 0 : img.shape[1]].astype(float)
    s = img.sum()
    mx, my = (img * x).sum() / s, (img * y).sum() / s
    cxx = (img * (x - mx) ** 2).sum() / s
    cyy = (img * (y - my) ** 2).sum() / s
    cxy = (img * (x - mx) * (y - my)).sum() / s
    ev = np.linalg.eigvalsh(np.array([[cxx, cxy], [cxy, cyy]]))
    return float(np.sqrt(ev[0] / ev[1]))


def test_hubble_relation_endpoints():
    assert apparent_axis_ratio(0.0, 0.2) == pytest.approx(1.0)
    assert apparent_axis_ratio(90.0, 0.2) == pytest.approx(0.2)
    # q^2 = cos^2 i (1 - q0^2) + q0^2 at 60 deg, q0 = 0.3
    assert apparent_axis_ratio(60.0, 0.3) == pytest.approx(np.sqrt(0.25 * 0.91 + 0.09))
    for inc in (45.0, 60.0, 75.0, 89.0):
        q = apparent_axis_ratio(inc, 0.25)
        assert inclination_from_axis_ratio(q, 0.25) == pytest.approx(inc, abs=1e-6)
    assert inclination_from_axis_ratio(0.1, 0.3) == 90.0


def test_sersic_bn_matches_half_light_definition():
    from scipy.special import gammainc

    for n in (1.0, 2.5, 4.0):
        # the incomplete gamma function P(2n, b_n) = 1/2 defines b_n
        assert gammainc(2 * n, sersic_bn(n)) == pytest.approx(0.5, abs=1e-4)


@pytest.mark.parametrize("inc", [50.0, 65.0, 80.0, 88.0])
def test_rendered_disk_axis_ratio_matches_inclination_and_q0(inc):
    x, y = _grid(128)
    rng = np.random.default_rng(inc.__hash__() % 1000)
    params, _, disk, *_ = _disk_galaxy(rng, x, y, inc, scale=0.8)
    q_expected = apparent_axis_ratio(inc, params["q0"])
    assert params["q"] == pytest.approx(q_expected)
    assert _moment_q(disk) == pytest.approx(q_expected, rel=0.03)


def test_render_is_deterministic_from_seed_and_index():
    a, la = render_one(7, 3)
    b, lb = render_one(7, 3)
    c, _ = render_one(8, 3)
    assert a.dtype == np.uint8 and a.shape[:2] == (128, 128)
    assert np.array_equal(a, b)
    assert la["inc"] == lb["inc"] or (np.isnan(la["inc"]) and np.isnan(lb["inc"]))
    assert a.shape != c.shape or not np.array_equal(a, c)


def test_labels_cover_disks_faceon_and_rejects():
    labels = [render_one(21, k)[1] for k in range(60)]
    disks = [lab for lab in labels if lab["kind"] == "disk"]
    assert disks and all(45.0 <= lab["inc"] <= 90.0 and lab["reject"] == 0 for lab in disks)
    assert all(lab["reject"] == 1 for lab in labels if lab["kind"] != "disk")
    assert all(lab["inc"] < 45.0 for lab in labels if lab["kind"] == "faceon")
    assert any(lab["reject"] == 1 for lab in labels)


def test_grey_inverted_and_colour_modes():
    grey = SynthConfig(p_colour=0.0, p_invert=1.0)
    im, lab = render_one(3, 0, grey)
    assert im.ndim == 2 and lab["inverted"]
    assert np.median(im) > 128  # light sky, dark galaxy
    colour = SynthConfig(p_colour=1.0)
    im, lab = render_one(3, 0, colour)
    assert im.shape == (128, 128, 3) and lab["colour"]


# ---------------------------------------------------------------------------------------------
# the widened renderer (SynthConfig(wide=p), ml.synth.wide)


def test_wide_share_zero_is_the_classic_renderer_and_wide_images_are_deterministic():
    for k in range(6):
        a, la = render_one(11, k)
        b, lb = render_one(11, k, SynthConfig(wide=0.0))
        assert np.array_equal(a, b) and "disk_model" not in la
    wide = SynthConfig(wide=1.0)
    w1, l1 = render_one(11, 2, wide)
    w2, l2 = render_one(11, 2, wide)
    assert np.array_equal(w1, w2) and l1.keys() == l2.keys()
    # the classic draws (kind, inclination) are kept; the picture is not
    c, lc = render_one(11, 2)
    assert l1["kind"] == lc["kind"] and (l1["inc"] == lc["inc"] or np.isnan(lc["inc"]))
    assert not np.array_equal(w1, c)


def test_wide_share_and_families():
    labels = [render_one(13, k, SynthConfig(wide=0.5))[1] for k in range(120)]
    disks = [lab for lab in labels if lab["kind"] == "disk"]
    widened = [lab for lab in disks if "disk_model" in lab]
    assert 0.3 < len(widened) / len(disks) < 0.7
    assert {lab["disk_model"] for lab in widened} == {"3d", "sersic"}
    assert len({lab["psf"] for lab in widened}) >= 3


def test_disk3d_projection_geometry():
    from ml.synth.wide import disk3d, moment_axis_ratio, vertical_transform

    k = np.linspace(0, 3, 7)
    for kind in ("sech2", "sech", "gauss"):
        assert vertical_transform(kind, k, 2.0)[0] == pytest.approx(1.0)
        assert np.all(np.diff(vertical_transform(kind, k, 2.0)) < 0)
    with pytest.raises(ValueError):
        vertical_transform("box", k, 1.0)
    thin = [dict(h=8.0, nu=0.5, z0=0.01, vertical="sech2", flux=1.0)]  # drawn MIN_Z0_PX thick
    thick = [dict(h=8.0, nu=0.5, z0=6.0, vertical="sech2", flux=1.0)]
    img = disk3d(128, 60.0, 0.0, 0.0, 0.0, thin)
    assert img.sum() == pytest.approx(1.0, rel=0.01)
    # a thin disk's moment axis ratio is cos i; thickness rounds the edge-on view
    assert moment_axis_ratio(img) == pytest.approx(0.5, abs=0.03)
    edge_thin = moment_axis_ratio(disk3d(128, 90.0, 0.0, 0.0, 0.0, thin))
    assert 0.02 < edge_thin < moment_axis_ratio(disk3d(128, 85.0, 0.0, 0.0, 0.0, thin)) < 0.12
    assert moment_axis_ratio(disk3d(128, 90.0, 0.0, 0.0, 0.0, thick)) > 2 * edge_thin
    # the position angle turns the major axis and the offset moves the centre (rows are y)
    turned = disk3d(128, 75.0, np.pi / 2, 5.0, -3.0, thick)
    y, x = np.mgrid[0:128, 0:128]
    assert (turned * x).sum() / turned.sum() == pytest.approx(63.5 + 5.0, abs=0.05)
    assert (turned * y).sum() / turned.sum() == pytest.approx(63.5 - 3.0, abs=0.05)
    assert ((turned * (y - 60.5) ** 2).sum()) > 3 * ((turned * (x - 68.5) ** 2).sum())


def test_a_sub_pixel_disk_seen_edge_on_is_sampled_without_ringing(monkeypatch):
    """The folded spectrum gives the pixel values of the continuous disk: a reference folded over
    many more aliases agrees, and no flux rings out far from the mid-plane."""
    from ml.synth import wide

    thin = [dict(h=8.0, nu=0.5, z0=wide.MIN_Z0_PX, vertical="sech2", flux=1.0)]
    img = wide.disk3d(128, 90.0, 0.0, 0.3, 0.2, thin)
    monkeypatch.setattr(wide, "FOLD", 7)
    monkeypatch.setattr(wide, "ALIAS_FLOOR", 0.0)
    ref = wide.disk3d(128, 90.0, 0.0, 0.3, 0.2, thin)
    assert np.abs(img - ref).max() < 1e-4 * ref.max()
    rows = img.sum(axis=1)
    assert rows[:54].sum() + rows[74:].sum() < 1e-4 * rows.sum()
    monkeypatch.setattr(wide, "FOLD", 0)
    unfolded = wide.disk3d(128, 90.0, 0.0, 0.3, 0.2, thin)
    assert np.abs(unfolded - ref).max() > 10 * np.abs(img - ref).max()


def test_the_bayes_axis_ratio_inclination_beats_every_constant_q0_on_its_prior():
    rng = np.random.default_rng(4)
    inc, q0 = rng.uniform(45.0, 90.0, 4000), rng.uniform(*Q0_RANGE, 4000)
    q = apparent_axis_ratio(inc, q0)
    bayes = bayes_inclination_from_axis_ratio(q)
    rms = float(np.sqrt(np.mean((bayes - inc) ** 2)))
    best_constant = min(float(np.sqrt(np.mean((inclination_from_axis_ratio(q, c) - inc) ** 2))) for c in np.arange(0.1, 0.31, 0.01))
    assert rms < 0.9 * best_constant and abs(float(np.mean(bayes - inc))) < 0.15


def test_the_bayes_axis_ratio_inclination_is_hubbles_for_a_known_thickness_and_nan_where_impossible():
    q = np.array([0.3, 0.5, 0.65])  # all inside 45-90 deg
    got = bayes_inclination_from_axis_ratio(q, (0.2, 0.2001), step=0.001)
    assert np.allclose(got, inclination_from_axis_ratio(q, 0.2), atol=0.05)
    assert np.isnan(bayes_inclination_from_axis_ratio(np.array([0.05]))[0])  # thinner than any disk drawn, even edge-on
