"""Morphology network against the LM fitter on the same file: speed and accuracy in Cramér-Rao units.

    .venv/bin/python bench/morph_bench.py [--n 512] [--threads 1] [--rounds 5] [--device cpu|cuda] [--fwhm 2.5] [--keep DIR]

Renders N isolated Sérsic galaxies (64 x 64, one Moffat PSF, Poisson + sky noise, SNR 20-100) with
ml.morph.render (the fitting engine's renderer) into one bench file, runs
``python -m fitting.engine.bench`` and ``python -m ml.morph.bench`` on it with the same thread count
(each in its own process, set-up and model loading outside the timed part), and prints seconds per
galaxy, the speed ratio, and per column the scatter (1.4826 MAD) and median bias of
(estimate - truth) / CRB for both, with the coverage of the network's intervals and the fitter's
+-1 sigma errors.

The speed ratio is then measured again in this one process: ``--rounds`` times, one after the other,
the LM fit of all N galaxies (``fitting.engine.bench.run``) and one network pass over the same N
images (``ml.morph.posterior.network_pass``, batches of 64 and of N), with the same thread count;
it prints each round's ms/galaxy and ratio and the median ratio. Alternating the two keeps both
under the same load, so on a shared machine the median ratio of the rounds is the figure to quote.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

COLUMNS = ("x", "y", "flux", "re", "n", "q", "theta")


def make_file(path: Path, n: int, fwhm: float, seed: int) -> np.ndarray:
    """Write the bench file; returns the CRB [N, 7]."""
    import torch

    from ml.morph.crb import cramer_rao
    from ml.morph.render import MorphConfig, psf_image, render_chunk

    cfg = MorphConfig(
        size=64,
        n=n,
        chunk=n,
        seed=seed,
        snr_range=(20.0, 100.0),
        neighbour_prob=0.0,
        re_range=(1.0, 12.0),
        fwhm_range=(fwhm, fwhm),
        moffat_fraction=1.0,
        moffat_beta=(3.0, 3.0),
    )
    d = render_chunk(cfg, 0)
    truth = np.stack([d["truth"][c] for c in COLUMNS], 1)
    np.savez(path, images=d["images"], sigma=d["sigma"], psf=psf_image("moffat", fwhm, 3.0).astype(np.float32), truth=truth)
    _, crb = cramer_rao("sersic", torch.from_numpy(d["p_true"]), torch.from_numpy(d["psf"]), torch.from_numpy(d["sigma"]))
    return crb.numpy()


def _run(module: str, data: Path, out: Path, threads: int, device: str, extra: tuple[str, ...] = ()) -> str:
    cmd = [sys.executable, "-m", module, "--data", str(data), "--out", str(out), "--threads", str(threads), "--device", device, *extra]
    return subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True).stdout


def interleaved(data: Path, rounds: int, threads: int, device: str, weights: str) -> list[float]:
    """Alternate the LM fit of the file's galaxies and one network pass over them (same threads);
    prints and returns the ratios of LM to network seconds (network batches of 64) per round."""
    import torch

    from fitting.engine.bench import run as lm_run
    from ml.morph.posterior import load_nets, network_pass
    from ml.morph.render import noise_level, psf_fwhm, psf_shape

    with np.load(data) as f:
        arrays = {k: f[k] for k in f.files}
    net = load_nets(weights, device=device)["sersic"]
    images = torch.from_numpy(arrays["images"].astype(np.float32)).to(device)
    noise = torch.from_numpy(noise_level(arrays["sigma"]))
    fwhm = torch.full((len(images),), psf_fwhm(arrays["psf"]), dtype=torch.float64)
    shape = torch.full((len(images),), psf_shape(arrays["psf"]), dtype=torch.float64)
    n = len(images)

    def net_seconds(batch: int) -> float:
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        network_pass(net, images, noise, fwhm, shape, batch=batch)
        if device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    if device == "cpu":
        torch.set_num_threads(threads)
    net_seconds(64)  # warm-up
    print(f"\nalternating in one process, N = {n}, {device}, {threads} thread(s):")
    print("round   LM ms/gal   net ms/gal (batch 64)   net ms/gal (batch N)   ratio (64)   ratio (N)")
    ratios = []
    for r in range(rounds):
        t_lm = float(lm_run(arrays, device=device, threads=threads)["seconds"])
        if device == "cpu":
            torch.set_num_threads(threads)  # the engine's run sets it; keep the network on the same count
        t64, tn = net_seconds(64), net_seconds(n)
        ratios.append(t_lm / t64)
        print(f"{r + 1:5d}   {1e3 * t_lm / n:9.3f}   {1e3 * t64 / n:21.3f}   {1e3 * tn / n:20.3f}   {t_lm / t64:10.1f}   {t_lm / tn:9.1f}")
    print(f"median ratio LM / network (batch 64) over {rounds} rounds: {np.median(ratios):.1f}x (target >= 10x)")
    return ratios


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=512)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5, help="alternating LM / network timings in one process (0: none)")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--fwhm", type=float, default=2.5, help="Moffat (beta 3) FWHM of the file's PSF [px]")
    ap.add_argument("--seed", type=int, default=424242)
    ap.add_argument("--weights", default=str(ROOT / "ml" / "weights" / "morph"), help="morphology weights folder")
    ap.add_argument("--keep", help="keep the bench file and both outputs in this folder")
    args = ap.parse_args(argv)
    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="morph_bench_"))
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "bench.npz"
    crb = make_file(data, args.n, args.fwhm, args.seed)
    lm_txt = _run("fitting.engine.bench", data, folder / "lm.npz", args.threads, args.device)
    net_txt = _run("ml.morph.bench", data, folder / "net.npz", args.threads, args.device, ("--weights", args.weights))
    print("fitting.engine.bench:", lm_txt.splitlines()[0])
    print("ml.morph.bench:      ", net_txt.splitlines()[0])
    with np.load(data) as f:
        truth = f["truth"]
    lm, net = np.load(folder / "lm.npz"), np.load(folder / "net.npz")
    n = args.n
    t_lm, t_net = float(lm["seconds"]) / n, float(net["seconds"]) / n
    print(
        f"\nN = {n}, {args.device}, {args.threads} threads: LM {1e3 * t_lm:.3f} ms/galaxy, network {1e3 * t_net:.3f} ms/galaxy "
        f"(with sampling {1e3 * float(net['seconds_total']) / n:.3f}); network {t_lm / t_net:.1f}x faster"
    )
    print("\ncolumn        " + " ".join(f"{c:>8s}" for c in COLUMNS))
    for label, res in (("LM", lm), ("network", net)):
        d = res["params"] - truth
        d[:, 6] = (d[:, 6] + np.pi / 2) % np.pi - np.pi / 2
        z = d / crb
        ok = np.isfinite(z).all(1)
        med = np.median(z[ok], 0)
        mad = 1.4826 * np.median(np.abs(z[ok] - med), 0)
        print(f"{label:8s} bias " + " ".join(f"{v:+8.2f}" for v in med) + "   (median of (est - truth) / CRB)")
        print(f"{label:8s} sc.  " + " ".join(f"{v:8.2f}" for v in mad) + "   (1.4826 MAD, CRB units)")
        pull = np.abs(d) <= res["errors"]
        print(f"{label:8s} 1sig " + " ".join(f"{v:8.3f}" for v in pull[ok].mean(0)) + "   (fraction within +-1 error; 0.683 nominal)")
    t = truth.copy()
    t[:, 6] = net["params"][:, 6] + ((t[:, 6] - net["params"][:, 6] + np.pi / 2) % np.pi - np.pi / 2)
    inside = (t >= net["lo"][..., 0]) & (t <= net["hi"][..., 0])
    print("network 68.3% interval coverage " + " ".join(f"{v:.3f}" for v in inside.mean(0)))
    if args.rounds > 0:
        interleaved(data, args.rounds, args.threads, args.device, args.weights)
    if not args.keep:
        for p in folder.iterdir():
            p.unlink()
        folder.rmdir()
    return 0


if __name__ == "__main__":
    sys.exit(main())
