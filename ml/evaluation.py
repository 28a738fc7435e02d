"""Evaluation of the ensemble against the axis-ratio baseline (no Django).

Three test sets: a synthetic set from a seed never used in training, images of an independent
renderer (GalSim) that training never sees, and the real SDSS cutouts of the shared sample folder
with EDD inclinations (labels.csv). For each: RMS, MAE, bias, overall
and by inclination bin, for the ensemble, every member and the axis-ratio baseline (with the
configured q0 and with the best constant q0 for that set), side by side.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ml.inference import Ensemble, axis_ratio_from_moments
from ml.preprocess import load_image_file, preprocess
from ml.synth import SynthConfig, bayes_inclination_from_axis_ratio, inclination_from_axis_ratio, render_one
from ml.synth.render import Q0_RANGE

#: Seed of the synthetic test set: never used for training (training seeds are small; the
#: validation seed is training seed + 1000).
TEST_SEED = 20201145
INC_BINS = ((45, 55), (55, 65), (65, 75), (75, 85), (85, 90.01))
Q0_GRID = tuple(np.round(np.arange(0.05, 0.351, 0.01), 2))


def error_stats(pred: np.ndarray, true: np.ndarray) -> dict:
    """RMS, MAE, bias (deg) and N over finite pairs."""
    pred, true = np.asarray(pred, float), np.asarray(true, float)
    ok = np.isfinite(pred) & np.isfinite(true)
    d = pred[ok] - true[ok]
    if not len(d):
        return {"n": 0, "rms": float("nan"), "mae": float("nan"), "bias": float("nan")}
    return {"n": int(len(d)), "rms": float(np.sqrt(np.mean(d * d))), "mae": float(np.mean(np.abs(d))), "bias": float(np.mean(d))}


def by_bin(pred: np.ndarray, true: np.ndarray) -> dict[str, dict]:
    out = {}
    for lo, hi in INC_BINS:
        m = (true >= lo) & (true < hi)
        out[f"{lo}-{int(hi)}"] = error_stats(pred[m], true[m])
    return out


def best_q0(q: np.ndarray, true: np.ndarray) -> tuple[float, np.ndarray]:
    """The constant q0 of the grid that minimises the baseline RMS on these images."""
    best, best_rms = Q0_GRID[0], np.inf
    for q0 in Q0_GRID:
        r = error_stats(inclination_from_axis_ratio(q, q0), true)["rms"]
        if r < best_rms:
            best, best_rms = q0, r
    return float(best), inclination_from_axis_ratio(q, best)


def compare(
    ens_pred: np.ndarray,
    member_pred: np.ndarray,
    names: list[str],
    q: np.ndarray,
    true: np.ndarray,
    q0: float,
    q_true: np.ndarray | None = None,
    q0_prior: tuple[float, float] | None = None,
) -> dict:
    """Side-by-side statistics of ensemble, members and baselines (moment axis ratio with q0 and
    with its best constant q0; on synthetic images also the renderer's exact apparent axis ratio,
    with the best constant q0 and, given the renderer's q0 prior, the posterior mean over it)."""
    rows = {"ensemble": ens_pred}
    for k, n in enumerate(names):
        rows[n] = member_pred[:, k]
    rows[f"axis_ratio q0={q0:g}"] = inclination_from_axis_ratio(q, q0)
    qb, inc_b = best_q0(q, true)
    rows[f"axis_ratio best q0={qb:g}"] = inc_b
    if q_true is not None:
        qt, inc_t = best_q0(q_true, true)
        rows[f"exact b/a best q0={qt:g}"] = inc_t
        if q0_prior is not None:
            rows[f"exact b/a Bayes q0 {q0_prior[0]:g}-{q0_prior[1]:g}"] = bayes_inclination_from_axis_ratio(q_true, q0_prior)
    return {name: {"all": error_stats(p, true), "bins": by_bin(np.asarray(p, float), true)} for name, p in rows.items()}


def evaluate_synthetic(
    ens: Ensemble, n: int = 2000, seed: int = TEST_SEED, q0: float = 0.3, tta: bool = True, progress=False, wide: float = 0.0
):
    """Fresh-seed synthetic test set (``wide``: share drawn by the widened renderer, see
    ml.synth.wide). Returns (stats, extra) for accepted disks; extra has rejection figures."""
    config = SynthConfig(wide=wide) if wide else None
    xs, incs, rejs, qs, qtrue, q0s = [], [], [], [], [], []
    it = range(n)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc=f"render test seed={seed}", unit="img", mininterval=5)
    for k in it:
        im, lab = render_one(seed, k, config)
        xs.append(preprocess(im))
        incs.append(lab["inc"] if lab["reject"] == 0 else np.nan)
        rejs.append(lab["reject"])
        qs.append(axis_ratio_from_moments(im) if lab["reject"] == 0 else np.nan)
        qtrue.append(lab["q"])
        q0s.append(lab["q0"])
    x = np.stack(xs)
    res = ens.predict_arrays(x, tta=tta)
    inc = np.asarray(incs)
    rej = np.asarray(rejs)
    acc = rej == 0
    # the classic renderer draws q0 uniformly over Q0_RANGE; the widened one draws its disks otherwise
    prior = None if wide else Q0_RANGE
    stats = compare(
        res["median"][acc],
        res["per_member"][acc],
        ens.names,
        np.asarray(qs)[acc],
        inc[acc],
        q0,
        q_true=np.asarray(qtrue)[acc],
        q0_prior=prior,
    )
    rl = res["reject_likelihood"]
    q0_acc = np.asarray(q0s)[acc]
    extra = {
        "n_images": n,
        "n_accepted": int(acc.sum()),
        "reject_accuracy": float(np.mean((rl > 0.5) == (rej == 1))),
        "reject_recall": float(np.mean(rl[rej == 1] > 0.5)) if (rej == 1).any() else float("nan"),
        "false_reject_rate": float(np.mean(rl[acc] > 0.5)),
        "mean_std": float(np.mean(res["std"][acc])),
        "mean_sigma_model": float(np.mean(res["sigma_model"][acc])),
        "splits": split_stats(res["median"][acc], inc[acc], [{"q0": q} for q in q0_acc], THICKNESS_SPLITS),
        "thickness_share": thickness_share(res["median"][acc], inc[acc], q0_acc),
    }
    return stats, extra


