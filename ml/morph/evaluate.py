"""Held-out evaluation of the morphology networks against the Cramér-Rao bound and the LM fitter.

On galaxies rendered with a seed no training run uses (ml.morph.train.TEST_SEED), isolated (no
neighbour: the bound is that of the galaxy alone), SNR 20-100, one PSF per TEST_CHUNK galaxies:

- per physical column and SNR bin, bias and scatter of (estimate - truth) / CRB for the network's
  posterior median (``net``: with the weights' calibration, as everything that uses the network
  sees it; ``net_raw``: without), the LM fit from image moments and the LM fit started at the
  network's values (bias: median; scatter: 1.4826 MAD, so that the few catastrophic misses,
  counted separately as |z| > 5, do not decide it); the network on ``net_n`` galaxies, the fits
  on the first ``n`` of them;
- coverage of the network's central 68.3 / 95.4 / 99.7 % intervals and of the fitter's
  +-1/2/3 sigma covariance errors;
- scatter against size: 128 px cutouts with re from 2 to 20 px (the crop head's job);
- the two fitter starts on the same images: iterations, failures, outliers (the engine bench's
  outlier rule);
- optionally, on the first galaxies of the Sérsic size test, the Bayes reference of
  :mod:`ml.morph.reference` (each galaxy's posterior under the network's training prior): the
  best any estimator with the network's prior can do, against which the network's scatter is
  read per size bin where the bound, blind to the prior, cannot be.

:func:`calibrate` fits the posterior calibration (ml.morph.calibration) on a set drawn like the
test set with ml.morph.train.CAL_SEED.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from fitting.engine.fit import fit
from ml.morph.calibration import fit_interval_scales, fit_mean_correction, target_crb
from ml.morph.crb import cramer_rao
from ml.morph.posterior import network_runs, posterior, summaries
from ml.morph.reference import SersicPrior, reference_posterior
from ml.morph.render import MorphConfig, render_set
from ml.morph.targets import PHYSICAL, to_targets
from ml.morph.train import CAL_SEED, TEST_SEED

SNR_BINS = ((20.0, 40.0), (40.0, 70.0), (70.0, 100.0))
RE_BINS = ((2.0, 4.0), (4.0, 8.0), (8.0, 14.0), (14.0, 20.0))
#: Sérsic index bins of the size test's breakdown (:func:`size_by_index`); the last one closes
#: at the renderer's largest index.
INDEX_BINS = ((0.5, 2.0), (2.0, 4.0), (4.0, 6.0))
#: |z| beyond which an estimate counts as a catastrophic miss (not in the MAD scatter).
MISS_Z = 5.0
#: Galaxies per model of the size test. The MAD scatter of n Gaussian values is uncertain by
#: about 1.17/sqrt(n), so an estimator at its bound over four bins of 128 would show a max/min
#: spread of 22 % (median; 39 % at the 90th percentile), and a change of 10 % could not be seen;
#: with about 1,000 per bin the spread is 7.5 %. The size table prints this floor beside each spread.
SIZE_N = 4096
#: Estimators of the size table: the network (calibrated and raw) and the fitter from moments and
#: from the network's values (what the worker stores when a morphology model is active).
SIZE_ESTIMATORS = ("net", "net_raw", "lm", "lm_from_net")
#: Network posterior samples per galaxy from which the reference's first proposal is made.
REFERENCE_NET_DRAWS = 400
#: Bootstrap resamples of the reference table's ratios.
REFERENCE_BOOT = 300
#: Outlier rule of the fitter starts (as fitting.engine.bench: px, fractions, absolute).
OUTLIER = {"x": 1.0, "y": 1.0, "flux": 0.2, "re": 0.2, "re_disk": 0.2, "n": 1.0, "q": 0.1, "q_disk": 0.1, "bt": 0.2}
#: Galaxies per PSF in the test and calibration sets (more PSFs than the training chunks: the
#: networks' errors depend on the PSF, and a figure over few PSFs would be one of those PSFs).
TEST_CHUNK = 16


def truth_columns(kind: str, d: dict) -> np.ndarray:
    return np.stack([d["truth"][c] for c in PHYSICAL[kind]], 1)


def lm_columns(kind: str, params: torch.Tensor, cov: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """The fitter's physical parameters [B, P] and covariance [B, P, P] (engine order) as the
    network's columns and their 1-sigma errors (delta rule)."""
    p = params.double().clone().requires_grad_(True)
    if kind == "sersic":
        cols = p[:, [0, 1, 3, 4, 5, 6, 7]]
    else:
        fb, fd = p[:, 3], p[:, 8]
        cols = torch.stack([p[:, 0], p[:, 1], fb + fd, fb / (fb + fd), p[:, 9], p[:, 4], p[:, 11], p[:, 12]], 1)
    rows = [torch.autograd.grad(cols[:, k].sum(), p, retain_graph=True)[0] for k in range(cols.shape[1])]
    g = torch.nan_to_num(torch.stack(rows, 1))
    c = torch.nan_to_num(cov.double(), nan=0.0, posinf=0.0)
    var = torch.diagonal(g @ c @ g.transpose(1, 2), dim1=1, dim2=2)
    err = torch.sqrt(var.clamp_min(0.0)).numpy()
    err[~np.isfinite(cols.detach().numpy())] = np.nan
    return cols.detach().numpy(), err


