"""The outlier score's artefact part (ml.latent.artefacts, fit_latent_score) and the batched
display values of the latent preprocessing (equal to ml.preprocess.preprocess up to float
rounding)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from django.core.management import call_command

from catalog.models import Image
from ml.latent import load_latent
from ml.latent.anomalies import inject, normal_config
from ml.latent.artefacts import FEATURES, artefact_features, artefact_part, expected_top, fit_combination, fit_scales
from ml.latent.data import _pool2, latent_inputs
from ml.latent.density import auroc
from ml.latent_services import latent_model_for, latent_sweep
from ml.models import ImageEmbedding, ModelVersion
from ml.preprocess import display_grey, display_grey_many, load_image_file, preprocess
from ml.services import read_image_field, register_latent
from ml.synth import SynthConfig, render_one
from ml.weights_files import sha256_file
from tests.factories import GalaxyFactory, make_image
from tests.ml.latent_makers import make_latent_weights


def _odd_images() -> list[np.ndarray]:
    """Images off the fast path or on its edge cases: not a multiple of 128, RGBA, float, 16-bit,
    a median exactly on the inversion boundary, and a non-square frame."""
    rng = np.random.default_rng(4)
    tie = np.where(np.arange(256 * 256).reshape(256, 256) % 2 == 0, 127, 128).astype(np.uint8)
    return [
        (rng.random((300, 260)) * 255).astype(np.uint8),
        (rng.random((256, 256, 4)) * 255).astype(np.uint8),
        rng.normal(0, 1, (140, 140)).astype(np.float32),
        (rng.random((256, 256)) * 65535).astype(np.uint16),
        tie,
        (rng.random((384, 256, 3)) * 255).astype(np.uint8),
    ]


def test_batched_display_values_match_preprocess(shared_data):
    """The latent inputs by integer block sums equal the CNN's preprocessing averaged over 2x2
    blocks up to float rounding, on the SDSS files (512 px grey PNG and gri JPEG), synthetic 128 px
    frames (grey, inverted, gri) and images that take the one-by-one path."""
    files = sorted((shared_data / "sdss").glob("pgc*_*"))
    images = [load_image_file(str(f)) for f in files]
    images += [render_one(21, k, SynthConfig(p_colour=0.5))[0] for k in range(24)] + _odd_images()
    ref_grey = np.stack([display_grey(im) for im in images])
    ref = np.stack([_pool2(preprocess(im)) for im in images])
    assert np.abs(display_grey_many(images) - ref_grey).max() < 1e-6
    x, grey = latent_inputs(images)
    assert x.shape == (len(images), 1, 64, 64) and x.dtype == np.float32
    assert np.abs(x - ref).max() < 1e-5
    assert np.abs(grey - ref_grey).max() < 1e-6
    x2, grey2 = latent_inputs(images * 3, workers=2)  # threads split the list, same values
    assert np.array_equal(x2, np.concatenate([x] * 3)) and np.array_equal(grey2, np.concatenate([grey] * 3))


def test_each_feature_answers_its_artefact():
    """A star on the disk, cosmic-ray hits and a satellite trail raise their own feature on
    every one of a few normal disks."""
    normals = [render_one(515, k, normal_config(colour=False))[0] for k in range(8)]
    base = artefact_features(latent_inputs(normals)[1])
    for kind, j in (("star", 0), ("cosmic_ray", 1), ("trail", 2)):
        hit = [inject(im, kind, np.random.default_rng([k, j])) for k, im in enumerate(normals)]
        f = artefact_features(latent_inputs(hit)[1])
        assert (f[:, j] > base[:, j]).all(), (kind, f[:, j], base[:, j])
        assert np.median(f[:, j]) > np.percentile(base[:, j], 90), kind


def test_the_artefact_part_is_a_hinge_on_normal_tail_z_scores():
    rng = np.random.default_rng(0)
    normal = rng.normal(0, 1, (2000, 3))
    scales = fit_scales(normal)
    assert scales["features"] == list(FEATURES)
    q50, q99 = np.percentile(normal, [50, 99], axis=0)
    assert np.allclose(scales["center"], q50) and np.allclose(np.asarray(scales["scale"]) * 2.326, q99 - q50)
    state = {**scales, "weight": 4.0, "threshold": 2.0}
    part = artefact_part(normal, state)
    assert (part >= 0).all() and np.mean(part == 0) > 0.9  # most normal images: nothing
    far = np.array([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0], [0.0, 10.0, 20.0]])
    z = (far - np.asarray(scales["center"])) / np.asarray(scales["scale"])
    assert np.allclose(artefact_part(far, state), 4.0 * np.clip(z - 2.0, 0, None).max(1))
    # a calibration set: anomalies of kind "a" far out in feature 0, of kind "b" in the latent part
    kinds = [None] * 1800 + ["a"] * 100 + ["b"] * 100
    feats = np.vstack([rng.normal(0, 1, (1800, 3)), rng.normal(0, 1, (100, 3)) + [6, 0, 0], rng.normal(0, 1, (100, 3))])
    latent = np.r_[rng.normal(0, 1, 1900), rng.normal(6, 1, 100)]
    fit = fit_combination(feats, latent, kinds, scales)
    assert fit["weight"] > 0 and fit["calibration_auroc"] > 0.97 and fit["calibration_top10"] >= 8
    assert fit["calibration_auroc"] > auroc(latent, np.array([k is not None for k in kinds])) + 0.1
    assert expected_top(latent, kinds) <= expected_top(latent + artefact_part(feats, fit), kinds) <= 10


def test_fit_latent_score_writes_the_part_and_the_checksums(tmp_path):
    d = make_latent_weights(tmp_path / "w")
    call_command("fit_latent_score", "--weights", str(d), "--normal-images", "120", "--calibration-images", "120", "--no-progress")
    space = json.loads((d / "space.json").read_text())
    art = space["density"]["artefacts"]
    assert art["features"] == list(FEATURES) and art["fit"]["calibration_images"] == 120 and art["fit"]["normal_seed"] == 1001
    manifest = json.loads((d / "ensemble.json").read_text())
    assert {m["file"]: m["sha256"] for m in manifest["members"]}["space.json"] == sha256_file(d / "space.json")
    card = json.loads((d / "model_card.json").read_text())
    assert card["outlier_artefacts"]["command"].startswith("python manage.py fit_latent_score")
    m = load_latent(d, device="cpu")  # the checksums hold
    images = [render_one(3, k, normal_config(colour=False))[0] for k in range(4)]
    out = m.encode_all(images)
    assert np.allclose(out["artefact"], artefact_part(m.artefact_features(images), art))
    m.refit_density(*m.encode_inputs(m.preprocess(images * 12)))
    assert m.density_state()["artefacts"] == art  # refits keep the part fitted on the training distribution


@pytest.mark.django_db
def test_the_nightly_refit_keeps_each_images_artefact_part(tmp_path):
    """The sweep refits the latent parts on the stored embeddings; each stored score keeps the
    artefact part its pixels gave (a threshold far below the normals gives every image one)."""
    art = {"features": list(FEATURES), "center": [0.0, 0.0, 0.0], "scale": [1.0, 1.0, 1.0], "weight": 0.5, "threshold": -5.0}
    mv = register_latent(make_latent_weights(tmp_path / "latent", artefacts=art))
    rng = np.random.default_rng(3)
    for k in range(45):
        make_image(GalaxyFactory(), "g", inc=float(rng.uniform(20, 90)) + k * 1e-3)
    out = latent_sweep()
    assert out["refit"] is True and out["images"] == 45
    model = latent_model_for(ModelVersion.objects.get(pk=mv.pk))
    assert model.density_state()["artefacts"] == art
    rows = list(
        ImageEmbedding.objects.order_by("image_id").values_list("image_id", "embedding", "recon_error", "outlier_score", "artefact_score")
    )
    pixels = [read_image_field(Image.objects.get(pk=r[0])) for r in rows]
    part = model.encode_all(pixels)["artefact"]
    assert (part > 1.0).all()
    assert np.allclose([r[4] for r in rows], part, rtol=1e-5)  # stored beside the score
    emb = np.stack([np.asarray(r[1], dtype=np.float32) for r in rows])
    expect = model.score_embeddings(emb, np.array([r[2] for r in rows], dtype=np.float32), part)
    assert np.allclose([r[3] for r in rows], expect, rtol=1e-4, atol=1e-4)
