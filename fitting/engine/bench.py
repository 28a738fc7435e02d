"""Standalone benchmark of the engine on a file of images.

    python -m fitting.engine.bench --data FILE.npz [--out OUT.npz] [--device cpu|cuda] [--threads N]

FILE.npz: ``images`` [N, H, W] float32, ``sigma`` [N, H, W], ``psf`` [h, w] (odd, centred, sums to 1,
sampled at pixel centres: the pixel response belongs to the model), optional ``init`` and ``truth``
[N, 7] with columns x, y, flux, re, n, q, theta (pixel [0, 0] centred at (0, 0), x along the second
array axis, re in pixels along the major axis, theta in radians counter-clockwise from +x to the
major axis). The images carry no sky: the fit holds the sky at 0 unless --fit-sky is given.

Prints seconds per galaxy and, with ``truth``, median absolute errors (flux and re as fractions),
the outlier fraction and std((fit - truth) / sigma) per parameter. OUT.npz holds ``params`` and
``errors`` [N, 7] in the same columns, ``converged`` [N] and ``seconds`` (wall time of the fit).
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np
import torch

from .fit import fit
from .model import FLUX, N_COMPONENT, N_GLOBAL, RE, SERSIC_N, SKY, THETA, X0, Y0, Q
from .parallel import CpuPool

COLUMNS = ("x", "y", "flux", "re", "n", "q", "theta")
#: Engine physical columns (x0, y0, sky, flux, re, n, q, theta) for each bench column.
_ENGINE_COL = (X0, Y0, *(N_GLOBAL + k for k in (FLUX, RE, SERSIC_N, Q, THETA)))
#: Bench columns of theta (defined modulo pi) and of flux and re (compared as fractions).
_THETA, _FLUX, _RE = COLUMNS.index("theta"), COLUMNS.index("flux"), COLUMNS.index("re")
#: A fit is an outlier when it misses the truth by more than any of these.
OUTLIER = {"x": 1.0, "y": 1.0, "flux": 0.2, "re": 0.2, "n": 1.0, "q": 0.1}


def to_engine(p7: np.ndarray, sky: float = 0.0) -> np.ndarray:
    """[N, 7] bench columns -> [N, 8] engine start values (sky inserted)."""
    out = np.empty((p7.shape[0], N_GLOBAL + N_COMPONENT), dtype=np.float64)
    out[:, list(_ENGINE_COL)] = p7
    out[:, SKY] = sky
    return out


def wrap_theta(d: np.ndarray) -> np.ndarray:
    """Angle differences folded into [-pi/2, pi/2) (theta is defined modulo pi)."""
    return (d + math.pi / 2) % math.pi - math.pi / 2


def accuracy(params: np.ndarray, errors: np.ndarray | None, truth: np.ndarray, ok: np.ndarray) -> dict:
    """Median absolute errors (flux, re fractional), outlier fraction, pull std per column.

    params, errors, truth: [N, 7]; ok: [N] bool (fits that returned finite values).
    """
    d = params - truth
    d[:, _THETA] = wrap_theta(d[:, _THETA])
    rel = d.copy()
    rel[:, _FLUX] /= truth[:, _FLUX]
    rel[:, _RE] /= truth[:, _RE]
    med = {c: float(np.nanmedian(np.abs(rel[ok, i]))) if ok.any() else float("nan") for i, c in enumerate(COLUMNS)}
    bad = ~ok.copy()
    for i, c in enumerate(COLUMNS):
        if c in OUTLIER:
            with np.errstate(invalid="ignore"):
                bad |= ~(np.abs(rel[:, i]) <= OUTLIER[c])
    pulls = {}
    if errors is not None:
        for i, c in enumerate(COLUMNS):
            with np.errstate(invalid="ignore", divide="ignore"):
                pull = d[:, i] / errors[:, i]
            sel = ok & ~bad & np.isfinite(pull)
            pulls[c] = float(np.std(pull[sel])) if sel.sum() > 2 else float("nan")
    return {"median_abs": med, "outlier_fraction": float(bad.mean()), "pull_std": pulls}


def run(
    data: dict,
    device: str = "cpu",
    threads: int | None = None,
    fit_sky: bool = False,
    compile: bool = False,
    batch_size: int | None = None,
) -> dict:
    """Fit the galaxies of a bench file (loaded as a dict of arrays); returns the OUT.npz content."""
    images = np.asarray(data["images"], dtype=np.float32)
    sigma = np.asarray(data["sigma"], dtype=np.float32)
    psf = np.asarray(data["psf"], dtype=np.float32)
    init = to_engine(np.asarray(data["init"], dtype=np.float64)) if "init" in data else None
    args = (torch.from_numpy(images), torch.from_numpy(sigma), torch.from_numpy(psf))
    kw = dict(model="sersic", init=None if init is None else torch.from_numpy(init), fit_sky=fit_sky, compile=compile)
    t_setup = time.perf_counter()
    if device == "cpu" and threads and threads > 1:
        # `threads` worker processes with one torch thread each (start-up and compilation outside
        # the timed fit, as a running worker cluster has them behind it)
        warm = {"shape": images.shape[1:], "psf": args[2], "compile": compile}
        with CpuPool(threads, warm=warm) as pool:
            setup = time.perf_counter() - t_setup
            out = pool.fit(*args, chunk=batch_size, **kw)
    else:
        if device == "cpu":
            torch.set_num_threads(threads or 1)
        # outside the timed fit, as for the worker processes: build the renderer, load scipy's
        # labelling, compile if asked (batches of 1 and 3: the compiled kernels specialise on 1)
        for k in (1, 3):
            fit(images[:k], sigma[:k], psf, fit_sky=fit_sky, device=device, compile=compile, init=None if init is None else init[:k])
        setup = time.perf_counter() - t_setup
        out = fit(*args, device=device, batch_size=batch_size, **kw)
    cols = list(_ENGINE_COL)
    return {
        "params": out.params.numpy()[:, cols],
        "errors": out.errors.numpy()[:, cols],
        "converged": out.converged.numpy(),
        "seconds": np.float64(out.seconds),
        "reasons": np.array(out.reasons),
        "setup_seconds": np.float64(setup),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fitting.engine.bench", description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, help="input .npz (images, sigma, psf[, init, truth])")
    ap.add_argument("--out", help="output .npz (params, errors, converged, seconds)")
    ap.add_argument("--device", choices=["cpu", "cuda"], default=None, help="default: cuda when present")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads: >1 runs that many worker processes of one thread each")
    ap.add_argument("--fit-sky", action="store_true", help="fit a flat sky too (default: held at 0)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the profile arithmetic")
    ap.add_argument("--batch-size", type=int, default=None)
    args = ap.parse_args(argv)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    with np.load(args.data) as f:
        data = {k: f[k] for k in f.files}
    res = run(data, device=device, threads=args.threads, fit_sky=args.fit_sky, compile=args.compile, batch_size=args.batch_size)
    n = len(data["images"])
    print(
        f"galaxies {n}  device {device}  threads {args.threads or torch.get_num_threads()}  "
        f"seconds/galaxy {res['seconds'] / n:.5f}  galaxies/s {n / res['seconds']:.1f}  "
        f"converged {res['converged'].mean():.3f}  (set-up before the timed fit {res['setup_seconds']:.1f} s)"
    )
    if "truth" in data:
        ok = np.isfinite(res["params"]).all(axis=1)
        acc = accuracy(res["params"], res["errors"], np.asarray(data["truth"], dtype=np.float64), ok)
        print("column     " + " ".join(f"{c:>8s}" for c in COLUMNS))
        print("median|d|  " + " ".join(f"{acc['median_abs'][c]:8.4f}" for c in COLUMNS) + "   (flux, re fractional)")
        print(
            "pull std   "
            + " ".join(f"{acc['pull_std'][c]:8.3f}" for c in COLUMNS)
            + f"   (+-{1 / math.sqrt(2 * max(n - 1, 1)):.2f} by chance for N = {n})"
        )
        print(
            f"outlier fraction {acc['outlier_fraction']:.3f}  "
            f"(|dx|,|dy| > 1 px, |dflux/flux|, |dre/re| > 0.2, |dn| > 1, |dq| > 0.1, or failed)"
        )
    if args.out:
        np.savez(args.out, **res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
