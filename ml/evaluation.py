"""Evaluation of the ensemble against the axis-ratio baseline (no Django).

Two test sets: a synthetic set from a seed never used in training, and the real SDSS cutouts of
the shared sample folder with EDD inclinations (labels.csv). For each: RMS, MAE, bias, overall
and by inclination bin, for the ensemble, every member and the axis-ratio baseline (with the
configured q0 and with the best constant q0 for that set), side by side.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ml.inference import Ensemble, axis_ratio_from_moments
from ml.preprocess import load_image_file, preprocess
from ml.synth import inclination_from_axis_ratio, render_one

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
) -> dict:
    """Side-by-side statistics of ensemble, members and baselines (moment axis ratio with q0 and
    with its best constant q0; on synthetic images also the renderer's exact apparent axis ratio)."""
    rows = {"ensemble": ens_pred}
    for k, n in enumerate(names):
        rows[n] = member_pred[:, k]
    rows[f"axis_ratio q0={q0:g}"] = inclination_from_axis_ratio(q, q0)
    qb, inc_b = best_q0(q, true)
    rows[f"axis_ratio best q0={qb:g}"] = inc_b
    if q_true is not None:
        qt, inc_t = best_q0(q_true, true)
        rows[f"exact b/a best q0={qt:g}"] = inc_t
    return {name: {"all": error_stats(p, true), "bins": by_bin(np.asarray(p, float), true)} for name, p in rows.items()}


def evaluate_synthetic(ens: Ensemble, n: int = 2000, seed: int = TEST_SEED, q0: float = 0.3, tta: bool = True, progress=False):
    """Fresh-seed synthetic test set. Returns (stats, extra) for accepted disks; extra has rejection figures."""
    xs, incs, rejs, qs, qtrue = [], [], [], [], []
    it = range(n)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc=f"render test seed={seed}", unit="img", mininterval=5)
    for k in it:
        im, lab = render_one(seed, k)
        xs.append(preprocess(im))
        incs.append(lab["inc"] if lab["reject"] == 0 else np.nan)
        rejs.append(lab["reject"])
        qs.append(axis_ratio_from_moments(im) if lab["reject"] == 0 else np.nan)
        qtrue.append(lab["q"])
    x = np.stack(xs)
    res = ens.predict_arrays(x, tta=tta)
    inc = np.asarray(incs)
    rej = np.asarray(rejs)
    acc = rej == 0
    stats = compare(res["median"][acc], res["per_member"][acc], ens.names, np.asarray(qs)[acc], inc[acc], q0, q_true=np.asarray(qtrue)[acc])
    rl = res["reject_likelihood"]
    extra = {
        "n_images": n,
        "n_accepted": int(acc.sum()),
        "reject_accuracy": float(np.mean((rl > 0.5) == (rej == 1))),
        "reject_recall": float(np.mean(rl[rej == 1] > 0.5)) if (rej == 1).any() else float("nan"),
        "false_reject_rate": float(np.mean(rl[acc] > 0.5)),
        "mean_std": float(np.mean(res["std"][acc])),
        "mean_sigma_model": float(np.mean(res["sigma_model"][acc])),
    }
    return stats, extra


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