def init_from_net(kind: str, med: np.ndarray) -> torch.Tensor:
    """Engine start values [B, P] (physical_names order, sky 0) from the network's medians."""
    b = med.shape[0]
    z = np.zeros(b)
    if kind == "sersic":
        x, y, f, re, n, q, th = med.T
        p = np.stack([x, y, z, f, re, n, q, th], 1)
    else:
        x, y, f, bt, red, reb, q, th = med.T
        p = np.stack([x, y, z, f * bt, reb, np.full(b, 2.5), np.full(b, 0.8), th, f * (1 - bt), red, np.ones(b), q, th], 1)
    return torch.from_numpy(p)


def _wrap(d: np.ndarray, kind: str) -> np.ndarray:
    j = PHYSICAL[kind].index("theta")
    d = d.copy()
    d[:, j] = (d[:, j] + math.pi / 2) % math.pi - math.pi / 2
    return d


def set_crb(kind: str, d: dict) -> tuple[np.ndarray, np.ndarray]:
    """CRB covariance [N, K', K'] and 1-sigma bounds [N, K'] of a rendered set's physical columns."""
    k = len(PHYSICAL[kind])
    cov, bound = np.empty((len(d["snr"]), k, k)), np.empty((len(d["snr"]), k))
    for j, psf in enumerate(d["psfs"]):
        sel = np.nonzero(d["psf_index"] == j)[0]
        c, b = cramer_rao(kind, torch.from_numpy(d["p_true"][sel]), torch.from_numpy(psf), torch.from_numpy(d["sigma"][sel]))
        cov[sel], bound[sel] = c.numpy(), b.numpy()
    return cov, bound


def run_set(
    kind: str,
    net,
    cfg: MorphConfig,
    *,
    draws: int = 1000,
    passes: int = 1,
    more_passes: tuple[int, ...] = (),
    fit_n: int | None = None,
    log=print,
) -> dict:
    """Network (calibrated and raw; calibrated also for each of ``more_passes``, as estimator
    ``net_<p>p``) and CRB on one rendered set, both LM fits on its first ``fit_n`` galaxies
    (default all); arrays per galaxy (NaN where not fitted)."""
    d = render_set(cfg)
    truth = truth_columns(kind, d)
    n = len(d["snr"])
    fit_n = n if fit_n is None else min(fit_n, n)
    t0 = time.perf_counter()
    post = posterior(net, d["images"], d["noise"], d["fwhm"], draws=draws, passes=passes, shape=d["psf_shape"])
    net_s = time.perf_counter() - t0
    raw = posterior(net, d["images"], d["noise"], d["fwhm"], draws=draws, passes=passes, calibrated=False, shape=d["psf_shape"])
    more = {
        f"net_{p}p": posterior(net, d["images"], d["noise"], d["fwhm"], draws=draws, passes=p, shape=d["psf_shape"]) for p in more_passes
    }
    _, crb = set_crb(kind, d)
    est = {e: np.full_like(truth, np.nan) for e in ("lm", "lm_from_net")}
    err = {e: np.full_like(truth, np.nan) for e in ("lm", "lm_from_net")}
    iters = {e: np.zeros(fit_n, dtype=int) for e in ("lm", "lm_from_net")}
    conv = {e: np.zeros(fit_n, dtype=bool) for e in ("lm", "lm_from_net")}
    secs = {"lm": 0.0, "lm_from_net": 0.0}
    init = init_from_net(kind, post["median"])
    for j, psf in enumerate(d["psfs"]):
        sel = np.nonzero((d["psf_index"] == j) & (np.arange(n) < fit_n))[0]
        if not len(sel):
            continue
        psf_t = torch.from_numpy(psf)
        sig = torch.from_numpy(d["sigma"][sel])
        for e in ("lm", "lm_from_net"):
            out = fit(
                torch.from_numpy(d["images"][sel]),
                sig,
                psf_t,
                model=kind,
                fit_sky=False,
                device="cpu",
                init=None if e == "lm" else init[sel],
            )
            est[e][sel], err[e][sel] = lm_columns(kind, out.params, out.covariance)
            iters[e][sel] = out.iterations.numpy()
            conv[e][sel] = out.converged.numpy()
            secs[e] += out.seconds
    log(
        f"{kind} {cfg.size} px: {n} galaxies ({fit_n} fitted); network {net_s / n * 1e3:.2f} ms/galaxy (with sampling), "
        f"LM {secs['lm'] / max(fit_n, 1) * 1e3:.1f} ms/galaxy"
    )
    return {
        "d": d,
        "truth": truth,
        "crb": crb,
        "est": {"net": post["median"], "net_raw": raw["median"], **{e: o["median"] for e, o in more.items()}, **est},
        "err": {"net": post["std"], "net_raw": raw["std"], **err},
        "lo": {"net": post["lo"], "net_raw": raw["lo"], **{e: o["lo"] for e, o in more.items()}},
        "hi": {"net": post["hi"], "net_raw": raw["hi"], **{e: o["hi"] for e, o in more.items()}},
        "calibrated_more": {e: o["calibrated"] for e, o in more.items()},
        "iters": iters,
        "converged": conv,
        "fit_n": fit_n,
        "seconds": {"net": net_s, **secs},
        "zoom": post["zoom"],
        "calibrated": post["calibrated"],
    }


