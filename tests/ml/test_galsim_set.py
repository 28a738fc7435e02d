"""The independent GalSim test set of evaluate_inclination: what it draws, and what happens
without GalSim."""

from __future__ import annotations

import io
import sys

import numpy as np
import pytest
from django.core.management import call_command

from ml.evaluation import GALSIM_SEED, GALSIM_SPLITS, GalSimMissing, galsim_draws, render_galsim, split_stats
from ml.inference import axis_ratio_from_moments
from ml.preprocess import is_inverted, to_grey01
from tests.ml.makers import make_weights


@pytest.fixture
def weights(tmp_path):
    return make_weights(tmp_path / "w", members=2)


def test_galsim_images_are_deterministic_inclined_disks():
    pytest.importorskip("galsim")
    images = [render_galsim(GALSIM_SEED, k) for k in range(12)]
    again, inc0 = render_galsim(GALSIM_SEED, 0)
    assert np.array_equal(again, images[0][0]) and inc0 == images[0][1] == galsim_draws(GALSIM_SEED, 0)["inc"]
    assert not np.array_equal(render_galsim(GALSIM_SEED + 1, 0)[0], images[0][0])
    incs = np.array([inc for _, inc in images])
    assert images[0][0].shape == (128, 128) and images[0][0].dtype == np.uint8
    assert ((incs >= 45) & (incs <= 90)).all()
    # More inclined disks look flatter; inverted ones (dark on light) are recognised as such.
    q = np.array([axis_ratio_from_moments(im) for im, _ in images])
    assert np.corrcoef(np.cos(np.radians(incs)), q)[0, 1] > 0.8
    assert any(is_inverted(to_grey01(im)) for im, _ in images) and not all(is_inverted(to_grey01(im)) for im, _ in images)


def test_without_galsim_the_command_says_how_to_install_it(monkeypatch, weights):
    monkeypatch.setitem(sys.modules, "galsim", None)  # import galsim now raises ImportError
    with pytest.raises(GalSimMissing, match="pip install"):
        render_galsim(1, 0)
    out, err = io.StringIO(), io.StringIO()
    call_command(
        "evaluate_inclination",
        "--weights",
        str(weights),
        "--synthetic",
        "0",
        "--galsim",
        "5",
        "--sdss",
        "/nonexistent",
        stdout=out,
        stderr=err,
    )
    assert "GalSim is not installed" in err.getvalue() and "pip install -c <(echo torch==2.13.0) galsim" in err.getvalue()
    assert "GalSim rows are skipped" in err.getvalue() and "Independent renderer" not in out.getvalue()


@pytest.mark.slow
def test_command_reports_the_galsim_rows(weights):
    pytest.importorskip("galsim")
    out = io.StringIO()
    call_command(
        "evaluate_inclination",
        "--weights",
        str(weights),
        "--synthetic",
        "0",
        "--galsim",
        "6",
        "--sdss",
        "/nonexistent",
        stdout=out,
        stderr=io.StringIO(),
    )
    text = out.getvalue()
    assert f"Independent renderer (GalSim), seed {GALSIM_SEED}: 6 inclined disks" in text and "ensemble" in text
    assert "GalSim residuals of the ensemble" in text and "disk thickness hz/h" in text
    assert "(q0, inclination) cell (hz/h for q0)" in text


def test_galsim_draws_are_deterministic_and_within_their_ranges():
    draws = [galsim_draws(GALSIM_SEED, k) for k in range(200)]
    assert draws[7] == galsim_draws(GALSIM_SEED, 7) and draws[7] != galsim_draws(GALSIM_SEED + 1, 7)
    thick = np.array([d["hz"] / d["h"] for d in draws])
    assert thick.min() >= 0.08 and thick.max() <= 0.3
    with_bulge = [d for d in draws if d["bt"] > 0]
    assert 0.6 < len(with_bulge) / len(draws) < 0.9
    assert all("bulge_n" in d for d in with_bulge) and not any("bulge_n" in d for d in draws if d["bt"] == 0)
    assert {d["psf"] for d in draws} == {"kolmogorov", "moffat"} and all(1 <= d["psf_fwhm"] <= 3 for d in draws)


def test_galsim_splits_partition_the_set_in_each_group():
    draws = [galsim_draws(GALSIM_SEED, k) for k in range(120)]
    true = np.array([d["inc"] for d in draws])
    # an estimator that overestimates thin disks only
    pred = true + np.array([2.0 if d["hz"] / d["h"] < 0.15 else 0.0 for d in draws])
    rows = split_stats(pred, true, draws, GALSIM_SPLITS)
    assert len(rows) == len(GALSIM_SPLITS)
    for group in {r["group"] for r in rows}:
        assert sum(r["n"] for r in rows if r["group"] == group) == 120
    thin, thick = rows[0], rows[2]
    assert thin["bias"] == pytest.approx(2.0) and thick["bias"] == pytest.approx(0.0) and thin["rms"] == pytest.approx(2.0)
