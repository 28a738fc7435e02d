"""ml.latent (pure parts): inputs, injector, VAE, density, loading, embedding, scores."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from ml.latent import LatentModel, load_latent
from ml.latent.anomalies import ANOMALY_KINDS, anomaly_set, inject, normal_config
from ml.latent.data import LATENT_SIZE, cached_pool, preprocess_latent, render_pool
from ml.latent.density import LatentDensity, auroc, gmm_fit
from ml.latent.score import nearest
from ml.latent.train import TrainConfig, domain_auroc, retrieval_scores, train_latent
from ml.latent.vae import ConvVAE, positive_pairs, supcon_loss, vae_loss
from ml.preprocess import load_image_file
from ml.synth import SynthConfig, render_one
from ml.weights_files import LATENT_WEIGHTS_DIR, WeightsChecksumError


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> LatentModel:
    """A latent model trained for a few steps on a tiny pool (its scores mean nothing)."""
    out = tmp_path_factory.mktemp("latent")
    cfg = TrainConfig(images=64, val_images=120, epochs=1, batch_size=32, dim=8, width=4, out=str(out), cache_dir=None, max_steps=2)
    train_latent(cfg, command="test", log=lambda s: None)
    return load_latent(out, device="cpu")


def test_pool_is_deterministic_and_labelled():
    a, b = render_pool(5, 6), render_pool(5, 6)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert a["x"].shape == (6, 1, LATENT_SIZE, LATENT_SIZE) and a["x"].dtype == np.float16
    tail = render_pool(5, 2, start=4)
    assert np.array_equal(tail["x"], a["x"][4:])
    assert not np.array_equal(render_pool(6, 6)["x"], a["x"])
    # classes follow the kinds: disk 0, face-on 1 (with an inclination below 45 deg), else reject 2
    for k in range(6):
        kind = render_one(5, k)[1]["kind"]
        assert a["cls"][k] == {"disk": 0, "faceon": 1}.get(kind, 2)


def test_pool_cache_is_cut_and_extended(tmp_path):
    small = cached_pool(21, 3, cache_dir=str(tmp_path))
    assert (tmp_path / "latent_c1_seed21_n3.npz").exists()
    big = cached_pool(21, 5, cache_dir=str(tmp_path))
    assert np.array_equal(big["x"][:3], small["x"]) and np.array_equal(big["x"], render_pool(21, 5)["x"])
    (tmp_path / "latent_c1_seed21_n3.npz").unlink()
    cut = cached_pool(21, 4, cache_dir=str(tmp_path))
    assert np.array_equal(cut["kind"], big["kind"][:4]) and not (tmp_path / "latent_c1_seed21_n4.npz").exists()


def test_colour_preprocessing_keeps_three_planes():
    im, _ = render_one(3, 0, normal_config(colour=True))
    assert im.ndim == 3
    x = preprocess_latent(im, 3)
    assert x.shape == (3, 64, 64) and x.dtype == np.float32
    assert not np.allclose(x[0], x[2])  # g and i differ
    grey = preprocess_latent(im[..., 0], 3)
    assert np.array_equal(grey[0], grey[1])


def test_injector_is_deterministic_and_changes_the_image():
    images, which = anomaly_set(11, 120, prevalence=0.05)
    again, which2 = anomaly_set(11, 120, prevalence=0.05)
    assert which == which2 and all(np.array_equal(p, q) for p, q in zip(images, again))
    assert sorted({w for w in which if w}) == sorted(ANOMALY_KINDS) and sum(w is not None for w in which) == 6
    normals, _ = anomaly_set(11, 120, prevalence=0.05, kinds=())
    for i, w in enumerate(which):
        same = np.array_equal(images[i], normals[i]) if w is None else None
        assert same is None or same
    base, _ = render_one(2, 0, normal_config(colour=False))
    other, _ = render_one(3, 0, normal_config(colour=False))
    for kind in ANOMALY_KINDS:
        out = inject(base, kind, np.random.default_rng(0), other)
        assert out.shape == base.shape and out.dtype == np.uint8 and not np.array_equal(out, base), kind
        assert np.array_equal(out, inject(base, kind, np.random.default_rng(0), other))
    with pytest.raises(ValueError, match="unknown anomaly"):
        inject(base, "comet", np.random.default_rng(0))


def test_vae_shapes_and_a_few_steps_lower_the_loss():
    torch.manual_seed(0)
    pool = render_pool(8, 32)
    x = torch.from_numpy(pool["x"].astype(np.float32))
    net = ConvVAE(channels=1, dim=8, width=4)
    out = net(x)
    assert out["mu"].shape == (32, 8) and out["recon"].shape == x.shape
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        loss, parts = vae_loss(net(x), x, beta=1.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.7 * losses[0]
    assert set(parts) == {"nll", "mse", "kl"}


def test_contrastive_pairs_and_loss():
    cls = torch.tensor([0, 0, 0, 1, 2])
    kind = torch.tensor([0, 0, 0, 1, 2])
    inc = torch.tensor([50.0, 53.0, 80.0, 30.0, float("nan")])
    pos = positive_pairs(cls, kind, inc, 5.0)
    assert pos[0, 1] and not pos[0, 2] and not pos[0, 3] and pos[4, 4] and not pos[3, 4]
    emb = torch.nn.functional.normalize(torch.randn(5, 4), dim=1)
    good = torch.nn.functional.normalize(torch.tensor([[1.0, 0, 0, 0], [1, 0.01, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]), dim=1)
    assert float(supcon_loss(good, pos)) < float(supcon_loss(emb, pos))


def test_gmm_density_and_auroc():
    rng = np.random.default_rng(0)
    y = np.concatenate([rng.normal(0, 1, (300, 2)), rng.normal(6, 0.5, (300, 2))])
    g = gmm_fit(y, 2)
    assert sorted(np.round(g["means"][:, 0]).tolist()) == [0.0, 6.0]
    assert auroc(np.array([0.1, 0.2, 0.9, 0.8]), np.array([0, 0, 1, 1])) == 1.0
    assert auroc(np.array([1.0, 1.0]), np.array([0, 1])) == 0.5
    emb = rng.normal(0, 1, (400, 12))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    dens = LatentDensity.fit(emb, rng.lognormal(0, 0.1, 400))
    far = np.zeros((1, 12))
    far[0, 0] = 1.0
    s_in = dens.score(emb[:50], np.ones(50))
    s_big_err = dens.score(emb[:50], np.full(50, 10.0))
    assert (s_big_err > s_in).all()
    state = json.loads(json.dumps(dens.state))
    assert np.allclose(LatentDensity(state).score(emb[:5], np.ones(5)), dens.score(emb[:5], np.ones(5)))


def test_retrieval_scores_and_domain_auroc():
    inc = np.array([50.0, 51.0, 80.0, 81.0, np.nan, np.nan])
    cls = np.array([0, 0, 0, 0, 2, 2])
    emb = np.array([[1, 0], [0.99, 0.1], [0, 1], [0.1, 0.99], [-1, 0], [-0.99, -0.1]])
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    r = retrieval_scores(emb, inc, cls, k=1)
    assert r["inc_median_diff"] == 1.0 and r["class_precision"] == 1.0 and r["ratio"] < 0.1
    rng = np.random.default_rng(1)
    syn = rng.normal(0, 1, (200, 4))
    groups = np.repeat(np.arange(5), 20)
    assert domain_auroc(syn, rng.normal(3, 1, (100, 4)), groups) > 0.95
    assert abs(domain_auroc(syn, rng.normal(0, 1, (100, 4)), groups) - 0.5) < 0.15


def test_embed_shapes_normalisation_and_scores(tiny_model, shared_data):
    m = tiny_model
    assert isinstance(m.name, str) and m.version == m.sha256[:12] and m.dim == 8 and m.channels == 1
    files = sorted((shared_data / "sdss").glob("pgc*_*"))[:5]
    images = [load_image_file(str(f)) for f in files]
    emb = m.embed(images + [images[0]])
    assert emb.shape == (6, 8) and emb.dtype == np.float32
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(emb[5], emb[0])
    allp = m.encode_all(images)
    assert set(allp) == {"embedding", "recon_error", "artefact", "outlier"} and allp["outlier"].shape == (5,)
    assert np.allclose(m.score_embeddings(allp["embedding"], allp["recon_error"], allp["artefact"]), allp["outlier"])
    assert np.allclose(m.outlier_score(images), allp["outlier"], atol=1e-5)
    assert m.project2d(allp["embedding"]).shape == (5, 2)


def test_density_refit_and_state_roundtrip(tiny_model):
    m = tiny_model
    pool = render_pool(9, 60)
    emb, err = m.encode_inputs(pool["x"].astype(np.float32))
    before = m.density_state()
    m.refit_density(emb, err)
    refit = m.density_state()
    assert refit["n_fit"] == 60 and refit != before
    json.dumps(refit)
    s = m.score_embeddings(emb, err)
    m.load_density_state(before)
    assert not np.allclose(m.score_embeddings(emb, err), s)
    m.load_density_state(refit)
    assert np.allclose(m.score_embeddings(emb, err), s)
    m.load_density_state(before)


def test_wrong_sha256_refuses_to_load(tiny_model, tmp_path):
    d = tmp_path / "copy"
    shutil.copytree(tiny_model.directory, d)
    load_latent(d, device="cpu")
    space = json.loads((d / "space.json").read_text())
    space["projection"]["mean"][0] += 1.0
    (d / "space.json").write_text(json.dumps(space))
    with pytest.raises(WeightsChecksumError, match="space.json"):
        load_latent(d, device="cpu")
    shutil.copy(tiny_model.directory / "space.json", d / "space.json")
    with pytest.raises(WeightsChecksumError, match="vae.pt"):
        load_latent(d, device="cpu", expected_sha256={"vae.pt": "0" * 64})
    (d / "vae.pt").unlink()
    with pytest.raises(FileNotFoundError):
        load_latent(d, device="cpu")


STAR_FRAMES = SynthConfig(
    frac_disk=0, frac_faceon=0, frac_star=1, frac_blank=0, frac_merger=0, frac_elliptical=0, frac_artefact=0, p_colour=0
)


@pytest.mark.skipif(not (LATENT_WEIGHTS_DIR / "ensemble.json").exists(), reason="no shipped latent weights")
def test_shipped_model_ranks_a_star_above_normal_disks():
    """A star where the galaxy should be (ml.synth's star frames) scores above every normal disk."""
    m = load_latent(device="cpu")
    normals = [render_one(515, k, normal_config(colour=False))[0] for k in range(30)]
    stars = [render_one(516, k, STAR_FRAMES)[0] for k in range(6)]
    s = m.outlier_score(normals + stars)
    assert (s[30:] > np.median(s[:30])).all() and auroc(s, np.arange(36) >= 30) > 0.9


@pytest.mark.skipif(not (LATENT_WEIGHTS_DIR / "ensemble.json").exists(), reason="no shipped latent weights")
def test_shipped_model_ranks_a_star_on_the_disk_above_normal_disks():
    """A bright star injected on the disk (the artefact part sees its round saturated core; the
    latent parts alone ranked it like a normal disk, AUROC 0.36 on the evaluation set)."""
    m = load_latent(device="cpu")
    normals = [render_one(515, k, normal_config(colour=False))[0] for k in range(30)]
    stars = [inject(im, "star", np.random.default_rng(k)) for k, im in enumerate(normals[:5])]
    s = m.outlier_score(normals + stars)
    assert auroc(s, np.arange(35) >= 30) > 0.9


@pytest.mark.skipif(not (LATENT_WEIGHTS_DIR / "ensemble.json").exists(), reason="no shipped latent weights")
def test_an_identical_image_is_its_own_nearest_neighbour(shared_data):
    m = load_latent(device="cpu")
    files = sorted((shared_data / "sdss").glob("pgc*_*"))
    images = [load_image_file(str(f)) for f in files]
    emb = m.embed(images + [images[7]])
    idx, dist = nearest(emb, 3)
    assert idx[-1, 0] == 7 and idx[7, 0] == len(images) and dist[-1, 0] < 1e-6
    assert dist[-1, 1] > 1e-4  # the next neighbour is a different image at a real distance
