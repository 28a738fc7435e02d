"""Preprocessing, ensemble loading (sha256), prediction summaries, predict_inclination on the shared SDSS files."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from ml.inference import DEFAULT_WEIGHTS_DIR, Ensemble, WeightsChecksumError, axis_ratio_from_moments
from ml.preprocess import is_inverted, load_image_bytes, preprocess
from ml.synth import SynthConfig, apparent_axis_ratio, render_one
from tests.ml.makers import make_weights


@pytest.fixture
def weights(tmp_path):
    return make_weights(tmp_path / "w", members=2)


def test_preprocess_undoes_inversion_and_handles_colour_and_fits():
    im, _ = render_one(4, 1, SynthConfig(p_colour=0.0, p_invert=1.0))
    assert is_inverted(im / 255.0)
    x = preprocess(im)
    y = preprocess(255 - im)
    assert x.shape == (1, 128, 128) and x.dtype == np.float32
    assert np.allclose(x, y, atol=1e-5)  # inverted or not: the same network input
    colour, _ = render_one(4, 2, SynthConfig(p_colour=1.0))
    assert preprocess(colour).shape == (1, 128, 128)
    big = np.kron(255 - im, np.ones((4, 4), dtype=np.uint8))  # 512x512 like the shared cutouts
    assert preprocess(big).shape == (1, 128, 128)
    fits_like = np.random.default_rng(0).normal(0, 1, (200, 300)).astype(np.float32)
    assert np.isfinite(preprocess(fits_like)).all()


def test_load_image_bytes_rejects_garbage():
    with pytest.raises(ValueError, match="empty"):
        load_image_bytes(b"", "a.png")
    with pytest.raises(ValueError, match="not a readable"):
        load_image_bytes(b"hello world, not an image", "a.png")


def test_moment_axis_ratio_of_a_clean_disk():
    from ml.synth.render import _disk_galaxy, _grid

    x, y = _grid(128)
    params, _, disk, *_ = _disk_galaxy(np.random.default_rng(3), x, y, 70.0, 0.9)
    img = (255 * disk / disk.max()).astype(np.uint8)
    q = axis_ratio_from_moments(img)
    assert q == pytest.approx(apparent_axis_ratio(70.0, params["q0"]), abs=0.06)


def test_ensemble_loads_and_summarises(weights):
    ens = Ensemble.load(weights, device="cpu")
    assert ens.names == ["member0", "member1"]
    x = np.stack([preprocess(render_one(1, k)[0]) for k in range(3)])
    res = ens.predict_arrays(x, tta=True)
    assert res["per_member"].shape == (3, 2)
    assert res["passes"].shape == (3, 8)  # 2 members x 4 flips
    assert np.all((res["median"] >= 45) & (res["median"] <= 90))
    assert np.allclose(res["std"], res["passes"].std(1))
    assert np.all((res["reject_likelihood"] >= 0) & (res["reject_likelihood"] <= 1))
    mc = ens.predict_arrays(x[:1], tta=False, mc_dropout=3)
    assert mc["passes"].shape == (1, 6)


@pytest.mark.slow
@pytest.mark.skipif(not (shutil.which("c++") or shutil.which("g++")), reason="torch.compile on CPU needs a C++ compiler")
def test_compiled_ensemble_predicts_like_the_eager_one(tmp_path):
    weights = make_weights(tmp_path / "one", members=1)
    x = np.stack([preprocess(render_one(2, k)[0]) for k in range(3)])
    eager = Ensemble.load(weights, device="cpu").predict_arrays(x, tta=False)
    compiled = Ensemble.load(weights, device="cpu", compile=True)
    assert compiled.runners is not None and compiled.runners[0] is not compiled.models[0]
    res = compiled.predict_arrays(x, tta=False)
    assert np.allclose(res["passes"], eager["passes"], atol=1e-3)
    assert np.allclose(res["reject_likelihood"], eager["reject_likelihood"], atol=1e-4)
    # MC dropout runs the eager member (dropout on), so its passes differ from each other
    mc = compiled.predict_arrays(x[:1], tta=False, mc_dropout=4)
    assert mc["passes"].shape == (1, 4) and mc["passes"].std() > 0


def test_wrong_sha256_refuses_to_load(weights):
    manifest = json.loads((weights / "ensemble.json").read_text())
    manifest["members"][1]["sha256"] = "0" * 64
    (weights / "ensemble.json").write_text(json.dumps(manifest))
    with pytest.raises(WeightsChecksumError, match="refusing to load"):
        Ensemble.load(weights, device="cpu")


def test_tampered_weights_file_refuses_to_load(weights):
    with open(weights / "member0.pt", "ab") as fh:
        fh.write(b"tampered")
    with pytest.raises(WeightsChecksumError):
        Ensemble.load(weights, device="cpu")
    with pytest.raises(WeightsChecksumError):
        Ensemble.load(weights, device="cpu", expected_sha256={"member0.pt": "f" * 64})


def test_predict_inclination_on_shared_sdss_files(shared_data, weights, tmp_path):
    files = sorted(str(p) for p in (shared_data / "sdss").glob("pgc*_*"))
    assert len(files) == 40
    out = tmp_path / "pred.csv"
    call_command("predict_inclination", *files, "--out", str(out), "--weights", str(weights))
    rows = list(csv.DictReader(open(out)))
    assert [r["file"] for r in rows] == files
    assert list(rows[0]) == ["file", "inc_median", "inc_mean", "inc_std", "reject_likelihood"]
    for r in rows:
        assert 45.0 <= float(r["inc_median"]) <= 90.0
        assert float(r["inc_std"]) >= 0.0
        assert 0.0 <= float(r["reject_likelihood"]) <= 1.0


def test_predict_inclination_with_shipped_weights(shared_data, capsys):
    if not (DEFAULT_WEIGHTS_DIR / "ensemble.json").exists():
        pytest.skip("no shipped weights")
    files = [str(shared_data / "sdss" / "pgc5440_r.png"), str(shared_data / "sdss" / "pgc1844_gri.jpg")]
    call_command("predict_inclination", *files)
    rows = list(csv.DictReader(capsys.readouterr().out.splitlines()))
    assert len(rows) == 2 and all(45 <= float(r["inc_median"]) <= 90 for r in rows)


def test_predict_inclination_bad_input(tmp_path, weights):
    with pytest.raises(CommandError, match="no such file"):
        call_command("predict_inclination", str(tmp_path / "missing.png"), "--weights", str(weights))
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(CommandError, match="not a readable"):
        call_command("predict_inclination", str(bad), "--weights", str(weights))


def test_moment_rotation_makes_the_major_axis_horizontal():
    from scipy import ndimage

    from ml.preprocess import moment_angle
    from ml.synth.render import _disk_galaxy, _grid

    x, y = _grid(128)
    _, _, disk, *_ = _disk_galaxy(np.random.default_rng(5), x, y, 75.0, 0.8)
    img = (255 * disk / disk.max()).astype(np.uint8)
    tilted = ndimage.rotate(img, 35.0, reshape=False, order=1)
    assert abs(abs(moment_angle(tilted / 255.0)) - 35.0) < 3.0
    straight = preprocess(tilted, rotate=True)[0]
    assert abs(moment_angle(straight)) < 3.0
