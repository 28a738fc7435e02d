"""Profile-fitting benchmark: our engine against peers on GalSim renders, one table.

    .venv/bin/python bench/fit_bench.py [--n 100] [--threads 2] [--peers scipy,pyimfit,astrophot,galmoss]
                                        [--save bench.npz] [--peer-n 30] [--compile]

Renders N Sérsic galaxies (64 x 64, Moffat PSF truncated at 12 px, Gaussian noise) with GalSim, an independent
renderer; every fitter starts from the same values (image moments, fitting.engine.init) with
the same thread count; the table gives seconds per galaxy, our throughput as a ratio to each peer,
median absolute errors (flux, re fractional), outlier fraction and pull std where a fitter
reports errors. Peers that fail to import or run are listed with the reason, not hidden. Slow
peers may be run on the first --peer-n galaxies only (the table says so).

Peers and galsim come from requirements-bench.txt (never installed on the site).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
import traceback
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

COLUMNS = ("x", "y", "flux", "re", "n", "q", "theta")
SIZE = 64
PSF_SIZE = 25
PSF_FWHM = 2.5  # pixels
MOFFAT_BETA = 3.0
NOISE = 1.0


# --------------------------------------------------------------------------- data
def render(n_gal: int, seed: int = 1) -> dict:
    """GalSim renders: images [N, 64, 64], sigma, psf [25, 25] (sampled, no pixel), truth [N, 7]."""
    import galsim

    rng = np.random.default_rng(seed)
    truth = np.empty((n_gal, 7))
    images = np.empty((n_gal, SIZE, SIZE), dtype=np.float32)
    # truncated at the PSF image's half-width, so the PSF every fitter is given is the whole PSF of
    # the renders (an untruncated Moffat keeps 0.16 % of its light beyond 12 px, which no fitter
    # given a 25 x 25 image could model)
    psf = galsim.Moffat(beta=MOFFAT_BETA, fwhm=PSF_FWHM, trunc=PSF_SIZE // 2)
    psf_img = psf.drawImage(nx=PSF_SIZE, ny=PSF_SIZE, scale=1.0, method="no_pixel").array.astype(np.float64)
    psf_img /= psf_img.sum()
    centre = (SIZE - 1) / 2.0  # GalSim's true centre of an even image, in 0-based pixel coordinates
    for i in range(n_gal):
        n = rng.uniform(0.5, 4.5)
        re = rng.uniform(1.5, 8.0)
        q = rng.uniform(0.25, 0.9)
        theta = rng.uniform(-math.pi / 2, math.pi / 2)
        flux = 10 ** rng.uniform(3.0, 4.0)
        dx, dy = rng.uniform(-1.5, 1.5, size=2)
        # GalSim's half_light_radius is circularised; shear() keeps the area: major = r / sqrt(q)
        gal = galsim.Sersic(n=n, half_light_radius=re * math.sqrt(q), flux=flux)
        gal = gal.shear(q=q, beta=theta * galsim.radians)
        img = galsim.Convolve(gal, psf).drawImage(nx=SIZE, ny=SIZE, scale=1.0, offset=(dx, dy))
        images[i] = img.array
        truth[i] = (centre + dx, centre + dy, flux, re, n, q, theta)
    sigma = np.full_like(images, NOISE)
    images = images + rng.normal(0.0, NOISE, size=images.shape).astype(np.float32)
    return {"images": images, "sigma": sigma, "psf": psf_img.astype(np.float32), "truth": truth}


def start_values(data: dict) -> np.ndarray:
    """Common start values [N, 7] from image moments (our init code, shared by every fitter)."""
    import torch

    from fitting.engine.init import border_sky, moments_init, segment

    img = torch.from_numpy(data["images"])
    valid = torch.ones_like(img, dtype=torch.bool)
    sky, _ = border_sky(img, valid)
    sky = torch.zeros_like(sky)  # the renders carry no sky
    target, _, found = segment(img, sky, torch.from_numpy(data["sigma"]), valid)
    p = moments_init(img, sky, target, found).numpy()
    return p[:, [0, 1, 3, 4, 5, 6, 7]]


# --------------------------------------------------------------------------- helpers
def sersic_bn(n: float) -> float:
    from scipy.special import gammaincinv

    return float(gammaincinv(2 * n, 0.5))


def ie_from_flux(flux, re, n, q):
    """Surface brightness at re (per pixel) of a Sérsic with total flux (imfit's I_e)."""
    from scipy.special import gamma

    b = sersic_bn(n)
    return flux / (2 * math.pi * q * re**2 * n * math.exp(b) * b ** (-2 * n) * gamma(2 * n))


def flux_from_ie(ie, re, n, q):
    return ie / ie_from_flux(1.0, re, n, q)


# --------------------------------------------------------------------------- fitters
def fit_ours(data, init, threads, compile_):
    from fitting.engine import bench

    res = bench.run({**data, "init": init}, device="cpu", threads=threads, compile=compile_)
    mode = f"{threads} worker processes x 1 thread" if threads > 1 else "1 thread"
    print(f"ours: {mode}{', compiled' if compile_ else ''}; set-up before the timed fit {float(res['setup_seconds']):.1f} s", flush=True)
    return res["params"], res["errors"], res["seconds"]


def fit_scipy(data, init, threads):
    """Baseline: numpy Sérsic (centre 5 x 5 px box oversampled 8 x 8), scipy FFT convolution,
    scipy.optimize.least_squares (trf, 2-point Jacobian). Errors from (J^T J)^-1."""
    from scipy.optimize import least_squares
    from scipy.signal import fftconvolve

    os.environ["OMP_NUM_THREADS"] = str(threads)
    psf = data["psf"].astype(np.float64)
    h = SIZE
    yy, xx = np.mgrid[0:h, 0:h].astype(np.float64)
    k = 8
    sub = (np.arange(k) + 0.5) / k - 0.5

    def sersic(p):
        x0, y0, flux, re, n, q, th = p
        b = sersic_bn(n)
        from scipy.special import gamma

        amp = flux * b ** (2 * n) / (2 * math.pi * q * re**2 * n * gamma(2 * n))
        c, s = math.cos(th), math.sin(th)

        def prof(x, y):
            dx, dy = x - x0, y - y0
            xm = dx * c + dy * s
            ym = (-dx * s + dy * c) / q
            r = np.sqrt(xm * xm + ym * ym)
            return amp * np.exp(-b * (r / re) ** (1.0 / n))

        img = prof(xx, yy)
        ix, iy = int(round(x0)) - 2, int(round(y0)) - 2
        ix, iy = min(max(ix, 0), h - 5), min(max(iy, 0), h - 5)
        bx = (np.arange(ix, ix + 5)[:, None] + sub[None, :]).ravel()
        by = (np.arange(iy, iy + 5)[:, None] + sub[None, :]).ravel()
        box = prof(bx[None, :], by[:, None]).reshape(5, k, 5, k).mean(axis=(1, 3))
        img[iy : iy + 5, ix : ix + 5] = box
        return fftconvolve(img, psf, mode="same")

    n_gal = len(data["images"])
    params = np.full((n_gal, 7), np.nan)
    errors = np.full((n_gal, 7), np.nan)
    lo = [0, 0, 1e-3, 0.05, 0.2, 0.02, -10]
    hi = [h, h, 1e9, 2 * h, 10.0, 1.0, 10]
    t0 = time.perf_counter()
    for i in range(n_gal):
        img, sig = data["images"][i].astype(np.float64), data["sigma"][i].astype(np.float64)
        p0 = np.clip(init[i], np.array(lo) + 1e-6, np.array(hi) - 1e-6)
        try:
            r = least_squares(
                lambda p, img=img, sig=sig: ((img - sersic(p)) / sig).ravel(), p0, bounds=(lo, hi), method="trf", x_scale="jac"
            )
            params[i] = r.x
            errors[i] = np.sqrt(np.diag(np.linalg.pinv(r.jac.T @ r.jac)))
        except Exception:  # noqa: BLE001 - a failed fit stays NaN
            pass
    return params, errors, time.perf_counter() - t0


def fit_pyimfit(data, init, threads):
    """pyimfit (Imfit's Sersic, LM solver, its own centre subsampling)."""
    import pyimfit

    n_gal = len(data["images"])
    params = np.full((n_gal, 7), np.nan)
    errors = np.full((n_gal, 7), np.nan)
    psf = data["psf"].astype(np.float64)
    t0 = time.perf_counter()
    for i in range(n_gal):
        x, y, flux, re, n, q, th = init[i]
        md = pyimfit.SimpleModelDescription()
        md.x0.setValue(x + 1, [x - 4, x + 6])  # imfit pixel centres are 1-based
        md.y0.setValue(y + 1, [y - 4, y + 6])
        s = pyimfit.make_imfit_function("Sersic")
        s.PA.setValue((math.degrees(th) + 90) % 180, [-180, 360])
        s.ell.setValue(1 - q, [0, 0.98])
        s.n.setValue(n, [0.2, 10])
        s.I_e.setValue(ie_from_flux(flux, re, n, q), [1e-6, 1e7])
        s.r_e.setValue(re, [0.05, 2 * SIZE])
        md.addFunction(s)
        try:
            f = pyimfit.Imfit(md, psf=psf, maxThreads=threads)
            r = f.fit(data["images"][i].astype(np.float64), error=data["sigma"][i].astype(np.float64))
            x0, y0, pa, ell, nn, ie, rre = r.params
            ex, ey, epa, eell, enn, eie, ere = r.paramErrs
            qq = 1 - ell
            fl = flux_from_ie(ie, rre, nn, qq)
            params[i] = (x0 - 1, y0 - 1, fl, rre, nn, qq, math.radians(pa - 90))
            # flux error from I_e's alone (imfit reports no covariance with re, n here)
            errors[i] = (ex, ey, fl * eie / ie, ere, enn, eell, math.radians(epa))
        except Exception:  # noqa: BLE001
            pass
    return params, errors, time.perf_counter() - t0


def fit_astrophot(data, init, threads):
    """AstroPhot (PyTorch; Sersic galaxy model, its LM, PSF convolution); one galaxy at a time."""
    import astrophot as ap
    import torch

    torch.set_num_threads(threads)
    n_gal = len(data["images"])
    params = np.full((n_gal, 7), np.nan)
    errors = np.full((n_gal, 7), np.nan)
    psf = data["psf"].astype(np.float64)
    t0 = time.perf_counter()
    for i in range(n_gal):
        x, y, flux, re, n, q, th = init[i]
        try:
            target = ap.TargetImage(
                data=data["images"][i].astype(np.float64),
                variance=data["sigma"][i].astype(np.float64) ** 2,
                pixelscale=1.0,
                psf=ap.PSFImage(data=psf),
            )
            # AstroPhot: pixel [0, 0] centred at (0, 0) here, PA counter-clockwise from +y
            m = ap.Model(
                name="g",
                model_type="sersic galaxy model",
                target=target,
                center=[x, y],
                PA=(th + math.pi / 2) % math.pi,
                q=q,
                n=n,
                Re=re,
                Ie=ie_from_flux(flux, re, n, q),
                psf_convolve=True,
            )
            m.initialize()
            ap.fit.LM(m, verbose=0).fit()
            cx, cy = (float(v) for v in m.center.value)
            ecx, ecy = (float(v) for v in m.center.uncertainty)
            qq, nn, rre, ie = (float(getattr(m, k).value) for k in ("q", "n", "Re", "Ie"))
            fl = flux_from_ie(ie, rre, nn, qq)
            params[i] = (cx, cy, fl, rre, nn, qq, float(m.PA.value) - math.pi / 2)
            errors[i] = (
                ecx,
                ecy,
                fl * float(m.Ie.uncertainty) / ie,
                float(m.Re.uncertainty),
                float(m.n.uncertainty),
                float(m.q.uncertainty),
                float(m.PA.uncertainty),
            )
        except Exception:  # noqa: BLE001
            traceback.print_exc()
    return params, errors, time.perf_counter() - t0


def fit_galmoss(data, init, threads):
    """GalMOSS (PyTorch, batched, DiffGrad optimiser, 1000 iterations, covariance errors); the
    whole subset in one batch. Reads FITS files: written to a temporary folder outside the timing."""
    import tempfile

    import galmoss as gm
    import torch
    from astropy.io import fits
    from astropy.table import Table

    torch.set_num_threads(threads)
    n_gal = len(data["images"])
    tmp = tempfile.mkdtemp(prefix="galmoss_")
    img_paths, sig_paths = [], []
    for i in range(n_gal):
        for arr, bucket, tag in ((data["images"][i], img_paths, "img"), (data["sigma"][i], sig_paths, "sig")):
            path = os.path.join(tmp, f"{tag}{i}.fits")
            fits.writeto(path, arr.astype(np.float64), overwrite=True)
            bucket.append(path)
    psf_path = os.path.join(tmp, "psf.fits")
    fits.writeto(psf_path, data["psf"].astype(np.float64), overwrite=True)
    x, y, flux, re, n, q, th = init[:n_gal].T
    # GalMOSS: pixel centres at half-integers, pa in degrees = theta - 90
    sersic = gm.lp.Sersic(
        cen_x=gm.p(x + 0.5),
        cen_y=gm.p(y + 0.5),
        pa=gm.p(np.degrees(th) - 90.0, angle=True),
        axis_r=gm.p(np.clip(q, 0.05, 1.0)),
        eff_r=gm.p(re),
        ser_n=gm.p(np.clip(n, 0.3, 8), log=True),
        mag=gm.p(22.5 - 2.5 * np.log10(flux), M0=22.5),
    )
    ds = gm.DataSet(
        galaxy_index=[str(i) for i in range(n_gal)],
        image_path=img_paths,
        sigma_path=sig_paths,
        psf_path=[psf_path] * n_gal,
        result_path=tmp,
        device="cpu",
    )
    ds.define_profiles(sersic=sersic)
    fitter = gm.Fitting(dataset=ds, batch_size=n_gal, iteration=1000)
    t0 = time.perf_counter()
    fitter.fit()
    fitter.uncertainty(method="covar_mat")
    secs = time.perf_counter() - t0
    r = Table.read(os.path.join(tmp, "result.fits"))

    def col(name):
        return np.asarray(r[f"sersic_{name}_(varaible)"], dtype=np.float64), np.asarray(r[f"sersic_{name}_err"], dtype=np.float64)

    (cx, ecx), (cy, ecy), (pa, epa), (qq, eq), (rre, ere), (nn, en), (mag, emag) = (
        col(k) for k in ("cen_x", "cen_y", "pa", "axis_r", "eff_r", "ser_n", "mag")
    )
    fl = 10 ** ((22.5 - mag) / 2.5)
    params = np.stack([cx - 0.5, cy - 0.5, fl, rre, nn, qq, np.radians(pa + 90.0)], axis=1)
    errors = np.stack([ecx, ecy, fl * emag * math.log(10) / 2.5, ere, en, eq, np.radians(epa)], axis=1)
    return params, errors, secs


PEERS = {"scipy": fit_scipy, "pyimfit": fit_pyimfit, "astrophot": fit_astrophot, "galmoss": fit_galmoss}
#: Peers that take seconds per galaxy here: run on --slow-peer-n galaxies.
SLOW_PEERS = ("astrophot", "galmoss")


# --------------------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--peers", default="scipy,pyimfit,astrophot,galmoss")
    ap.add_argument("--peer-n", type=int, default=None, help="galaxies given to each peer (default all)")
    ap.add_argument("--slow-peer-n", type=int, default=10, help="galaxies given to astrophot and galmoss")
    ap.add_argument("--save", help="also write the rendered benchmark (fitting.engine.bench format)")
    ap.add_argument("--compile", action="store_true", help="our engine with torch.compile")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)

    import torch

    from fitting.engine.bench import accuracy

    torch.set_num_threads(args.threads)
    t = time.perf_counter()
    data = render(args.n, seed=args.seed)
    init = start_values(data)
    print(f"rendered {args.n} GalSim galaxies in {time.perf_counter() - t:.1f} s; threads {args.threads}")
    if args.save:
        np.savez(args.save, **data, init=init)
    rows = []

    ours_fit: dict = {}

    def record(name, fn, n_fit):
        sub = {k: (v[:n_fit] if k != "psf" else v) for k, v in data.items()}
        try:
            params, errors, secs = fn(sub, init[:n_fit])
        except Exception as exc:  # noqa: BLE001 - reported in the table
            traceback.print_exc()
            rows.append((name, n_fit, None, f"failed: {type(exc).__name__}: {str(exc)[:80]}", None))
            return
        ok = np.isfinite(params).all(axis=1)
        acc = accuracy(params, errors, data["truth"][:n_fit], ok)
        rows.append((name, n_fit, secs / n_fit, "", acc))
        if name == "ours":
            ours_fit.update(params=params, errors=errors, spg=secs / n_fit)
        elif n_fit < args.n and ours_fit:
            # like for like: our accuracy on the same galaxies as this peer
            p, e = ours_fit["params"][:n_fit], ours_fit["errors"][:n_fit]
            acc_o = accuracy(p, e, data["truth"][:n_fit], np.isfinite(p).all(axis=1))
            rows.append((f"  ours[:{n_fit}]", n_fit, ours_fit["spg"], "", acc_o))

    record("ours", lambda d, i: fit_ours(d, i, args.threads, args.compile), args.n)
    for peer in [p for p in args.peers.split(",") if p]:
        fn = PEERS.get(peer)
        if fn is None:
            rows.append((peer, 0, None, "failed: no adapter", None))
            continue
        n_peer = min(args.slow_peer_n, args.n) if peer in SLOW_PEERS else (args.peer_n or args.n)
        record(peer, lambda d, i, fn=fn: fn(d, i, args.threads), n_peer)

    ours = rows[0][2]
    print()
    print(
        f"{'fitter':10s} {'N':>4s} {'s/galaxy':>9s} {'ours x':>7s} {'|dx|':>6s} {'dflux':>6s} {'dre':>6s} "
        f"{'|dn|':>6s} {'|dq|':>6s} {'outl':>5s}  pull std x/y/flux/re/n/q/theta"
    )
    for name, n_fit, spg, note, acc in rows:
        if acc is None:
            print(f"{name:10s} {n_fit:4d} {'-':>9s} {'-':>7s}  {note}")
            continue
        m = acc["median_abs"]
        ratio = f"{spg / ours:7.1f}" if ours and not name.startswith("  ours") else "      -"
        pulls = "/".join(f"{acc['pull_std'].get(c, float('nan')):.2f}" for c in COLUMNS)
        print(
            f"{name:10s} {n_fit:4d} {spg:9.4f} {ratio} {m['x']:6.3f} {m['flux']:6.3f} {m['re']:6.3f} "
            f"{m['n']:6.3f} {m['q']:6.3f} {acc['outlier_fraction']:5.2f}  {pulls} {note}"
        )
    print(
        "\n'ours x' = peer seconds per galaxy / ours (how many times faster we are); dflux, dre fractional;"
        "\n'ours[:k]' = our accuracy on the k galaxies a slow peer was given (same images, same starts);"
        "\npull std = std((fit - truth) / reported error) over the non-outliers; from N fits it scatters by"
        f"\nabout 1/sqrt(2(N-1)) by chance alone: +-{1 / math.sqrt(2 * (args.n - 1)):.2f} for N = {args.n}."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
