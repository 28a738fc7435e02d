"""Post-hoc calibration of the morphology posteriors, fitted on a set of its own seed.

Two corrections, both fitted per model kind and per number of MC-dropout passes on galaxies drawn
like the held-out test set but with ml.morph.train.CAL_SEED (neither a training nor the test
seed), per cutout side (64 px and 128 px), and applied by :func:`ml.morph.posterior.posterior`
wherever the network is used, to cutouts of a calibrated side only (the networks' biases differ
between sides: fitted at 64 px, the mean correction makes 128 px sizes worse):

1. Mean correction, in target space, before sampling. The networks' errors are not centred: they
   depend smoothly on how well the galaxy is resolved and on its signal-to-noise ratio (e.g. the
   bulge+disk total flux sits ~5 CRB high). Each pass's mean m gets m_k + f(m) . beta_k, with
   f = (piecewise-linear "hat" functions of the resolution rho = ln re - ln FWHM from the
   mean's own radius, at the calibration set's rho quantiles MEAN_KNOTS; ln FWHM; the mean's
   ln(flux / noise)), for the targets in CORRECTED (ln flux, ln re, ln re_disk, ln re_bulge,
   ln n, logit B/T). The centre (dx, dy) and the ellipticity (g1, g2) are not shifted (no bias
   by symmetry in the centre and the angle; the q bias is small, see EVALUATION.md). beta_k
   minimises sum_i |r_ik - f_i . beta_k| / c_ik, r the residual (truth - mean) and c the
   Cramér-Rao bound in target units: the sum of the absolute errors in CRB units (a median
   regression, by iteratively reweighted least squares; it leaves the median error in CRB units
   near, not exactly at, zero, as no feature is proportional to c).
2. Interval scales, after sampling (a symmetric three-knot form of the recalibration of
   Kuleshov, Fenner & Ermon 2018, ICML, "Accurate uncertainties for deep learning using
   calibrated regression"): per physical column and level L (68.3 / 95.4 / 99.7 %), the factor
   t_L by which the central interval's half-widths about the median must be multiplied so that it
   holds that share of the calibration truths (the share-quantile of each galaxy's needed factor).
   The samples are mapped by the monotone piecewise-linear function that sends each uncalibrated
   half-width w_L to t_L w_L, so the intervals, the histograms and the standard deviation stay
   quantiles and moments of one set of samples.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ml.morph.targets import PHYSICAL, TARGETS, to_targets
from ml.weights_files import sha256_file

#: Central interval probabilities kept (1, 2, 3 sigma).
LEVELS = (0.6827, 0.9545, 0.9973)
#: Targets the mean correction shifts.
CORRECTED = ("ln_flux", "ln_re", "ln_n", "logit_bt", "ln_re_disk", "ln_re_bulge")
#: Quantiles of the calibration set's resolution rho at which the hat functions have their knots.
MEAN_KNOTS = (0.01, 0.2, 0.4, 0.6, 0.8, 0.99)
#: Range of the interval scales t_L.
SCALE_RANGE = (0.2, 5.0)
#: Iterations and floor (CRB units) of the reweighted least squares of the median regression.
IRLS_STEPS, IRLS_FLOOR = 60, 1e-3


def _size_index(kind: str) -> int:
    return TARGETS[kind].index("ln_re" if kind == "sersic" else "ln_re_disk")


def mean_features(kind: str, mean_t: np.ndarray, fwhm: np.ndarray, knots: np.ndarray) -> np.ndarray:
    """Features f [N, F] of the mean correction from means [N, K] (target units) and PSF FWHM [N] (px)."""
    rho = np.clip(mean_t[:, _size_index(kind)] - np.log(fwhm), knots[0], knots[-1])
    hats = np.zeros((len(rho), len(knots)))
    for i in range(len(knots)):
        if i > 0:
            up = (rho >= knots[i - 1]) & (rho <= knots[i])
            hats[up, i] = (rho[up] - knots[i - 1]) / (knots[i] - knots[i - 1])
        if i < len(knots) - 1:
            down = (rho >= knots[i]) & (rho <= knots[i + 1])
            hats[down, i] = np.maximum(hats[down, i], (knots[i + 1] - rho[down]) / (knots[i + 1] - knots[i]))
    ln_flux = mean_t[:, TARGETS[kind].index("ln_flux")]
    return np.concatenate([hats, np.log(fwhm)[:, None], ln_flux[:, None]], 1)


def _median_regression(f: np.ndarray, r: np.ndarray, c: np.ndarray) -> np.ndarray:
    """beta minimising sum |r - f beta| / c (IRLS)."""
    beta = np.linalg.lstsq(f / c[:, None], r / c, rcond=None)[0]
    for _ in range(IRLS_STEPS):
        w = 1.0 / (c * c * np.maximum(np.abs(r - f @ beta) / c, IRLS_FLOOR))
        a = f * w[:, None]
        beta = np.linalg.lstsq(f.T @ a, a.T @ r, rcond=None)[0]  # lstsq: a feature may be constant on a small set
    return beta


def fit_mean_correction(kind: str, mean_t: np.ndarray, truth_t: np.ndarray, crb_t: np.ndarray, fwhm: np.ndarray) -> dict:
    """The mean correction {'knots': [...], 'coef': {target: beta}} from a calibration set:
    means, true targets and target-space CRB [N, K], FWHM [N]."""
    ok = np.isfinite(mean_t).all(1) & np.isfinite(truth_t).all(1) & np.isfinite(crb_t).all(1) & (crb_t > 0).all(1)
    m, t, c, fw = mean_t[ok], truth_t[ok], crb_t[ok], fwhm[ok]
    rho = m[:, _size_index(kind)] - np.log(fw)
    knots = np.quantile(rho, MEAN_KNOTS)
    f = mean_features(kind, m, fw, knots)
    coef = {name: _median_regression(f, t[:, k] - m[:, k], c[:, k]).tolist() for k, name in enumerate(TARGETS[kind]) if name in CORRECTED}
    return {"knots": [float(v) for v in knots], "coef": coef}


def apply_mean_correction(kind: str, mean_t: torch.Tensor, fwhm: torch.Tensor, corr: dict) -> torch.Tensor:
    """Corrected means [N, K] (float64) from means [N, K] and FWHM [N]."""
    m = mean_t.double().cpu().numpy()
    f = mean_features(kind, m, np.broadcast_to(fwhm.double().cpu().numpy(), (len(m),)), np.asarray(corr["knots"]))
    out = m.copy()
    for k, name in enumerate(TARGETS[kind]):
        if name in corr["coef"]:
            out[:, k] += f @ np.asarray(corr["coef"][name])
    return torch.from_numpy(out)


def target_crb(kind: str, truth: dict, crb_cov: np.ndarray, size: float, noise: np.ndarray) -> np.ndarray:
    """Cramér-Rao bound [N, K] of the targets (delta rule through ml.morph.targets.to_targets) from
    the physical truth {name: [N]} and the CRB covariance [N, K', K'] of the physical columns."""
    names = PHYSICAL[kind]
    phys = torch.tensor(np.stack([truth[c] for c in names], 1), dtype=torch.float64, requires_grad=True)
    n = phys.shape[0]
    t = to_targets(kind, {c: phys[:, j] for j, c in enumerate(names)}, torch.full((n,), float(size)), torch.as_tensor(noise))
    g = torch.stack([torch.autograd.grad(t[:, k].sum(), phys, retain_graph=True)[0] for k in range(t.shape[1])], 1)
    cov = torch.as_tensor(crb_cov, dtype=torch.float64)
    return torch.sqrt(torch.diagonal(g @ cov @ g.transpose(1, 2), dim1=1, dim2=2).clamp_min(0.0)).numpy()


def needed_scales(lo: np.ndarray, hi: np.ndarray, truth: np.ndarray, med: np.ndarray) -> np.ndarray:
    """Per galaxy, column and level, the factor [N, K', L] by which the interval's half-width on
    the truth's side must be multiplied to reach the truth (lo, hi [N, K', L]; truth, med [N, K'])."""
    d = (truth - med)[..., None]
    half = np.where(d >= 0, hi - med[..., None], med[..., None] - lo)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(half > 0, np.abs(d) / half, np.where(d == 0, 0.0, np.inf))


def fit_interval_scales(truth: np.ndarray, med: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Scales t [K', L]: the LEVELS quantile of each column's needed factors, within SCALE_RANGE.
    truth must already lie in the median's branch for periodic columns."""
    need = np.minimum(needed_scales(lo, hi, truth, med), 10 * SCALE_RANGE[1])  # no inf in the quantiles
    t = np.empty(need.shape[1:])
    for j in range(need.shape[1]):
        for ell, p in enumerate(LEVELS):
            col = need[:, j, ell]
            t[j, ell] = np.quantile(col[~np.isnan(col)], p)
    return np.clip(t, *SCALE_RANGE)


def apply_interval_scales(samples: np.ndarray, med: np.ndarray, lo: np.ndarray, hi: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """Samples [N, S, K'] mapped about their medians med [N, K'] so that the half-widths w_L of the
    central intervals (lo, hi [N, K', L]) become scales [K', L] times w_L (monotone, piecewise
    linear; beyond the outermost level proportional)."""
    d = samples - med[:, None, :]
    out = np.empty_like(d)
    for side, w in ((1.0, hi - med[..., None]), (-1.0, med[..., None] - lo)):
        w = np.maximum(w, 0.0)  # [N, K', L]
        v = np.maximum.accumulate(w * scales[None], axis=-1)
        a = np.abs(d)
        sel = (d >= 0) if side > 0 else (d < 0)
        mapped = np.zeros_like(a)
        prev_w = np.zeros(w.shape[:2])
        prev_v = np.zeros(w.shape[:2])
        done = np.zeros(a.shape, dtype=bool)
        for ell in range(w.shape[-1]):
            wl, vl = w[..., ell], v[..., ell]
            seg = ~done & (a <= wl[:, None, :])
            width = (wl - prev_w)[:, None, :]
            with np.errstate(divide="ignore", invalid="ignore"):
                slope = np.where(width > 0, (vl - prev_v)[:, None, :] / width, 0.0)
            mapped = np.where(seg, prev_v[:, None, :] + (a - prev_w[:, None, :]) * slope, mapped)
            done |= seg
            prev_w, prev_v = wl, vl
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(prev_w > 0, prev_v / prev_w, 1.0)[:, None, :]
        mapped = np.where(done, mapped, a * ratio)
        out = np.where(sel, side * mapped, out)
    return med[:, None, :] + out


#: Heading of the model card's section on the calibration (the section is the card's last).
CARD_SECTION = "## Posterior calibration"


def write_calibration(directory: str | Path, cal: dict, command: str) -> None:
    """calibration.json in the weights folder, listed with its sha256 in ensemble.json (load_nets
    checks it and applies it), and recorded in the model card (model_card.json's
    ``posterior_calibration``, MODEL_CARD.md's last section) when the folder has one."""
    directory = Path(directory)
    path = directory / "calibration.json"
    path.write_text(json.dumps({**cal, "command": command}, indent=1))
    sha = sha256_file(path)
    manifest_path = directory / "ensemble.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["calibration"] = {"file": path.name, "sha256": sha}
    manifest_path.write_text(json.dumps(manifest, indent=1))
    card_path = directory / "model_card.json"
    if card_path.exists():
        card = json.loads(card_path.read_text())
        card["posterior_calibration"] = {
            "command": command,
            "file": path.name,
            "sha256": sha,
            "seed": cal["seed"],
            "sides": {
                side: {"seed": e["seed"], "n": e["n"], "passes": sorted(int(p) for p in e["passes"])} for side, e in cal["sides"].items()
            },
        }
        card_path.write_text(json.dumps(card, indent=1))
    md_path = directory / "MODEL_CARD.md"
    if md_path.exists():
        text = md_path.read_text()
        text = text.split(CARD_SECTION)[0].rstrip() + "\n\n" + calibration_markdown({**cal, "command": command}, sha)
        md_path.write_text(text)


def calibration_markdown(cal: dict, sha: str) -> str:
    """The model card's section on a calibration (calibration.json's content and sha256)."""
    sides = ", ".join(f"{side} px: {e['n']} galaxies per model of seed {e['seed']}" for side, e in cal["sides"].items())
    passes = sorted({p for e in cal["sides"].values() for p in e["passes"]}, key=int)
    lines = [
        CARD_SECTION,
        "",
        f"Made by: `{cal['command']}` (calibration.json, sha256 {sha}, checked on loading).",
        "",
        f"Fitted per cutout side on sets drawn like the held-out test sets (isolated, SNR 20-100; 64 px with re 1-12 px, "
        f"128 px with re 2-20 px; one PSF per {cal.get('chunk', '?')}) with seeds that are neither training nor test seeds "
        f"({sides}), one entry per side and number of MC-dropout passes ({', '.join(passes)}). Every use of the network "
        "(the bench, the fitter's start values, the worker and so the API and pages) applies the entry for its cutout side "
        "and passes, none when there is none (`calibrated` false; the networks' biases differ between sides, and a "
        "correction fitted at 64 px makes 128 px sizes worse). What it does (ml.morph.calibration):",
        "",
        "1. Mean correction before sampling, in target space: each pass's mean of ln(flux / noise), ln re (bulge+disk: "
        "ln re_disk, ln re_bulge), ln n and logit B/T is shifted by a linear function of 6 piecewise-linear functions of "
        "the resolution ln re - ln FWHM (knots at its 1/20/40/60/80/99 % quantiles in the calibration set, clamped "
        "outside), ln FWHM and the mean's own ln(flux / noise), fitted by minimising the sum of the absolute residuals in "
        "CRB units. Centre and ellipticity (x, y, q, theta) are not shifted. The stored target mean is the corrected "
        "one; the network's covariance is kept as it is.",
        "2. Interval scales after sampling: per physical column and level, a factor on the central interval's half-widths "
        "about the median (the share-quantile of the factors each calibration galaxy needs), applied as a monotone "
        "piecewise-linear map of the samples (then clipped to the physical ranges: q, B/T in [0, 1], sizes and fluxes "
        ">= 0), so that the median stays and the intervals, histograms and std come from the same samples.",
        "",
        "| side | passes | model | column | bias before / after (CRB) | coverage 68.3/95.4/99.7 before | after | scales |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for side, e_side in cal["sides"].items():
        for p in sorted(e_side["passes"], key=int):
            for kind, e in e_side["passes"][p].items():
                for c in PHYSICAL[kind]:
                    lines.append(
                        f"| {side} | {p} | {kind} | {c} | {e['bias_before'][c]:+.2f} / {e['bias_after'][c]:+.2f} | "
                        + " | ".join("/".join(f"{100 * v:.1f}" for v in e[f"coverage_{k}"][c]) for k in ("before", "after"))
                        + " | "
                        + "/".join(f"{v:.2f}" for v in e["scales"][c])
                        + " |"
                    )
    lines += ["", "These are in-sample figures of the calibration sets; the held-out ones are in EVALUATION.md.", ""]
    return "\n".join(lines)