# ---------------------------------------------------------------------------------------------
# An independent renderer: GalSim (Rowe et al. 2015, A&C 10, 121), never used for training or
# for choosing between runs
# ---------------------------------------------------------------------------------------------
#: Seed of the GalSim test set (no training seed comes near it).
GALSIM_SEED = 20201729
GALSIM_INSTALL = ".venv/bin/pip install -c <(echo torch==2.13.0) galsim   (it is listed in requirements-bench.txt)"


class GalSimMissing(ImportError):
    """GalSim is not installed; the message says how to install it."""


def _galsim():
    try:
        import galsim
    except ImportError as exc:
        raise GalSimMissing(
            f"GalSim is not installed, so the independent-renderer test set cannot be drawn. Install it with\n  {GALSIM_INSTALL}"
        ) from exc
    return galsim


def galsim_draws(seed: int, index: int, size: int = 128) -> dict:
    """What image ``index`` of the GalSim set ``seed`` is drawn with (numpy alone; no GalSim needed):
    inclination, disk scale length and height (px), bulge, knots, PSF, sky and stretch. The draws
    come in a fixed order from one stream per (seed, index), so an image depends on nothing else."""
    rng = np.random.default_rng([int(seed), int(index)])
    d: dict = {"size": size, "gs_seed": int(rng.integers(1, 2**31 - 1)), "inc": float(rng.uniform(45.0, 90.0))}
    d["r25"] = size / 4.0 * rng.uniform(0.8, 1.2)  # pixels
    d["h"] = d["r25"] / rng.uniform(2.8, 4.3)
    d["hz"] = d["h"] * rng.uniform(0.08, 0.3)
    d["flux"] = 10 ** rng.uniform(4.5, 5.5)
    d["bt"] = 0.0 if rng.random() < 0.25 else float(rng.uniform(0.0, 0.5))
    if d["bt"] > 0:
        d["re_bulge"] = d["h"] * rng.uniform(0.2, 0.6)
        d["bulge_profile"] = "de Vaucouleurs" if rng.random() < 0.4 else "Sérsic"
        d["bulge_n"] = 4.0 if d["bulge_profile"] == "de Vaucouleurs" else float(rng.uniform(1.0, 4.0))
        d["bulge_q0"] = float(rng.uniform(0.5, 0.95))
    d["knots"] = bool(rng.random() < 0.7)
    if d["knots"]:
        d["knot_fraction"] = float(rng.uniform(0.05, 0.3))
        d["knot_count"] = int(rng.integers(10, 60))
    d["rotation"] = float(rng.normal(0.0, 2.0))  # deg
    d["psf_fwhm"] = float(rng.uniform(1.0, 3.0))
    d["psf"] = "kolmogorov" if rng.random() < 0.5 else "moffat"
    if d["psf"] == "moffat":
        d["moffat_beta"] = float(rng.uniform(2.5, 4.5))
    d["offset"] = tuple(rng.normal(0.0, 1.0, 2).tolist())
    d["sky"] = 10 ** rng.uniform(1.5, 2.5)
    d["soft"] = np.sqrt(d["sky"]) * rng.uniform(1.0, 5.0)
    d["inverted"] = bool(rng.random() < 0.5)
    return d


