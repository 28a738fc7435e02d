"""ml.morph: renderer determinism, the covariance loss, the Cramér-Rao bound, training, weights checks."""

from __future__ import annotations

import copy
import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from django.core.management import CommandError, call_command

from fitting.engine.fit import physical_to_m
from fitting.engine.model import Renderer, model_spec
from ml.morph.crb import cramer_rao, fisher, physical_columns
from ml.morph.evaluate import SIZE_ESTIMATORS, size_by_index, size_table, spread_floor
from ml.morph.nets import GAUSSIAN_PSF_SHAPE, VIEW, MorphNet, _resample, covariance, gaussian_nll, preprocess, zoom_of
from ml.morph.posterior import load_nets, posterior
from ml.morph.render import MorphConfig, psf_fwhm, psf_image, psf_shape, render_chunk, render_set
from ml.morph.targets import PHYSICAL, TARGETS, to_physical, to_targets
from ml.morph.train import (
    TrainConfig,
    augment,
    card_markdown,
    render_training,
    save_net,
    split_images,
    train_all,
    train_kind,
    warm_start_state,
)
from ml.weights_files import WeightsChecksumError, sha256_file


@pytest.mark.parametrize("kind", ["sersic", "bulge_disk"])
def test_renderer_is_deterministic_from_the_seed(kind):
    cfg = MorphConfig(kind=kind, size=48, n=24, chunk=8, seed=11)
    a, b = render_set(cfg), render_set(cfg)
    assert np.array_equal(a["images"], b["images"])
    assert np.array_equal(a["p_true"], b["p_true"])
    alone = render_chunk(cfg, 2)
    assert np.array_equal(alone["images"], a["images"][16:24])
    other = render_set(MorphConfig(kind=kind, size=48, n=24, chunk=8, seed=12))
    assert not np.allclose(other["images"], a["images"])
    assert a["images"].shape == (24, 48, 48) and np.isfinite(a["images"]).all()
    assert (a["snr"] >= 10).all() and (a["snr"] <= 200).all()


def test_rendered_flux_and_psf_match_the_request():
    d = render_set(MorphConfig(size=64, n=16, chunk=16, seed=3, neighbour_prob=0.0, offset=0.0, re_range=(2.0, 4.0)))
    # the noiseless galaxy's flux is what the truth says (Poisson noise averages out to a few %)
    assert np.median(d["images"].sum(axis=(1, 2)) / d["truth"]["flux"]) == pytest.approx(1.0, abs=0.1)
    for kind in ("moffat", "gaussian"):
        assert psf_fwhm(psf_image(kind, 3.0, 3.0)) == pytest.approx(3.0, rel=0.08)