def test_config(kind: str, n: int, seed: int) -> MorphConfig:
    """The held-out (and calibration) set at 64 px: isolated galaxies, SNR 20-100, re 1-12 px."""
    return MorphConfig(
        kind=kind, size=64, n=n, seed=seed, chunk=TEST_CHUNK, snr_range=(20.0, 100.0), neighbour_prob=0.0, re_range=(1.0, 12.0)
    )


def _branch(kind: str, truth: np.ndarray, med: np.ndarray) -> np.ndarray:
    """Truth [N, K'] with theta moved into the branch of the median's."""
    t = truth.copy()
    ith = PHYSICAL[kind].index("theta")
    t[:, ith] = med[:, ith] + ((t[:, ith] - med[:, ith] + math.pi / 2) % math.pi - math.pi / 2)
    return t


def size_config(kind: str, n: int, seed: int) -> MorphConfig:
    """The size test's set (and the 128 px calibration set): 128 px, isolated, SNR 20-100, re 2-20 px."""
    return MorphConfig(
        kind=kind,
        size=128,
        n=n,
        seed=seed,
        chunk=TEST_CHUNK,
        snr_range=(20.0, 100.0),
        neighbour_prob=0.0,
        re_range=(2.0, 20.0),
        re_max_fraction=0.2,
    )


