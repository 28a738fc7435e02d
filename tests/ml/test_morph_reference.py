"""ml.morph.reference: the Bayes reference's coordinates, prior, importance sampling; the command's use of it."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from django.core.management import CommandError, call_command

from fitting.engine.fit import fit
from ml.morph.evaluate import lm_columns, set_crb, truth_columns
from ml.morph.reference import SersicPrior, from_v, log_prior, reference_posterior, to_v, training_prior
from ml.morph.render import MorphConfig, render_set


def _set(n: int = 4, seed: int = 21, **kw) -> tuple[MorphConfig, dict]:
    cfg = MorphConfig(size=48, n=n, chunk=n, seed=seed, neighbour_prob=0.0, snr_range=(40.0, 80.0), re_range=(2.0, 6.0), **kw)
    return cfg, render_set(cfg)


def _fitted(d: dict) -> np.ndarray:
    """The likelihood's peak: the fitter started at the truth."""
    out = fit(
        torch.from_numpy(d["images"]),
        torch.from_numpy(d["sigma"]),
        torch.from_numpy(d["psfs"][0]),
        model="sersic",
        fit_sky=False,
        device="cpu",
        init=torch.from_numpy(d["p_true"]),
    )
    return lm_columns("sersic", out.params, out.covariance)[0]


def _proposal_samples(truth: np.ndarray, crb: np.ndarray, count: int = 300, seed: int = 0) -> np.ndarray:
    """Stand-in for the network's posterior samples: the truth moved by one draw of the bound, then
    spread by it (1.3x)."""
    rng = np.random.default_rng(seed)
    centre = truth + crb * rng.standard_normal(truth.shape)
    s = centre[:, None, :] + 1.3 * crb[:, None, :] * rng.standard_normal((len(truth), count, truth.shape[1]))
    s[..., 5] = np.clip(s[..., 5], 0.21, 0.999)
    return s


def test_sampling_coordinates_map_back_to_the_physical_columns():
    p = torch.tensor([[20.1, 23.9, 812.0, 4.2, 2.7, 0.35, 1.2], [24.0, 24.0, 55.0, 1.3, 0.6, 0.97, -0.4]], dtype=torch.float64)
    assert torch.allclose(from_v(to_v(p)), p, atol=1e-9)


def test_the_prior_is_a_density_over_its_box():
    prior = SersicPrior.of(MorphConfig(size=64))
    rng = np.random.default_rng(0)
    k = 400_000
    box = [
        (prior.centre - prior.offset, prior.centre + prior.offset),
        (prior.centre - prior.offset, prior.centre + prior.offset),
        (0.0, 1.0),  # ln flux: the flux's prior enters through ln_snr
        prior.ln_re,
        prior.n,
        (-1.0, 1.0),
        (-1.0, 1.0),
    ]
    v = torch.from_numpy(np.stack([rng.uniform(a, b, k) for a, b in box], 1))
    ln_snr = torch.from_numpy(rng.uniform(*prior.ln_snr, k))
    volume = math.prod(b - a for a, b in box[:2] + box[3:]) * (prior.ln_snr[1] - prior.ln_snr[0])
    integral = float(torch.exp(log_prior(v, prior, ln_snr)).mean()) * volume
    assert integral == pytest.approx(1.0, rel=0.03)


def test_the_prior_gives_the_axis_ratio_its_uniform_distribution():
    prior = SersicPrior.of(MorphConfig(size=64))
    rng = np.random.default_rng(1)
    k = 400_000
    s = rng.uniform(-1.0, 1.0, (k, 2))
    v = torch.zeros(k, 7, dtype=torch.float64)
    v[:, 0] = v[:, 1] = prior.centre
    v[:, 3], v[:, 4] = sum(prior.ln_re) / 2, sum(prior.n) / 2
    v[:, 5:] = torch.from_numpy(s)
    w = torch.exp(log_prior(v, prior, torch.full((k,), sum(prior.ln_snr) / 2))).numpy()
    q = from_v(v)[:, 5].numpy()
    inside = w > 0
    hist, _ = np.histogram(q[inside], bins=4, range=prior.q, weights=w[inside])
    assert np.allclose(hist / hist.sum(), 0.25, atol=0.02)


def test_the_reference_finds_the_truth_of_rendered_galaxies():
    cfg, d = _set()
    truth = truth_columns("sersic", d)
    _, crb = set_crb("sersic", d)
    prior = SersicPrior.of(replace(cfg, re_range=(1.0, 12.0), snr_range=(10.0, 200.0)))
    out = reference_posterior(
        d["images"], d["sigma"], d["psfs"][0], d["sky_sigma"], _proposal_samples(truth, crb), _fitted(d), prior, draws=(256, 512)
    )
    z = (out["median"] - truth) / crb
    assert np.isfinite(z).all()
    assert np.abs(z[:, [0, 1, 2, 3]]).max() < 4.0
    assert np.median(out["ess"][:, -1]) > 50


def test_the_reference_holds_the_index_inside_a_narrow_prior():
    cfg, d = _set(seed=22)
    truth = truth_columns("sersic", d)
    _, crb = set_crb("sersic", d)
    wide = SersicPrior.of(replace(cfg, re_range=(1.0, 12.0), snr_range=(10.0, 200.0)))
    lo, hi = float(truth[:, 4].min()) - 0.05, float(truth[:, 4].max()) + 0.05
    narrow = replace(wide, n=(lo, hi))
    args = (d["images"], d["sigma"], d["psfs"][0], d["sky_sigma"], _proposal_samples(truth, crb), _fitted(d))
    a = reference_posterior(*args, wide, draws=(256, 512))
    b = reference_posterior(*args, narrow, draws=(256, 512))
    assert ((b["median"][:, 4] >= lo) & (b["median"][:, 4] <= hi)).all()
    assert (b["std"][:, 4] < a["std"][:, 4]).all()


def test_the_training_prior_comes_from_the_card_entry_of_its_network():
    top = {"re_range": [1.0, 48.0], "re_max_fraction": 0.375, "snr_range": [10.0, 200.0], "n_range": [0.5, 6.0]}
    kept = {**top, "re_range": [1.0, 25.0], "re_max_fraction": 0.2}
    card = {
        "training_data": {"render": top},
        "members": [{"kind": "sersic"}, {"kind": "bulge_disk", "made_by": {"training_data": {"render": kept}}}],
    }
    s, b = training_prior(card, "sersic", 128), training_prior(card, "bulge_disk", 128)
    assert (s.re_range, s.re_max_fraction, s.size, s.kind) == ((1.0, 48.0), 0.375, 128, "sersic")
    assert (b.re_range, b.re_max_fraction, b.kind) == ((1.0, 25.0), 0.2, "bulge_disk")
    with pytest.raises(ValueError, match="no sersic"):
        training_prior({"members": []}, "sersic", 128)


def test_evaluate_morphology_refuses_a_reference_without_the_training_prior(tmp_path):
    from ml.morph.nets import MorphNet
    from ml.morph.targets import TARGETS
    from ml.morph.train import TrainConfig, save_net

    sha = save_net(MorphNet(TARGETS["sersic"], width=8), "sersic", TrainConfig(width=8), tmp_path)
    (tmp_path / "ensemble.json").write_text(
        json.dumps({"name": "t", "task": "morphology", "members": [{"file": "sersic.pt", "sha256": sha}]})
    )
    with pytest.raises(CommandError, match="training prior"):
        call_command("evaluate_morphology", "--weights", str(tmp_path), "--size-kinds", "sersic", "--reference", "8")