def test_covariance_loss_equals_a_direct_multivariate_normal_nll():
    gen = torch.Generator().manual_seed(0)
    k, b = 4, 6
    mean = torch.randn(b, k, generator=gen, dtype=torch.float64)
    log_var = torch.randn(b, k, generator=gen, dtype=torch.float64)
    off = torch.randn(b, k * (k - 1) // 2, generator=gen, dtype=torch.float64)
    target = torch.randn(b, k, generator=gen, dtype=torch.float64)
    scale = torch.tensor([0.5, 2.0, 1.0, 3.0], dtype=torch.float64)
    for sc in (None, scale):
        sigma = covariance(log_var + (0 if sc is None else 2 * torch.log(sc)), off, sc)
        direct = -torch.distributions.MultivariateNormal(mean, covariance_matrix=sigma).log_prob(target) - 0.5 * k * math.log(2 * math.pi)
        ours = gaussian_nll(target, mean, log_var + (0 if sc is None else 2 * torch.log(sc)), off, sc)
        assert torch.allclose(ours, direct, atol=1e-9)


def test_crb_matches_a_finite_difference_fisher_matrix():
    d = render_set(MorphConfig(size=32, n=3, chunk=3, seed=5, neighbour_prob=0.0, re_range=(2.0, 5.0)))
    psf = torch.from_numpy(d["psfs"][0])
    spec = model_spec("sersic", fit_sky=False)
    r = Renderer(spec, 32, 32, psf, dtype=torch.float64)
    m = physical_to_m(torch.from_numpy(d["p_true"]), spec)
    sigma = torch.from_numpy(d["sigma"]).double()
    free = spec.free
    cols = []
    for i in free:
        h = 1e-5 * max(1.0, float(m[:, i].abs().max()))
        up, dn = m.clone(), m.clone()
        up[:, i] += h
        dn[:, i] -= h
        cols.append((r.render(up, need_grad=False)[0] - r.render(dn, need_grad=False)[0]) / (2 * h))
    jac = torch.stack(cols, 1).reshape(3, len(free), -1)
    w = (1.0 / sigma**2).reshape(3, 1, -1)
    f_fd = torch.bmm(jac * w, jac.transpose(1, 2))
    f_an = fisher(r, m, sigma)
    # the engine's centre derivatives are spectral (exact for the band-limited image), the finite
    # differences see the sampled one: compare diagonals to 1 % and the normalised matrix to 0.01
    d_an, d_fd = torch.diagonal(f_an, dim1=1, dim2=2), torch.diagonal(f_fd, dim1=1, dim2=2)
    assert torch.allclose(d_an, d_fd, rtol=1e-2)
    norm = torch.sqrt(d_fd[:, :, None] * d_fd[:, None, :])
    assert torch.allclose(f_an / norm, f_fd / norm, atol=1e-2)
    # the bound of the physical columns: finite-difference Fisher, finite-difference dg/dm
    cov_fd = torch.linalg.inv(f_fd)
    g_rows = []
    for i in free:
        up, dn = m.clone(), m.clone()
        up[:, i] += 1e-6
        dn[:, i] -= 1e-6
        g_rows.append((physical_columns("sersic", up, spec) - physical_columns("sersic", dn, spec)) / 2e-6)
    g = torch.stack(g_rows, 2)  # [B, K, Pf]
    crb_fd = torch.sqrt(torch.diagonal(g @ cov_fd @ g.transpose(1, 2), dim1=1, dim2=2))
    _, crb = cramer_rao("sersic", torch.from_numpy(d["p_true"]), psf, sigma)
    assert torch.allclose(crb, crb_fd, rtol=2e-2)
    # flux / SNR is the bound with the shape known and sky noise only: the marginal bound is larger
    snr_limit = torch.from_numpy(d["truth"]["flux"] / d["snr"])
    assert (crb[:, 2] >= 0.99 * snr_limit).all()


@pytest.mark.parametrize("kind", ["sersic", "bulge_disk"])
def test_targets_round_trip(kind):
    d = render_set(MorphConfig(kind=kind, size=64, n=8, chunk=8, seed=2))
    size = torch.full((8,), 64.0, dtype=torch.float64)
    noise = torch.from_numpy(d["noise"])
    t = to_targets(kind, d["truth"], size, noise)
    assert t.shape == (8, len(TARGETS[kind]))
    back = to_physical(kind, t, size, noise)
    for j, name in enumerate(PHYSICAL[kind]):
        ref = torch.as_tensor(d["truth"][name if name != "q_disk" else "q_disk"])
        assert torch.allclose(back[:, j], ref.double(), rtol=1e-5, atol=1e-6), name


def test_crop_head_zooms_by_its_radius_estimate_and_takes_any_size():
    net = MorphNet(TARGETS["sersic"]).eval()
    for side in (40, 64, 100):
        x, ex = preprocess(torch.randn(3, side, side), torch.ones(3), torch.full((3,), 2.0))
        with torch.no_grad():
            view, s, ln_re = net.crop(x, ex)
            mean, log_var, off, zoom, _ = net(x, ex)
        # untrained, every cutout is seen at the zoom of re = 5 px
        assert torch.allclose(ln_re, torch.full((3,), math.log(5.0)))
        assert torch.allclose(s, zoom_of(ln_re, torch.full((3,), 2.0), side)) and torch.equal(s, zoom)
        assert view.shape == (3, 1, net.crop.view, net.crop.view)
        assert mean.shape == (3, 7) and log_var.shape == (3, 7) and off.shape == (3, 21)
    # small radii are magnified, but never to less than half an input pixel per view pixel;
    # large ones are seen whole
    s = zoom_of(torch.log(torch.tensor([0.5, 2.0, 8.0, 40.0])), torch.full((4,), 2.0), 128)
    assert s[0] == pytest.approx(VIEW / 256) and s[0] <= s[1] < s[2] < s[3] == 1.0
    # the head predicts ln re and ln flux in view units: a view pixel of p input pixels adds
    # ln p and 2 ln p
    assert net.pixel_power.tolist() == [0.0, 0.0, 2.0, 1.0, 0.0, 0.0, 0.0]


def _bilinear(x: torch.Tensor, s: torch.Tensor, view: int) -> torch.Tensor:
    zero = torch.zeros_like(s)
    theta = torch.stack([torch.stack([s, zero, zero], 1), torch.stack([zero, s, zero], 1)], 1)
    grid = torch.nn.functional.affine_grid(theta, [x.shape[0], 1, view, view], align_corners=False)
    return torch.nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def test_a_magnified_view_is_the_bilinear_resampling():
    x = torch.randn(3, 1, 64, 64, generator=torch.Generator().manual_seed(1))
    s = torch.tensor([0.2, 0.5, 0.75])  # 0.27, 0.67 and 1 input pixel per view pixel of 48
    assert torch.allclose(_resample(x, s, VIEW), _bilinear(x, s, VIEW), atol=1e-4)


def test_a_zoomed_out_view_averages_every_input_pixel():
    # 128 px seen whole in 48: 2.67 input pixels per view pixel. Bilinear sampling reads about a
    # third of the pixels, so white noise keeps 4/9 of its variance; the footprint average keeps
    # about 1 / 2.67^2 of it and conserves the flux.
    x = torch.randn(16, 1, 128, 128, generator=torch.Generator().manual_seed(2))
    whole = torch.ones(16)
    assert _bilinear(x, whole, VIEW).var().item() > 0.4
    assert _resample(x, whole, VIEW).var().item() < 1.2 / (128 / VIEW) ** 2
    block = torch.zeros(1, 1, 128, 128)
    block[0, 0, 40:90, 50:81] = 1.0
    assert _resample(block, whole[:1], VIEW).sum().item() * (128 / VIEW) ** 2 == pytest.approx(50 * 31, rel=1e-4)


def _manifest(directory, sha: str) -> None:
    """The ensemble.json of a folder holding one Sérsic network with this sha256."""
    (directory / "ensemble.json").write_text(
        json.dumps({"name": "morph-test", "task": "morphology", "members": [{"file": "sersic.pt", "sha256": sha}]})
    )


def test_a_view_wider_than_the_cutout_reads_the_sky_beyond_it():
    # with zoom_max 2 a 20 px galaxy in 128 px is seen to 4 re as the smaller ones are, and a
    # 40 px one at twice the side; by default both are seen whole
    ln_re = torch.log(torch.tensor([20.0, 40.0]))
    fwhm = torch.full((2,), 2.0)
    wide = zoom_of(ln_re, fwhm, 128, zoom_max=2.0)
    assert wide[0].item() == pytest.approx(2 * (4 * 20 + 1.5 * 2 + 4) / 128) and wide[1].item() == 2.0
    assert torch.equal(zoom_of(ln_re, fwhm, 128), torch.ones(2))
    view = _resample(torch.ones(1, 1, 128, 128), wide[1:], VIEW)[0, 0]
    quarter = VIEW // 4
    assert torch.allclose(view[quarter:-quarter, quarter:-quarter], torch.ones(VIEW // 2, VIEW // 2))
    assert view[:quarter].abs().max() == 0 and view[:, -quarter:].abs().max() == 0
    assert view.sum().item() * (256 / VIEW) ** 2 == pytest.approx(128 * 128, rel=1e-4)


def test_the_crop_heads_largest_zoom_travels_with_the_weights(tmp_path):
    net = MorphNet(TARGETS["sersic"], width=8, zoom_max=2.0)
    _manifest(tmp_path, save_net(net, "sersic", TrainConfig(width=8, zoom_max=2.0), tmp_path))
    assert json.loads((tmp_path / "sersic.json").read_text())["zoom_max"] == 2.0
    assert load_nets(tmp_path)["sersic"].crop.zoom_max == 2.0
    # weights saved before the choice see at most the whole cutout
    ck = torch.load(tmp_path / "sersic.pt", weights_only=True)
    meta = {k: v for k, v in json.loads(ck["meta"]).items() if k != "zoom_max"}
    torch.save({**ck, "meta": json.dumps(meta)}, tmp_path / "sersic.pt")
    _manifest(tmp_path, sha256_file(tmp_path / "sersic.pt"))
    assert load_nets(tmp_path)["sersic"].crop.zoom_max == 1.0


def test_the_psf_shape_tells_a_gaussian_from_moffats_at_every_fwhm():
    for fwhm in (1.5, 2.0, 3.0, 5.0):
        gauss = psf_shape(psf_image("gaussian", fwhm, 0.0))
        assert gauss == pytest.approx(GAUSSIAN_PSF_SHAPE, abs=0.025)
        moffats = [psf_shape(psf_image("moffat", fwhm, beta)) for beta in (4.5, 3.5, 2.5)]
        assert gauss + 0.08 < moffats[0] < moffats[1] < moffats[2]  # the more light in the wings, the larger


def test_a_network_told_the_psf_shape_starts_from_one_that_was_not_with_its_outputs(tmp_path):
    torch.manual_seed(4)
    old = MorphNet(TARGETS["sersic"], width=8).eval()
    x, ex = preprocess(torch.randn(3, 64, 64), torch.ones(3), torch.full((3,), 2.0), torch.tensor([0.5, 0.62, 0.76]))
    assert ex.shape == (3, 3)
    new = MorphNet(TARGETS["sersic"], width=8, psf_shape=True)
    new.load_state_dict(warm_start_state(old.state_dict(), "radius", "radius", True, False), strict=False)
    new.calibration.copy_(old.calibration)
    new.eval()
    with torch.no_grad():
        assert torch.allclose(new(x, ex)[0], old(x, ex)[0])
        new.head[0].weight[:, -2] += 0.5  # once trained, it reads the shape; the old one never does
        assert not torch.allclose(new(x, ex)[0], old(x, ex)[0])
        _, other = preprocess(torch.randn(3, 64, 64), torch.ones(3), torch.full((3,), 2.0))
        assert torch.allclose(old(x, other)[0], old(x, ex)[0])
    with pytest.raises(ValueError, match="reads"):  # an input cannot be dropped
        warm_start_state(new.state_dict(), "radius", "radius", False, True)
    _manifest(tmp_path, save_net(new, "sersic", TrainConfig(width=8), tmp_path))
    assert load_nets(tmp_path)["sersic"].psf_shape and json.loads((tmp_path / "sersic.json").read_text())["psf_shape"]


def test_the_inference_network_folds_its_batch_norms_and_gives_the_same_outputs():
    torch.manual_seed(3)
    net = MorphNet(TARGETS["sersic"]).eval()
    for mod in net.modules():  # statistics as training leaves them, not the identity
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 2.0)
    x, ex = preprocess(torch.randn(4, 64, 64) * 5, torch.ones(4), torch.full((4,), 2.5))
    with torch.no_grad():
        before = net(x, ex)[:3]
        fast = copy.deepcopy(net).for_inference()
        after = fast(x, ex)[:3]
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    for a, b in zip(before, after, strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-4)


def test_the_first_weights_crop_head_starts_at_the_identity_and_their_files_still_load(tmp_path):
    net = MorphNet(TARGETS["bulge_disk"], width=8, crop="learned").eval()
    x, ex = preprocess(torch.randn(3, 64, 64), torch.ones(3), torch.full((3,), 2.0))
    with torch.no_grad():
        view, s, ln_re = net.crop(x, ex)
        mean = net(x, ex)[0]
    assert torch.equal(s, torch.ones(3)) and ln_re is None and mean.shape == (3, 8)
    assert net.pixel_power.abs().sum() == 0  # that head predicted sizes in cutout pixels
    # their files have no crop name and no pixel powers: they load as "learned"
    state = {k: v for k, v in net.state_dict().items() if k != "pixel_power"}
    meta = {"kind": "bulge_disk", "width": 8, "dropout": 0.1, "view": VIEW, "targets": list(TARGETS["bulge_disk"])}
    torch.save({"state_dict": state, "meta": json.dumps(meta)}, tmp_path / "bulge_disk.pt")
    member = {"file": "bulge_disk.pt", "sha256": sha256_file(tmp_path / "bulge_disk.pt"), "kind": "bulge_disk"}
    (tmp_path / "ensemble.json").write_text(json.dumps({"name": "old", "task": "morphology", "members": [member]}))
    old = load_nets(tmp_path)["bulge_disk"]
    with torch.no_grad():
        assert old.crop_kind == "learned" and torch.allclose(old(x, ex)[0], mean)


@pytest.mark.parametrize("op", range(8))
def test_augmentation_is_exact_for_the_renderer(op):
    size = 33
    spec = model_spec("sersic", fit_sky=False)
    r = Renderer(spec, size, size, torch.from_numpy(psf_image("moffat", 2.5, 3.0)), dtype=torch.float64)

    def render(p):
        return r.render(physical_to_m(p, spec), need_grad=False)[0]

    p = torch.tensor([[17.3, 14.2, 0.0, 1000.0, 4.0, 1.5, 0.4, 0.5]], dtype=torch.float64)
    truth = dict(zip(("x", "y", "flux", "re", "n", "q", "theta"), p[:, [0, 1, 3, 4, 5, 6, 7]].T, strict=True))
    t = to_targets("sersic", truth, torch.tensor([float(size)]), torch.tensor([1.0]))
    img, t2 = augment(render(p)[:, None], t, TARGETS["sersic"], op)
    x, y, f, re, n, q, th = to_physical("sersic", t2, torch.tensor(float(size)), torch.tensor(1.0)).T
    expected = render(torch.stack([x, y, torch.zeros(1), f, re, n, q, th], 1))
    # (exact to rounding for a Gaussian PSF; the engine's sampling of a Moffat's wings leaves 1e-4)
    assert torch.allclose(img[:, 0], expected, atol=1e-3 * float(expected.max()))
    assert op == 0 or not torch.allclose(img[:, 0], render(p), atol=5e-2 * float(expected.max()))


def test_a_few_training_steps_lower_the_loss():
    cfg = TrainConfig(kinds=("sersic",), images=256, sizes=(48,), val_images=64, epochs=3, batch_size=32, lr=3e-3, width=8)
    net, entry = train_kind("sersic", cfg, log=lambda s: None)
    nll = [h["train_nll"] for h in entry["history"]]
    assert nll[-1] < nll[0] - 0.3
    assert entry["steps"] == 3 * 8
    assert all(0.3 <= c <= 3.0 for c in entry["calibration"])


def test_a_warm_start_continues_the_trained_network_and_the_sides_take_their_shares(tmp_path):
    assert split_images(300, (64, 128)) == [150, 150] and split_images(300, (64, 128), (1.0, 2.0)) == [100, 200]
    with pytest.raises(ValueError):
        split_images(300, (64, 128), (1.0,))
    cfg = TrainConfig(
        kinds=("sersic",), images=384, sizes=(48, 64), size_weights=(1.0, 2.0), val_images=64, epochs=3, batch_size=32, lr=3e-3, width=8
    )
    first = train_all(replace(cfg, out=str(tmp_path / "a")), command="test", log=lambda s: None)
    assert first["training_data"]["images_per_side"] == [128, 256] and first["members"][0]["steps"] == 3 * (4 + 8)
    warm = train_all(replace(cfg, out=str(tmp_path / "b"), epochs=1, init_from=str(tmp_path / "a")), command="test", log=lambda s: None)
    assert warm["init_from"]["files"][0]["crop_head"] == "kept"
    # it starts where the first run stopped, not from a fresh crop head and normalisation
    assert warm["members"][0]["history"][0]["val_nll"] < first["members"][0]["history"][0]["val_nll"]
    state = torch.load(tmp_path / "a" / "sersic.pt", weights_only=True)["state_dict"]
    kept = warm_start_state(state, "radius", "radius", True, True)
    assert "calibration" not in kept and "crop.fc.2.bias" in kept and "target_mean" in kept
    other = warm_start_state(state, "learned", "radius", True, True)
    assert other and all(k.startswith(("features.", "head.")) for k in other)


def _card(render: dict) -> dict:
    """The smallest model card card_markdown reads, with these render settings."""
    data = {"kind": "k", "images_per_kind": 1, "sizes": [128], "images_per_side": [1], "seeds": [1], "validation_seeds": [2]}
    return {
        "command": "c",
        "config": {},
        "machine": {"torch": "t", "device": "cpu", "threads": 1},
        "wall_seconds": 1.0,
        "members": [],
        "training_data": {**data, "render": render},
    }


def test_the_training_re_prior_reaches_past_the_default_cap_and_the_card_says_so():
    cfg = TrainConfig(kinds=("sersic",), sizes=(128,), re_max=48.0, re_max_fraction=0.375)
    (d,) = render_training(cfg, "sersic", 256, seed=3)
    re = d["truth"]["re"]
    assert re.max() > 30.0 and re.max() <= 48.0 and re.min() >= MorphConfig.re_range[0]
    (default,) = render_training(TrainConfig(sizes=(128,)), "sersic", 256, seed=3)
    assert default["truth"]["re"].max() <= MorphConfig.re_max_fraction * 128
    card = _card({"re_range": [1.0, 48.0], "re_max_fraction": 0.375})
    assert "re 1-48 px log-uniform (at most 0.375 of the side)" in card_markdown(card)
    made = {"command": "k", "crop": "radius", "training_data": {"render": {"re_range": [1.0, 25.0], "re_max_fraction": 0.2}}}
    entry = {"kind": "bulge_disk", "targets": ["a"], "calibration": [1.0], "parameters": 1, "steps": 1, "images_seen": 1}
    kept = {**entry, "render_seconds": 1, "train_seconds": 1, "history": [{"train_nll": 0.0}], "val_nll_calibrated": 0.0, "made_by": made}
    text = card_markdown({**card, "members": [kept]})
    assert "re prior 1-25 px log-uniform (at most 0.2 of the side); told the PSF's FWHM only), made by: `k`" in text
    assert "are told the PSF's FWHM only" in text  # the card's config predates the choice
    assert "are told the PSF's FWHM and shape" in card_markdown({**card, "config": {"psf_shape": True}})


def test_the_model_card_names_every_run_of_a_chain_of_fine_tunings():
    card = _card({"re_range": [1.0, 25.0], "re_max_fraction": 0.2})
    first = {"folder": "w0", "files": [{"file": "sersic.pt", "sha256": "0" * 64, "crop_head": "kept"}]}
    second = {
        "folder": "w1",
        "files": [{"file": "sersic.pt", "sha256": "1" * 64, "crop_head": "kept"}],
        "made_by": "c1",
        "made_from": first,
    }
    third = {
        "folder": "w2",
        "files": [{"file": "sersic.pt", "sha256": "2" * 64, "crop_head": "kept"}],
        "made_by": "c2",
        "made_from": second,
    }
    text = card_markdown({**card, "init_from": third})
    line = next(x for x in text.splitlines() if x.startswith("Started from:"))
    assert line.index("w2") < line.index("`c2`") < line.index("w1") < line.index("`c1`") < line.index("w0")


@pytest.mark.parametrize(
    "args", [("--re-max", "0.5"), ("--re-max-fraction", "0"), ("--re-max-fraction", "0.6"), ("--zoom-max", "0.5"), ("--zoom-max", "5")]
)
def test_train_morphology_refuses_a_bad_re_prior_or_zoom_and_writes_nothing(tmp_path, args):
    with pytest.raises(CommandError, match=args[0]):
        call_command("train_morphology", *args, "--out", str(tmp_path / "w"), "--no-register", "--no-progress")
    assert not (tmp_path / "w").exists()


def _weights(tmp_path) -> MorphNet:
    cfg = TrainConfig(width=8)
    net = MorphNet(TARGETS["sersic"], width=8)
    _manifest(tmp_path, save_net(net, "sersic", cfg, tmp_path))
    return net


def test_weights_with_a_wrong_sha256_refuse_to_load(tmp_path):
    _weights(tmp_path)
    nets = load_nets(tmp_path)
    assert set(nets) == {"sersic"}
    with pytest.raises(WeightsChecksumError):
        load_nets(tmp_path, expected_sha256={"sersic.pt": "0" * 64})
    with open(tmp_path / "sersic.pt", "ab") as fh:
        fh.write(b"\0")
    assert sha256_file(tmp_path / "sersic.pt") != json.loads((tmp_path / "ensemble.json").read_text())["members"][0]["sha256"]
    with pytest.raises(WeightsChecksumError):
        load_nets(tmp_path)


def test_posterior_summaries_are_ordered(tmp_path):
    _weights(tmp_path)
    net = load_nets(tmp_path)["sersic"]
    d = render_set(MorphConfig(size=64, n=4, chunk=4, seed=9))
    out = posterior(net, d["images"], d["noise"], d["fwhm"], passes=3, draws=600, keep_samples=True)
    assert out["samples"].shape == (4, 600, 7) and out["passes"] == 3
    lo, hi = out["lo"], out["hi"]
    assert (lo[..., 0] >= lo[..., 1]).all() and (lo[..., 1] >= lo[..., 2]).all()
    assert (hi[..., 0] <= hi[..., 1]).all() and (hi[..., 1] <= hi[..., 2]).all()
    assert ((out["median"] >= lo[..., 2]) | (out["names"].index("theta") == np.arange(7))).all()
    # the same seed gives the same samples; a deterministic pass gives the same mean
    again = posterior(net, d["images"], d["noise"], d["fwhm"], passes=1, draws=600, seed=0)
    once = posterior(net, d["images"], d["noise"], d["fwhm"], passes=1, draws=600, seed=0)
    assert np.array_equal(again["median"], once["median"])


def test_calibration_is_fitted_on_its_own_seed_checked_and_applied_per_number_of_passes(tmp_path):
    from ml.morph.calibration import write_calibration
    from ml.morph.evaluate import calibrate
    from ml.morph.train import CAL_SEED, TEST_SEED

    _weights(tmp_path)
    nets = load_nets(tmp_path)
    cal = calibrate(nets, n=64, size_n=16, passes=(1, 3), draws=300, log=lambda s: None)
    assert cal["seed"] == CAL_SEED != TEST_SEED and set(cal["sides"]) == {"64", "128"}
    assert cal["sides"]["128"]["seed"] == CAL_SEED + 1 != TEST_SEED + 1
    assert all(set(side["passes"]) == {"1", "3"} for side in cal["sides"].values())
    levels = np.array([0.6827, 0.9545, 0.9973])
    entry = cal["sides"]["64"]["passes"]["1"]["sersic"]
    for c in PHYSICAL["sersic"]:
        after = np.array(entry["coverage_after"][c])
        # the calibration set's coverage is the nominal one to within its granularity and sampling
        assert np.all(np.abs(after - levels) <= 3 / 64 + 0.02), (c, after)
    assert set(entry["mean"]["coef"]) == {"ln_flux", "ln_re", "ln_n"}  # centre and shape left alone
    (tmp_path / "model_card.json").write_text(json.dumps({"command": "train"}))
    (tmp_path / "MODEL_CARD.md").write_text("# card\n")
    write_calibration(tmp_path, cal, "test")
    write_calibration(tmp_path, cal, "test")  # again: the card keeps one section
    card = json.loads((tmp_path / "model_card.json").read_text())
    assert card["command"] == "train" and card["posterior_calibration"]["sides"]["64"]["passes"] == [1, 3]
    assert card["posterior_calibration"]["sha256"] == sha256_file(tmp_path / "calibration.json")
    text = (tmp_path / "MODEL_CARD.md").read_text()
    assert text.startswith("# card") and text.count("## Posterior calibration") == 1 and "| 128 | 3 | sersic | flux |" in text
    net = load_nets(tmp_path)["sersic"]
    d = render_set(MorphConfig(size=64, n=4, chunk=4, seed=9))
    plain = posterior(nets["sersic"], d["images"], d["noise"], d["fwhm"], draws=400)
    done = posterior(net, d["images"], d["noise"], d["fwhm"], draws=400)
    assert done["calibrated"] and not plain["calibrated"]
    # the centre is not shifted, the size is (by the fitted correction), and the 68 % interval
    # about the median is the uncalibrated one scaled by its factor (same draws: same seed)
    assert np.allclose(done["median"][:, :2], plain["median"][:, :2])
    assert not np.allclose(done["mean_t"][:, 3], plain["mean_t"][:, 3])
    raw = posterior(net, d["images"], d["noise"], d["fwhm"], draws=400, calibrated=False)
    assert np.allclose(raw["median"], plain["median"])
    j = PHYSICAL["sersic"].index("x")
    t = entry["scales"]["x"][0]
    width = lambda o: o["hi"][:, j, 0] - o["lo"][:, j, 0]  # noqa: E731
    assert np.allclose(width(done), t * width(plain), rtol=0.02)
    # samples moved by the scales stay physical (q <= 1, sizes and fluxes >= 0)
    iq, ire = PHYSICAL["sersic"].index("q"), PHYSICAL["sersic"].index("re")
    assert (done["hi"][:, iq] <= 1.0).all() and (done["lo"][:, ire] >= 0.0).all()
    # each number of passes finds its own entry; one without an entry is not calibrated
    assert posterior(net, d["images"], d["noise"], d["fwhm"], passes=3, draws=300)["calibrated"]
    assert not posterior(net, d["images"], d["noise"], d["fwhm"], passes=2, draws=400)["calibrated"]
    # nor is a cutout of another side than the calibration set's
    assert not posterior(net, d["images"][:, 8:56, 8:56], d["noise"], d["fwhm"], draws=200)["calibrated"]
    (tmp_path / "calibration.json").write_text((tmp_path / "calibration.json").read_text().replace('"n": 64', '"n": 65'))
    with pytest.raises(WeightsChecksumError):
        load_nets(tmp_path)


def test_mean_correction_removes_a_smooth_bias_in_crb_units():
    from ml.morph.calibration import apply_mean_correction, fit_mean_correction

    rng = np.random.default_rng(0)
    n, names = 4000, TARGETS["sersic"]
    truth = rng.normal(0.0, 0.5, (n, len(names)))
    fwhm = rng.uniform(1.5, 5.0, n)
    crb = rng.uniform(0.01, 0.05, (n, len(names)))
    rho = truth[:, names.index("ln_re")] - np.log(fwhm)
    bias = 0.05 * np.tanh(2 * rho)[:, None] + 0.02  # a smooth function of the resolution
    mean = truth + bias + crb * rng.normal(size=truth.shape)
    corr = fit_mean_correction("sersic", mean, truth, crb, fwhm)
    fixed = apply_mean_correction("sersic", torch.from_numpy(mean), torch.from_numpy(fwhm), corr).numpy()
    for k, name in enumerate(names):
        before, after = np.median((mean[:, k] - truth[:, k]) / crb[:, k]), np.median((fixed[:, k] - truth[:, k]) / crb[:, k])
        if name in corr["coef"]:
            assert abs(before) > 0.5 and abs(after) < 0.1, (name, before, after)
            # and within each third of the resolution range, not only on average
            for part in np.array_split(np.argsort(rho), 3):
                assert abs(np.median((fixed[part, k] - truth[part, k]) / crb[part, k])) < 0.3
        else:
            assert np.array_equal(fixed[:, k], mean[:, k])


def test_interval_scales_reach_the_nominal_coverage_and_map_samples_monotonically():
    from ml.morph.calibration import LEVELS, apply_interval_scales, fit_interval_scales
    from ml.morph.posterior import quantiles

    rng = np.random.default_rng(1)
    n, s = 3000, 2000
    samples = rng.normal(0.0, 1.0, (n, s, 2))  # the posterior says sigma 1 ...
    truth = rng.standard_t(4, (n, 2)) * np.array([2.0, 0.5])  # ... the truths scatter otherwise, heavy-tailed
    med, lo, hi = quantiles(samples)
    scales = fit_interval_scales(truth, med, lo, hi)
    assert scales.shape == (2, 3) and scales[0, 0] > 1.5 and scales[1, 0] < 0.6
    mapped = apply_interval_scales(samples, med, lo, hi, scales)
    m2, lo2, hi2 = quantiles(mapped)
    assert np.allclose(m2, med)
    # (to the sampling: the map's kinks fall between neighbouring samples, far apart in the tails)
    assert np.allclose(hi2 - med[..., None], scales[None] * (hi - med[..., None]), rtol=0.06)
    cover = ((truth[..., None] >= lo2) & (truth[..., None] <= hi2)).mean(0)
    assert np.all(np.abs(cover - np.array(LEVELS)) < 0.005)
    # monotone: every galaxy's samples keep their order
    assert (np.argsort(mapped[:5, :, 0], 1) == np.argsort(samples[:5, :, 0], 1)).all()


def test_target_crb_is_the_delta_rule_of_the_physical_bound():
    from ml.morph.calibration import target_crb

    truth = {"x": np.array([30.0]), "y": np.array([31.0]), "flux": np.array([500.0]), "re": np.array([4.0]), "n": np.array([2.0])}
    truth |= {"q": np.array([0.5]), "theta": np.array([0.3])}
    cov = np.diag([0.1, 0.2, 25.0, 0.04, 0.01, 0.0004, 0.0009])[None] ** 1.0
    c = target_crb("sersic", truth, cov, 64.0, np.array([3.0]))[0]
    assert c[:5] == pytest.approx([math.sqrt(0.1), math.sqrt(0.2), 5.0 / 500.0, 0.2 / 4.0, 0.1 / 2.0])


def test_the_size_test_split_by_index_reads_each_index_bin_on_its_own():
    rng = np.random.default_rng(3)
    k = 6000
    re, idx = rng.uniform(2.0, 20.0, k), rng.uniform(0.5, 6.0, k)
    scale = np.where(idx < 2.0, 2.0, np.where(idx < 4.0, 1.0, 0.5))  # the scatter depends on n only
    truth = np.zeros((k, 7))
    crb = np.full((k, 7), 0.01)
    est = truth + 0.01 * scale[:, None] * rng.standard_normal((k, 7))
    out = size_by_index({"d": {"truth": {"re": re, "n": idx}}, "truth": truth, "est": {"net": est}, "crb": crb})
    assert list(out["net"]) == ["n 0.5-2", "n 2-4", "n 4-6"]
    for label, want in (("n 0.5-2", 2.0), ("n 2-4", 1.0), ("n 4-6", 0.5)):
        cells = list(out["net"][label]["re"].values())
        assert len(cells) == 4 and all(abs(c / want - 1) < 0.15 for c in cells)
        assert 0.05 < out["floor"][label] < 0.25  # about 500 galaxies per cell


def _size_set(seed: int, k: int = 4000) -> tuple[np.random.Generator, np.ndarray, np.ndarray, dict]:
    """A size test of k galaxies (re 2-20 px, truth 1, CRB 0.01) whose every estimator sits at the
    bound: (rng, re, truth, estimates)."""
    rng = np.random.default_rng(seed)
    re = rng.uniform(2.0, 20.0, k)
    truth = np.ones((k, 7))
    return rng, re, truth, {e: truth + 0.01 * rng.standard_normal((k, 7)) for e in SIZE_ESTIMATORS}


def _size_table(re: np.ndarray, truth: np.ndarray, est: dict) -> dict:
    return size_table("sersic", {"d": {"truth": {"re": re}}, "truth": truth, "est": est, "crb": np.full_like(truth, 0.01)})


def test_the_size_table_reads_the_fitter_started_from_the_network_beside_the_network():
    rng, re, truth, est = _size_set(5)
    # the network's scatter grows with size, the fitter's from the network stays at the bound
    est["net"] = truth + 0.01 * (re / 5.0)[:, None] * rng.standard_normal(truth.shape)
    out = _size_table(re, truth, est)
    assert "lm_from_net" in out
    fit_re = list(out["lm_from_net"]["re"].values())
    net_re = list(out["net"]["re"].values())
    assert all(abs(c - 1.0) < 0.15 for c in fit_re)
    assert net_re[-1] > 2 * net_re[0]


def test_the_size_table_gives_each_bins_median_error_as_its_bias():
    _, re, truth, est = _size_set(6)
    est["net"] = est["net"] - 0.01 * (re > 14.0)[:, None]  # one CRB low for the largest galaxies only
    out = _size_table(re, truth, est)
    bias = out["bias"]["net"]["re"]
    assert abs(bias["re 2-4"]) < 0.1 and abs(bias["re 14-20"] + 1.0) < 0.1
    assert abs(out["bias"]["lm_from_net"]["re"]["re 14-20"]) < 0.1


def test_the_size_tables_floor_is_the_spread_of_bins_of_gaussian_scatter():
    few, many = spread_floor([128] * 4), spread_floor([1024] * 4)
    assert 0.17 < few < 0.28  # four bins of 128 cannot show a 10 % change
    assert 0.05 < many < 0.10  # about 1.17 / sqrt(n) per bin
    assert spread_floor([128] * 4) == few  # deterministic


@pytest.mark.django_db
def test_train_morphology_without_the_psf_shape_says_so_in_its_weights_and_card(tmp_path):
    out = tmp_path / "w"
    args = ("--kinds", "sersic", "--images", "64", "--sizes", "48", "--val-images", "32", "--epochs", "1", "--batch-size", "32")
    call_command("train_morphology", *args, "--width", "8", "--no-psf-shape", "--out", str(out), "--no-register", "--no-progress")
    assert "psf_shape" not in json.loads((out / "sersic.json").read_text())
    assert not load_nets(out)["sersic"].psf_shape
    card = json.loads((out / "model_card.json").read_text())
    assert "--no-psf-shape" in card["command"] and "told the PSF's FWHM only" in (out / "MODEL_CARD.md").read_text()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "init, match",
    [("missing", "not found"), ("shipped", "reads the PSF's shape")],  # the shipped Sérsic network reads it
)
def test_train_morphology_refuses_weights_that_cannot_start_it_and_writes_nothing(tmp_path, init, match):
    init_from = str(tmp_path / "nothing") if init == "missing" else "ml/weights/morph"
    with pytest.raises(CommandError, match=match):
        call_command(
            "train_morphology",
            "--kinds",
            "sersic",
            "--no-psf-shape",
            "--init-from",
            init_from,
            "--out",
            str(tmp_path / "w"),
            "--no-register",
            "--no-progress",
        )
    assert not (tmp_path / "w").exists()