def render_galsim(seed: int, index: int, size: int = 128) -> tuple[np.ndarray, float]:
    """Image ``index`` of the GalSim set ``seed``: uint8 [size, size] grey display image and its
    inclination (deg, 45-90); what it is drawn with: :func:`galsim_draws`.

    An inclined exponential disk with its own scale height (GalSim's InclinedExponential, a
    3-D sech^2 disk seen at inclination i), a Sérsic or de Vaucouleurs bulge flattened by the
    same geometry, star-forming knots (RandomKnots, a random walk in the disk plane, projected),
    a Kolmogorov or Moffat PSF, sky and Poisson noise, then an asinh stretch to 8 bits. Major
    axis horizontal and the field about twice d25, as in the EDD cutouts; some images inverted
    (galaxy dark on light)."""
    return _draw_galsim(galsim_draws(seed, index, size))


def _draw_galsim(d: dict) -> tuple[np.ndarray, float]:
    """The GalSim image of the draws d (see render_galsim)."""
    galsim = _galsim()
    size = d["size"]
    gs_rng = galsim.BaseDeviate(d["gs_seed"])
    inc, flux, bt = d["inc"], d["flux"], d["bt"]
    disk = galsim.InclinedExponential(inclination=inc * galsim.degrees, scale_radius=d["h"], scale_height=d["hz"], flux=flux * (1 - bt))
    parts = [disk]
    if bt > 0:
        n, re_b = d["bulge_n"], d["re_bulge"]
        devauc = d["bulge_profile"] == "de Vaucouleurs"
        bulge = galsim.DeVaucouleurs(half_light_radius=re_b) if devauc else galsim.Sersic(n=n, half_light_radius=re_b)
        qb0 = d["bulge_q0"]
        qb = float(np.sqrt(np.cos(np.radians(inc)) ** 2 * (1 - qb0**2) + qb0**2))
        parts.append(bulge.withFlux(flux * bt).shear(q=qb, beta=0 * galsim.degrees))
    if d["knots"]:
        f_knots = d["knot_fraction"]
        knots = galsim.RandomKnots(npoints=d["knot_count"], half_light_radius=1.7 * d["h"], flux=flux * (1 - bt) * f_knots, rng=gs_rng)
        q_thin = float(max(np.cos(np.radians(inc)), 0.03))
        parts[0] = disk.withFlux(flux * (1 - bt) * (1 - f_knots))
        parts.append(knots.shear(q=q_thin, beta=0 * galsim.degrees))
    gal = galsim.Add(parts).rotate(d["rotation"] * galsim.degrees)
    fwhm = d["psf_fwhm"]
    psf = galsim.Kolmogorov(fwhm=fwhm) if d["psf"] == "kolmogorov" else galsim.Moffat(beta=d["moffat_beta"], fwhm=fwhm)
    img = galsim.Convolve(gal, psf).drawImage(nx=size, ny=size, scale=1.0, offset=d["offset"])
    sky = d["sky"]
    img.addNoise(galsim.PoissonNoise(gs_rng, sky_level=sky))
    a = img.array.astype(np.float64)
    soft = d["soft"]
    peak = max(np.percentile(a, 99.7), 5 * np.sqrt(sky))
    v = np.clip(np.arcsinh(np.clip(a, 0, None) / soft) / np.arcsinh(peak / soft), 0.0, 1.0)
    if d["inverted"]:
        v = 1.0 - v
    return np.round(v * 255).astype(np.uint8), inc


