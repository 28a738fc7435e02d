"""The morphology network on a file of images, on the file contract of ``python -m fitting.engine.bench``.

    python -m ml.morph.bench --data FILE.npz --out OUT.npz [--threads N] [--device cpu|cuda]
                             [--weights DIR] [--passes P] [--draws S]

FILE.npz: ``images`` [N, H, W] (sky-subtracted, any H, W), ``sigma`` [N, H, W], ``psf`` [h, w]
(its FWHM, from the area above half maximum, goes to the network with the noise level, the median
of sigma), optional ``truth`` [N, 7] in the columns x, y, flux, re, n, q, theta.

OUT.npz: ``params`` [N, 7] posterior medians in those columns, ``errors`` [N, 7] posterior
standard deviations, ``lo`` and ``hi`` [N, 7, 3] the 68.3 / 95.4 / 99.7 % central intervals,
``seconds`` (wall time of the network passes, model loading and a warm-up pass excluded),
``seconds_total`` (with the sampling and the summaries) and ``calibrated`` (whether the weights'
calibration for this number of passes, ml.morph.calibration, was applied: the mean correction
and the interval scales).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ml.morph.posterior import load_nets, posterior
from ml.morph.render import noise_level, psf_fwhm, psf_shape

DEFAULT_WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "morph"


def run(
    data: dict,
    *,
    weights: str | Path = DEFAULT_WEIGHTS,
    device: str = "cpu",
    threads: int | None = None,
    passes: int = 1,
    draws: int = 1000,
) -> dict:
    """The OUT.npz content for a bench file loaded as a dict of arrays."""
    if device == "cpu":
        torch.set_num_threads(threads or 1)
    net = load_nets(weights, device=device)["sersic"]
    images = np.asarray(data["images"], dtype=np.float32)
    noise = noise_level(np.asarray(data["sigma"], dtype=np.float32))
    fwhm, shape = psf_fwhm(np.asarray(data["psf"])), psf_shape(np.asarray(data["psf"]))
    posterior(net, images[: min(64, len(images))], noise[:64], fwhm, passes=passes, draws=16, shape=shape)  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = posterior(net, images, noise, fwhm, passes=passes, draws=draws, shape=shape)
    total = time.perf_counter() - t0
    return {
        "params": out["median"],
        "errors": out["std"],
        "lo": out["lo"],
        "hi": out["hi"],
        "seconds": np.float64(out["net_seconds"]),
        "seconds_total": np.float64(total),
        "fwhm": np.float64(fwhm),
        "calibrated": np.bool_(out["calibrated"]),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ml.morph.bench", description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, help="input .npz (images, sigma, psf[, truth])")
    ap.add_argument("--out", help="output .npz (params, errors, lo, hi, seconds)")
    ap.add_argument("--device", choices=["cpu", "cuda"], default=None, help="default: cuda when present")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default 1)")
    ap.add_argument("--weights", default=str(DEFAULT_WEIGHTS), help="folder with ensemble.json")
    ap.add_argument("--passes", type=int, default=1, help="MC-dropout passes (1: one deterministic pass)")
    ap.add_argument("--draws", type=int, default=1000, help="posterior samples per galaxy")
    args = ap.parse_args(argv)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    with np.load(args.data) as f:
        data = {k: f[k] for k in f.files}
    res = run(data, weights=args.weights, device=device, threads=args.threads, passes=args.passes, draws=args.draws)
    n = len(data["images"])
    print(
        f"galaxies {n}  device {device}  threads {args.threads or 1}  passes {args.passes}  network seconds/galaxy "
        f"{res['seconds'] / n:.6f}  with sampling {res['seconds_total'] / n:.6f}  PSF FWHM read {res['fwhm']:.2f} px  "
        f"calibrated {bool(res['calibrated'])}"
    )
    if "truth" in data:
        from fitting.engine.bench import COLUMNS, accuracy

        truth = np.asarray(data["truth"], dtype=np.float64)
        ok = np.isfinite(res["params"]).all(axis=1)
        acc = accuracy(res["params"].copy(), res["errors"], truth, ok)
        print("column     " + " ".join(f"{c:>8s}" for c in COLUMNS))
        print("median|d|  " + " ".join(f"{acc['median_abs'][c]:8.4f}" for c in COLUMNS) + "   (flux, re fractional)")
        print(
            "pull std   "
            + " ".join(f"{acc['pull_std'][c]:8.3f}" for c in COLUMNS)
            + f"   (+-{1 / math.sqrt(2 * max(n - 1, 1)):.2f} by chance)"
        )
        print(f"outlier fraction {acc['outlier_fraction']:.3f}")
    if args.out:
        np.savez(args.out, **res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