def _inside(kind: str, truth: np.ndarray, med: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """[N, K', L] whether the truth lies in each interval (theta moved into the median's branch)."""
    t = _branch(kind, truth, med)
    return (t[:, :, None] >= lo) & (t[:, :, None] <= hi)


def calibrate(
    nets: dict,
    *,
    n: int = 4096,
    size_n: int = 2048,
    seed: int = CAL_SEED,
    passes: tuple[int, ...] = (1,),
    draws: int = 1000,
    log=print,
) -> dict:
    """The posterior calibration (ml.morph.calibration) of every network for each number of
    passes and each cutout side, fitted on sets drawn like the test sets with their own seeds
    (neither training nor test): ``n`` galaxies like :func:`test_config` (64 px, seed ``seed``)
    and ``size_n`` like :func:`size_config` (128 px, seed ``seed + 1``). Per side and passes: the
    mean correction on the passes' average means, then the interval scales on the corrected
    posterior, with the calibration set's bias (median (estimate - truth) / CRB) and coverage per
    column before and after. A side is calibrated only by its own set (the networks' biases
    change with the side); posterior() leaves other sides uncalibrated."""
    out: dict = {"seed": seed, "n": n, "size_n": size_n, "draws": draws, "chunk": TEST_CHUNK, "sides": {}}
    for make, count, set_seed in ((test_config, n, seed), (size_config, size_n, seed + 1)):
        for kind, net in nets.items():
            d = render_set(make(kind, count, set_seed))
            size = float(d["images"].shape[-1])
            side = out["sides"].setdefault(str(int(size)), {"seed": set_seed, "n": count, "passes": {}})
            truth = truth_columns(kind, d)
            crb_cov, crb = set_crb(kind, d)
            sizes = torch.full((len(d["snr"]),), size)
            truth_t = to_targets(kind, d["truth"], sizes, torch.from_numpy(d["noise"])).numpy()
            crb_t = target_crb(kind, d["truth"], crb_cov, size, d["noise"])
            for p in passes:
                runs, nz, fw = network_runs(net, d["images"], d["noise"], d["fwhm"], p, d["psf_shape"])
                mean = torch.stack([r[0] for r in runs]).mean(0).numpy()
                corr = fit_mean_correction(kind, mean, truth_t, crb_t, d["fwhm"])
                raw = summaries(kind, runs, size, nz, fw, draws=draws)
                shifted = summaries(kind, runs, size, nz, fw, draws=draws, calibration={"mean": corr})
                scales = fit_interval_scales(_branch(kind, truth, shifted["median"]), shifted["median"], shifted["lo"], shifted["hi"])
                final = summaries(kind, runs, size, nz, fw, draws=draws, calibration={"mean": corr, "scales": scales})
                entry: dict = {"mean": corr, "scales": {c: [float(v) for v in scales[j]] for j, c in enumerate(PHYSICAL[kind])}}
                for label, post in (("before", raw), ("after", final)):
                    z = _wrap(post["median"] - truth, kind) / crb
                    cover = _inside(kind, truth, post["median"], post["lo"], post["hi"]).mean(0)
                    entry[f"bias_{label}"] = {c: float(np.nanmedian(z[:, j])) for j, c in enumerate(PHYSICAL[kind])}
                    entry[f"coverage_{label}"] = {c: [float(v) for v in cover[j]] for j, c in enumerate(PHYSICAL[kind])}
                side["passes"].setdefault(str(p), {})[kind] = entry
                log(
                    f"{kind}, {int(size)} px, {p} pass(es): bias after "
                    + ", ".join(f"{c} {v:+.2f}" for c, v in entry["bias_after"].items())
                    + "; interval scales "
                    + ", ".join(f"{c} {'/'.join(f'{v:.2f}' for v in t)}" for c, t in entry["scales"].items())
                )
    return out


def _stats(z: np.ndarray) -> dict:
    z = z[np.isfinite(z)]
    if z.size < 3:
        return {"bias": float("nan"), "scatter": float("nan"), "miss": float("nan"), "n": int(z.size)}
    med = float(np.median(z))
    return {
        "bias": med,
        "scatter": float(1.4826 * np.median(np.abs(z - med))),
        "miss": float(np.mean(np.abs(z) > MISS_Z)),
        "n": int(z.size),
    }


def crb_table(kind: str, res: dict) -> dict:
    """{estimator: {column: {'all': stats, 'snr a-b': stats}}} of z = (est - truth) / CRB."""
    snr = res["d"]["snr"]
    out: dict = {}
    for e in res["est"]:
        z = _wrap(res["est"][e] - res["truth"], kind) / res["crb"]
        out[e] = {}
        for j, c in enumerate(PHYSICAL[kind]):
            row = {"all": _stats(z[:, j])}
            for lo, hi in SNR_BINS:
                row[f"snr {lo:.0f}-{hi:.0f}"] = _stats(z[(snr >= lo) & (snr < hi), j])
            out[e][c] = row
    return out


def coverage(kind: str, res: dict) -> dict:
    """Fraction of truths inside the network's intervals and the fitters' +-k sigma, per column."""
    out: dict = {e: {} for e in res["est"]}
    for e in res["lo"]:
        inside = _inside(kind, res["truth"], res["est"][e], res["lo"][e], res["hi"][e]).mean(0)
        out[e] = {c: [float(v) for v in inside[j]] for j, c in enumerate(PHYSICAL[kind])}
    for j, c in enumerate(PHYSICAL[kind]):
        for e in ("lm", "lm_from_net"):
            d = _wrap(res["est"][e] - res["truth"], kind)[:, j]
            s = res["err"][e][:, j]
            ok = np.isfinite(d) & np.isfinite(s) & (s > 0)
            out[e][c] = [float(np.mean(np.abs(d[ok]) <= k * s[ok])) if ok.any() else float("nan") for k in (1, 2, 3)]
    return out


def spread_floor(counts: list[int], trials: int = 2000, seed: int = 0) -> float:
    """Median of max / min - 1 of the MAD scatters of Gaussian samples of these sizes: the spread
    across bins that an estimator whose scatter does not change would still show."""
    rng = np.random.default_rng(seed)
    spreads = np.empty(trials)
    for t in range(trials):
        s = [1.4826 * np.median(np.abs(z - np.median(z))) for z in (rng.standard_normal(k) for k in counts)]
        spreads[t] = max(s) / min(s) - 1
    return float(np.median(spreads))


def size_table(kind: str, res: dict) -> dict:
    """Scatter (1.4826 MAD) of z = (est - truth) / CRB per re bin, per estimator and column, the
    spread across bins that sampling alone gives (``floor``, see spread_floor), and the median of
    z per bin (``bias``: an estimator that regresses towards its prior's centre trades scatter
    for a bias that grows towards the edges of the size range)."""
    re_col = "re" if kind == "sersic" else "re_disk"
    re = res["d"]["truth"][re_col]
    out: dict = {"floor": spread_floor([int(((re >= lo) & (re < hi)).sum()) for lo, hi in RE_BINS]), "bias": {}}
    for e in SIZE_ESTIMATORS:
        z = _wrap(res["est"][e] - res["truth"], kind) / res["crb"]
        stats = {
            c: {f"re {lo:.0f}-{hi:.0f}": _stats(z[(re >= lo) & (re < hi), j]) for lo, hi in RE_BINS} for j, c in enumerate(PHYSICAL[kind])
        }
        out[e] = {c: {b: v["scatter"] for b, v in row.items()} for c, row in stats.items()}
        out["bias"][e] = {c: {b: v["bias"] for b, v in row.items()} for c, row in stats.items()}
    return out


def size_by_index(res: dict) -> dict:
    """The Sérsic size test split by the true index: the calibrated network's scatter (1.4826
    MAD) of z = (est - truth) / CRB per index bin and re bin, with each index bin's sampling
    floor. The index sets the level (the bound is that of an unbiased fit with n free, and the
    network knows n lies in the renderer's range); whether a trend with size remains within an
    index bin is read here (the Bayes reference of :func:`reference_table` says how much of the
    level the prior alone explains)."""
    cols = PHYSICAL["sersic"]
    truth = res["d"]["truth"]
    re, idx = truth["re"], truth["n"]
    z = _wrap(res["est"]["net"] - res["truth"], "sersic") / res["crb"]
    out: dict = {"floor": {}, "net": {}}
    for a, b in INDEX_BINS:
        label = f"n {a:g}-{b:g}"
        in_n = (idx >= a) & ((idx < b) if b < INDEX_BINS[-1][1] else (idx <= b))
        masks = {f"re {lo:.0f}-{hi:.0f}": in_n & (re >= lo) & (re < hi) for lo, hi in RE_BINS}
        out["floor"][label] = spread_floor([int(m.sum()) for m in masks.values()])
        out["net"][label] = {c: {k: _stats(z[m, j])["scatter"] for k, m in masks.items()} for j, c in enumerate(cols)}
    return out


def run_reference(net, res: dict, prior: SersicPrior, n: int, log=print) -> dict:
    """The Bayes reference on the first ``n`` galaxies of a Sérsic set that :func:`run_set` ran:
    the proposal from the network's posterior samples and from the fitter started at the
    network's values (the network's median where that fit failed)."""
    d = res["d"]
    k = min(n, len(d["snr"]))
    post = posterior(
        net, d["images"][:k], d["noise"][:k], d["fwhm"][:k], draws=REFERENCE_NET_DRAWS, keep_samples=True, shape=d["psf_shape"][:k]
    )
    fitted = res["est"]["lm_from_net"][:k]
    start = np.where(np.isfinite(fitted).all(1, keepdims=True), fitted, res["est"]["net"][:k])
    med, ess = np.full((k, 7), np.nan), np.zeros((k, 2))
    t0 = time.perf_counter()
    for j, psf in enumerate(d["psfs"]):
        sel = np.nonzero(d["psf_index"][:k] == j)[0]
        if not len(sel):
            continue
        out = reference_posterior(
            d["images"][sel], d["sigma"][sel], psf, d["sky_sigma"][sel], post["samples"][sel], start[sel], prior, seed=j
        )
        med[sel], ess[sel] = out["median"], out["ess"]
    secs = time.perf_counter() - t0
    log(f"reference posterior of {k} galaxies: {secs / max(k, 1):.2f} s/galaxy; median effective sample size {np.median(ess[:, -1]):.0f}")
    return {"median": med, "ess": ess, "n": k, "seconds": secs}


def reference_table(res: dict, ref: dict, seed: int = 0) -> dict:
    """Per re bin and column, the scatter (1.4826 MAD) of z = (est - truth) / CRB of the reference
    (``ref``), the calibrated network and the fitter started from it, on the same galaxies; and
    the network's scatter over the reference's (``net/ref``) with its bootstrap standard
    deviation (``net/ref sd``); the median of z of the reference and the network (``ref bias``,
    ``net bias``)."""
    k = ref["n"]
    truth, crb = res["truth"][:k], res["crb"][:k]
    re = res["d"]["truth"]["re"][:k]
    z = {
        e: _wrap(est[:k] - truth, "sersic") / crb
        for e, est in (("ref", ref["median"]), ("net", res["est"]["net"]), ("lm_from_net", res["est"]["lm_from_net"]))
    }
    rng = np.random.default_rng(seed)

    def mad(a: np.ndarray) -> float:
        return _stats(a)["scatter"]

    rows = ("ref", "net", "lm_from_net", "net/ref", "net/ref sd", "ref bias", "net bias")
    out: dict = {e: {} for e in rows}
    out["ess"] = {}
    for j, c in enumerate(PHYSICAL["sersic"]):
        for e in rows:
            out[e][c] = {}
        for lo, hi in RE_BINS:
            b = f"re {lo:.0f}-{hi:.0f}"
            idx = np.nonzero((re >= lo) & (re < hi) & np.isfinite(z["ref"][:, j]))[0]
            for e in ("ref", "net", "lm_from_net"):
                out[e][c][b] = mad(z[e][idx, j])
            for e in ("ref", "net"):
                out[f"{e} bias"][c][b] = _stats(z[e][idx, j])["bias"]
            out["net/ref"][c][b] = out["net"][c][b] / out["ref"][c][b]
            boot = []
            for _ in range(REFERENCE_BOOT):
                s = rng.choice(idx, len(idx))
                boot.append(mad(z["net"][s, j]) / mad(z["ref"][s, j]))
            out["net/ref sd"][c][b] = float(np.std(boot))
    for lo, hi in RE_BINS:
        m = (re >= lo) & (re < hi)
        out["ess"][f"re {lo:.0f}-{hi:.0f}"] = float(np.median(ref["ess"][m, -1])) if m.any() else float("nan")
    out["n"] = k
    return out


def starts_table(kind: str, res: dict) -> dict:
    """Iterations, failures and outliers of the fitter from moments and from the network."""
    out = {}
    names = PHYSICAL[kind]
    for e in ("lm", "lm_from_net"):
        est, t = res["est"][e][: res["fit_n"]], res["truth"][: res["fit_n"]]
        bad = ~np.isfinite(est).all(1) | ~res["converged"][e]
        d = _wrap(est - t, kind)
        for j, c in enumerate(names):
            if c not in OUTLIER:
                continue
            rel = d[:, j] / t[:, j] if c in ("flux", "re", "re_disk") else d[:, j]
            with np.errstate(invalid="ignore"):
                bad = bad | ~(np.abs(rel) <= OUTLIER[c])
        out[e] = {
            "iterations_mean": float(res["iters"][e].mean()),
            "iterations_median": float(np.median(res["iters"][e])),
            "failures": int((~res["converged"][e]).sum()),
            "outliers": int(bad.sum()),
            "n": int(len(bad)),
            "seconds_per_galaxy": res["seconds"][e] / len(bad),
        }
    return out


def evaluate(
    nets: dict,
    *,
    n: int = 512,
    net_n: int | None = None,
    size_n: int = SIZE_N,
    seed: int = TEST_SEED,
    draws: int = 1000,
    passes: int = 1,
    more_passes: tuple[int, ...] = (),
    size_kinds: tuple[str, ...] | None = None,
    reference_n: int = 0,
    reference_prior: SersicPrior | None = None,
    log=print,
) -> dict:
    """The whole evaluation for every kind the weights hold (the size test for ``size_kinds``,
    default all); plain-Python figures. The network on net_n (default n) galaxies, the fits on
    the first n of them; passes: MC-dropout passes of the network's posterior (more_passes: the
    network's rows and coverage also with these numbers of passes). With reference_n and the
    Sérsic network's training prior, the Bayes reference on the first reference_n galaxies of
    the Sérsic size test."""
    net_n = max(n, net_n or n)
    report: dict = {"seed": seed, "n": n, "net_n": net_n, "size_n": size_n, "snr_range": [20, 100], "passes": passes}
    for kind, net in nets.items():
        res = run_set(kind, net, test_config(kind, net_n, seed), draws=draws, passes=passes, more_passes=more_passes, fit_n=n, log=log)
        size_cfg = size_config(kind, size_n, seed + 1)
        report[kind] = {
            "crb": crb_table(kind, res),
            "coverage": coverage(kind, res),
            "starts": starts_table(kind, res),
            "calibrated": res["calibrated"],
            "calibrated_more": res["calibrated_more"],
        }
        if size_kinds is None or kind in size_kinds:
            res_size = run_set(kind, net, size_cfg, draws=draws, passes=passes, log=log)
            re = res_size["d"]["truth"]["re" if kind == "sersic" else "re_disk"]
            report[kind]["size"] = size_table(kind, res_size)
            if kind == "sersic":
                report[kind]["size_by_index"] = size_by_index(res_size)
                if reference_n and reference_prior is not None:
                    ref = run_reference(net, res_size, reference_prior, reference_n, log=log)
                    report[kind]["reference"] = reference_table(res_size, ref)
            report[kind]["coverage_128"] = coverage(kind, res_size)
            report[kind]["zoom_128_by_re"] = {
                f"re {lo:.0f}-{hi:.0f}": float(np.median(res_size["zoom"][(re >= lo) & (re < hi)])) for lo, hi in RE_BINS
            }
    return report


def _spread_percent(v: list[float]) -> float:
    """max / min - 1 of a row of scatters, in per cent."""
    return 100 * (max(v) / min(v) - 1) if min(v) > 0 else float("nan")


def format_report(report: dict) -> str:
    """Markdown tables of :func:`evaluate`'s report."""
    net_n = report.get("net_n", report["n"])
    lines = [
        f"Held-out set: seed {report['seed']}, isolated galaxies at 64 px, SNR 20-100, one PSF per {TEST_CHUNK}: the network rows on "
        f"{net_n} per model, the fitter rows (lm, lm_from_net) and the starts on the first {report['n']} of them; size test "
        f"{report['size_n']} at 128 px, re 2-20 px (seed {report['seed'] + 1}); network posterior from {report.get('passes', 1)} pass(es). "
        "net: with the weights' calibration (as the bench, the worker and the API use it); net_raw: without; net_<p>p: calibrated, "
        "p MC-dropout passes (the worker's setting).",
        "",
    ]
    for kind in PHYSICAL:
        if kind not in report:
            continue
        r = report[kind]
        cols = list(PHYSICAL[kind])
        lines += [f"### {kind}: bias / scatter of (estimate - truth) in CRB units (median / 1.4826 MAD; misses |z| > 5)", ""]
        lines += ["| estimator | bin | " + " | ".join(cols) + " |", "|---|---|" + "---|" * len(cols)]
        for e in r["crb"]:
            for b in r["crb"][e][cols[0]]:
                cells = [f"{r['crb'][e][c][b]['bias']:+.2f} / {r['crb'][e][c][b]['scatter']:.2f}" for c in cols]
                lines.append(f"| {e} | {b} | " + " | ".join(cells) + " |")
            miss = [f"{r['crb'][e][c]['all']['miss'] * 100:.1f}%" for c in cols]
            lines.append(f"| {e} | misses | " + " | ".join(miss) + " |")
        cal = (
            "net calibrated on its own seed (calibration.json)"
            if r.get("calibrated")
            else "net uncalibrated: no calibration for these passes"
        )
        cal += "".join(f"; {e} {'calibrated' if v else 'uncalibrated'}" for e, v in r.get("calibrated_more", {}).items())
        lines += ["", f"### {kind}: coverage of the 68.3 / 95.4 / 99.7 % intervals (network; {cal}) and +-1/2/3 sigma (fitter)", ""]
        lines += ["| estimator | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
        for e in r["coverage"]:
            lines.append(f"| {e} | " + " | ".join("/".join(f"{100 * v:.1f}" for v in r["coverage"][e][c]) for c in cols) + " |")
        if "size" in r:
            floor = r["size"].get("floor")
            heading = f"### {kind}: scatter in CRB units against size (128 px cutouts)"
            if floor is not None:
                heading += f"; a scatter that does not change would spread by {100 * floor:.0f} % over these bins (sampling alone)"
            lines += ["", heading, ""]
            bins = list(r["size"]["net"][cols[0]])
            lines += ["| estimator | column | " + " | ".join(bins) + " | max / min - 1 |", "|---|---|" + "---|" * (len(bins) + 1)]
            for e in SIZE_ESTIMATORS:
                for c in cols:
                    v = [r["size"][e][c][b] for b in bins]
                    lines.append(f"| {e} | {c} | " + " | ".join(f"{x:.2f}" for x in v) + f" | {_spread_percent(v):.0f} % |")
            if "bias" in r["size"]:
                lines += ["", f"### {kind}: bias (median of z) in CRB units against size (128 px cutouts)", ""]
                lines += ["| estimator | column | " + " | ".join(bins) + " |", "|---|---|" + "---|" * len(bins)]
                for e in SIZE_ESTIMATORS:
                    for c in cols:
                        lines.append(f"| {e} | {c} | " + " | ".join(f"{r['size']['bias'][e][c][b]:+.2f}" for b in bins) + " |")
            if "size_by_index" in r:
                by = r["size_by_index"]
                lines += ["", f"### {kind}: the same scatter of the network (calibrated) by the true Sérsic index", ""]
                lines += [
                    "| index | column | " + " | ".join(bins) + " | max / min - 1 | sampling alone |",
                    "|---|---|" + "---|" * (len(bins) + 2),
                ]
                for label, table in by["net"].items():
                    for c in cols:
                        v = [table[c][b] for b in bins]
                        cells = " | ".join(f"{x:.2f}" for x in v)
                        lines.append(f"| {label} | {c} | {cells} | {_spread_percent(v):.0f} % | {100 * by['floor'][label]:.0f} % |")
            if "reference" in r:
                ref = r["reference"]
                lines += [
                    "",
                    f"### {kind}: against the Bayes reference (each galaxy's posterior under the network's training prior, by importance "
                    f"sampling; the first {ref['n']} galaxies of the size test)",
                    "",
                    "Scatter in CRB units of the reference (ref), the network (net) and the fitter started from it (lm_from_net) on the "
                    "same galaxies; net/ref: the network's scatter over the reference's (bootstrap standard deviation in brackets); "
                    "ref bias, net bias: the median of z. "
                    "Median effective sample size per bin: " + ", ".join(f"{b} {v:.0f}" for b, v in ref["ess"].items()) + ".",
                    "",
                    "| row | column | " + " | ".join(bins) + " | max / min - 1 |",
                    "|---|---|" + "---|" * (len(bins) + 1),
                ]
                for e in ("ref", "net", "lm_from_net", "net/ref", "ref bias", "net bias"):
                    for c in cols:
                        v = [ref[e][c][b] for b in bins]
                        if e == "net/ref":
                            cells = " | ".join(f"{x:.2f} ({ref['net/ref sd'][c][b]:.2f})" for x, b in zip(v, bins))
                        elif e.endswith("bias"):
                            cells = " | ".join(f"{x:+.2f}" for x in v)
                        else:
                            cells = " | ".join(f"{x:.2f}" for x in v)
                        spread = "" if e.endswith("bias") else f"{_spread_percent(v):.0f} %"
                        lines.append(f"| {e} | {c} | {cells} | {spread} |")
            zoom = ", ".join(f"{k}: {v:.2f}" for k, v in r["zoom_128_by_re"].items())
            lines += ["", f"Crop head zoom (median fraction of the side seen) at 128 px: {zoom}"]
            lines += ["", f"### {kind}: coverage of the 68.3 / 95.4 / 99.7 % intervals on the size test (128 px, re 2-20 px)", ""]
            lines += ["| estimator | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
            for e, cov in r["coverage_128"].items():
                lines.append(f"| {e} | " + " | ".join("/".join(f"{100 * v:.1f}" for v in cov[c]) for c in cols) + " |")
        lines.append("")
        lines += [f"### {kind}: fitter starts on the same images", ""]
        lines += ["| start | iterations (mean / median) | failures | outliers | ms per galaxy |", "|---|---|---|---|---|"]
        for e, label in (("lm", "moments"), ("lm_from_net", "network")):
            s = r["starts"][e]
            lines.append(
                f"| {label} | {s['iterations_mean']:.2f} / {s['iterations_median']:.0f} | {s['failures']} of {s['n']} | {s['outliers']} of {s['n']} | {1e3 * s['seconds_per_galaxy']:.1f} |"
            )
        lines.append("")
    return "\n".join(lines)