def evaluate_galsim(ens: Ensemble, n: int = 300, seed: int = GALSIM_SEED, q0: float = 0.3, tta: bool = True, progress=False):
    """The GalSim test set: stats of ensemble, members and axis-ratio baselines side by side."""
    it = range(n)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc=f"render GalSim seed={seed}", unit="img", mininterval=5)
    xs, incs, qs = [], [], []
    draws = [galsim_draws(seed, k) for k in range(n)]
    for k in it:
        im, inc = _draw_galsim(draws[k])
        xs.append(preprocess(im))
        incs.append(inc)
        qs.append(axis_ratio_from_moments(im))
    res = ens.predict_arrays(np.stack(xs), tta=tta)
    true = np.asarray(incs)
    stats = compare(res["median"], res["per_member"], ens.names, np.asarray(qs), true, q0)
    extra = {
        "n_images": n,
        "false_reject_rate": float(np.mean(res["reject_likelihood"] > 0.5)),
        "splits": split_stats(res["median"], true, draws, GALSIM_SPLITS),
        "thickness_share": thickness_share(res["median"], true, np.array([d["hz"] / d["h"] for d in draws])),
    }
    return stats, extra


#: Subsets of the GalSim set that its residuals are split by: (group, subset, test on the draws).
GALSIM_SPLITS: tuple = (
    ("disk thickness hz/h", "below 0.15", lambda d: d["hz"] / d["h"] < 0.15),
    ("disk thickness hz/h", "0.15-0.22", lambda d: 0.15 <= d["hz"] / d["h"] < 0.22),
    ("disk thickness hz/h", "0.22 and above", lambda d: d["hz"] / d["h"] >= 0.22),
    ("bulge", "none", lambda d: d["bt"] == 0),
    ("bulge", "B/T below 0.25", lambda d: 0 < d["bt"] < 0.25),
    ("bulge", "B/T 0.25 and above", lambda d: d["bt"] >= 0.25),
    ("knots", "none", lambda d: not d["knots"]),
    ("knots", "with knots", lambda d: d["knots"]),
    ("PSF FWHM", "1-1.67 px", lambda d: d["psf_fwhm"] < 5 / 3),
    ("PSF FWHM", "1.67-2.33 px", lambda d: 5 / 3 <= d["psf_fwhm"] < 7 / 3),
    ("PSF FWHM", "2.33-3 px", lambda d: d["psf_fwhm"] >= 7 / 3),
)


#: Subsets of the synthetic sets by the disk's intrinsic axis ratio q0 (ml.synth's label; the
#: widened renderer's is its scale height over scale length).
THICKNESS_SPLITS: tuple = (
    ("intrinsic q0", "below 0.15", lambda d: d["q0"] < 0.15),
    ("intrinsic q0", "0.15-0.20", lambda d: 0.15 <= d["q0"] < 0.20),
    ("intrinsic q0", "0.20-0.25", lambda d: 0.20 <= d["q0"] < 0.25),
    ("intrinsic q0", "0.25 and above", lambda d: d["q0"] >= 0.25),
)


def split_stats(pred: np.ndarray, true: np.ndarray, draws: list[dict], splits: tuple) -> list[dict]:
    """Error statistics of pred on each subset of ``splits`` ((group, subset, test on an image's
    draws or labels) rows, e.g. GALSIM_SPLITS: the disk's thickness, its bulge, knots, the PSF)."""
    pred, true = np.asarray(pred, float), np.asarray(true, float)
    out = []
    for group, subset, test in splits:
        m = np.array([bool(test(d)) for d in draws])
        out.append({"group": group, "subset": subset, **error_stats(pred[m], true[m])})
    return out


def thickness_share(pred: np.ndarray, true: np.ndarray, q0: np.ndarray, cells: int = 5) -> float:
    """Share of the mean squared error that the mean error per (q0, inclination) cell carries:
    what an estimator that read each disk's thickness would remove. q0 in ``cells`` quantile
    bins, the inclination in the bins of :func:`by_bin`."""
    d = np.asarray(pred, float) - np.asarray(true, float)
    qb = np.digitize(q0, np.quantile(q0, np.linspace(0, 1, cells + 1)[1:-1]))
    ib = np.digitize(true, [lo for lo, _ in INC_BINS[1:]])
    _, cell = np.unique(qb * len(INC_BINS) + ib, return_inverse=True)
    cell_mean = (np.bincount(cell, weights=d) / np.bincount(cell))[cell]
    return float(np.mean(cell_mean**2) / np.mean(d**2))


def format_splits(title: str, splits: list[dict]) -> str:
    """Plain-text table of split_stats."""
    head = f"{'group':<22} {'subset':<20} {'N':>5} {'RMS':>6} {'bias':>6}"
    lines = [title, head, "-" * len(head)]
    for r in splits:
        lines.append(f"{r['group']:<22} {r['subset']:<20} {r['n']:>5} {r['rms']:6.2f} {r['bias']:+6.2f}")
    return "\n".join(lines)


def read_sdss_labels(folder: str | Path) -> list[dict]:
    with open(Path(folder) / "labels.csv") as fh:
        return list(csv.DictReader(fh))


def evaluate_sdss(ens: Ensemble, folder: str | Path, q0: float = 0.3, tta: bool = True):
    """The shared SDSS cutouts. Returns (per-image rows, stats per image type, stats for the
    median over a galaxy's four images)."""
    folder = Path(folder)
    labels = read_sdss_labels(folder)
    rows = []
    kinds = ("g.png", "r.png", "i.png", "gri.jpg")
    for lab in labels:
        pgc = lab["pgc"]
        for kind in kinds:
            path = folder / f"pgc{pgc}_{kind}"
            if not path.exists():
                continue
            im = load_image_file(str(path))
            res = ens.predict_images([im], tta=tta)
            q = axis_ratio_from_moments(im)
            rows.append(
                {
                    "pgc": int(pgc),
                    "file": path.name,
                    "kind": kind,
                    "true_inc": float(lab["inc"]) if lab["inc"] else float("nan"),
                    "flag": lab["flag"],
                    "cnn": float(res["median"][0]),
                    "cnn_std": float(res["std"][0]),
                    "members": res["per_member"][0].tolist(),
                    "reject_likelihood": float(res["reject_likelihood"][0]),
                    "q": q,
                    "axis_ratio_inc": float(inclination_from_axis_ratio(q, q0)),
                }
            )
    stats = {}
    accepted = [r for r in rows if r["flag"] == "A" and np.isfinite(r["true_inc"])]
    for kind in kinds + ("all",):
        sel = [r for r in accepted if kind == "all" or r["kind"] == kind]
        if not sel:
            continue
        true = np.array([r["true_inc"] for r in sel])
        stats[kind] = compare(
            np.array([r["cnn"] for r in sel]),
            np.array([r["members"] for r in sel]),
            ens.names,
            np.array([r["q"] for r in sel]),
            true,
            q0,
        )
    # one value per galaxy: median over its images
    per_gal = {}
    for r in accepted:
        per_gal.setdefault(r["pgc"], []).append(r)
    if per_gal:
        true = np.array([v[0]["true_inc"] for v in per_gal.values()])
        stats["galaxy_median"] = compare(
            np.array([np.median([r["cnn"] for r in v]) for v in per_gal.values()]),
            np.array([np.median([r["members"] for r in v], 0) for v in per_gal.values()]),
            ens.names,
            np.array([np.median([r["q"] for r in v]) for v in per_gal.values()]),
            true,
            q0,
        )
    return rows, stats


def format_table(title: str, stats: dict) -> str:
    """Plain-text table: one row per estimator, overall and per-bin RMS."""
    bins = [f"{lo}-{int(hi)}" for lo, hi in INC_BINS]
    head = f"{'estimator':<28} {'N':>5} {'RMS':>6} {'MAE':>6} {'bias':>6}  " + " ".join(f"{b:>11}" for b in bins)
    lines = [title, head, "-" * len(head)]
    for name, s in stats.items():
        a = s["all"]
        cells = []
        for b in bins:
            bs = s["bins"][b]
            cells.append(f"{bs['rms']:5.2f}({bs['n']:>3})" if bs["n"] else f"{'-':>11}")
        lines.append(f"{name:<28} {a['n']:>5} {a['rms']:6.2f} {a['mae']:6.2f} {a['bias']:+6.2f}  " + " ".join(f"{c:>11}" for c in cells))
    lines.append("(per bin: RMS deg (N))")
    return "\n".join(lines)
