"""Posteriors from a trained network: Monte-Carlo dropout passes, samples, GaMPEN's summaries.

Each pass (dropout on when passes > 1, else one deterministic pass) gives a mean and a covariance
in target space; from each pass ``draws`` samples are drawn from N(mean, Sigma) and mapped to the
physical columns, where the summaries are taken: median, mode (peak of a histogram of the samples),
mean, standard deviation and the central 68.3 / 95.4 / 99.7 % intervals. When the weights carry a
calibration for the cutout side and the number of passes used (calibration.json, see
ml.morph.calibration), each pass's mean is corrected before sampling and the samples are mapped
so that the intervals get their calibrated widths.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ml.morph.calibration import LEVELS, apply_interval_scales, apply_mean_correction
from ml.morph.nets import ZOOM_MAX, MorphNet, covariance, mc_dropout, preprocess
from ml.morph.targets import BOUNDS, PHYSICAL, TARGETS, theta_column, to_physical
from ml.weights_files import checked_manifest, sha256_file

#: Bins of the histogram whose peak is the mode.
MODE_BINS = 40
#: Galaxies whose samples are summarised at a time.
SUMMARY_BLOCK = 256


def load_nets(directory: str | Path, expected_sha256: dict | None = None, device: str = "cpu") -> dict[str, MorphNet]:
    """{kind: network} of a weights folder, after checking every file's sha256 against the folder's
    ensemble.json (and against ``expected_sha256`` {file: sha256}, e.g. a ModelVersion's, when given).
    The networks are made for inference (MorphNet.for_inference). Raises
    ml.weights_files.WeightsChecksumError on a mismatch."""
    from ml.weights_files import WeightsChecksumError

    directory = Path(directory)
    manifest = checked_manifest(directory)
    nets = {}
    for member in manifest["members"]:
        if expected_sha256 is not None and expected_sha256.get(member["file"]) != member["sha256"]:
            raise WeightsChecksumError(f"{directory / member['file']}: sha256 {member['sha256']} is not the registered one")
        ck = torch.load(directory / member["file"], map_location=device, weights_only=True)
        meta = json.loads(ck["meta"])
        crop = meta.get("crop", "learned")  # the first weights predate the choice
        zoom_max = meta.get("zoom_max", ZOOM_MAX)  # weights before 2026-12-07 saw at most the whole cutout
        net = MorphNet(
            TARGETS[meta["kind"]],
            width=meta["width"],
            dropout=meta["dropout"],
            view=meta["view"],
            crop=crop,
            zoom_max=zoom_max,
            psf_shape=meta.get("psf_shape", False),  # weights before 2026-12-08 read only the FWHM
        )
        net.load_state_dict({"pixel_power": net.pixel_power, **ck["state_dict"]})
        net.to(device).for_inference()
        net.meta = meta
        nets[meta["kind"]] = net
    cal = manifest.get("calibration")
    if cal:
        if sha256_file(directory / cal["file"]) != cal["sha256"]:
            raise WeightsChecksumError(f"{directory / cal['file']}: sha256 differs from the manifest's {cal['sha256']}")
        data = json.loads((directory / cal["file"]).read_text())
        for kind, net in nets.items():
            net.posterior_calibration = {
                (int(side), int(p)): {"mean": e[kind]["mean"], "scales": np.array([e[kind]["scales"][c] for c in PHYSICAL[kind]])}
                for side, entries in data["sides"].items()
                for p, e in entries["passes"].items()
                if kind in e
            }
    return nets


@torch.no_grad()
def network_pass(
    net: MorphNet, images: Tensor, noise: Tensor, fwhm: Tensor, shape: Tensor | None = None, dropout: bool = False, batch: int = 64
):
    """One pass over [N, H, W]: (mean [N, K], Sigma [N, K, K], zoom [N]) in target units, float64.
    shape: [N] the PSF's shape (ml.morph.render.psf_shape), None for a Gaussian's."""
    mc_dropout(net, dropout)
    dev = next(net.parameters()).device
    means, covs, zooms = [], [], []
    for b0 in range(0, images.shape[0], batch):
        sh = None if shape is None else shape[b0 : b0 + batch]
        x, ex = preprocess(images[b0 : b0 + batch].to(dev), noise[b0 : b0 + batch], fwhm[b0 : b0 + batch], sh)
        mean, log_var, off, s, _ = net(x, ex)
        means.append(mean.double().cpu())
        covs.append(covariance(log_var.double(), off.double(), net.scale().double()).cpu())
        zooms.append(s.double().cpu())
    return torch.cat(means), torch.cat(covs), torch.cat(zooms)


def network_runs(
    net: MorphNet, images, noise, fwhm, passes: int = 1, shape=None
) -> tuple[list[tuple[Tensor, Tensor, Tensor]], Tensor, Tensor]:
    """The network's passes over [N, H, W] (MC dropout when passes > 1): ([(mean, Sigma, zoom)],
    noise [N], fwhm [N]) as float64 tensors. shape: the PSF's shape ([N] or one value; None: a
    Gaussian's)."""
    img = torch.as_tensor(np.asarray(images, dtype=np.float32))
    n = img.shape[0]

    def per_galaxy(v) -> Tensor:
        return torch.as_tensor(np.broadcast_to(np.asarray(v, dtype=np.float64), (n,)).copy())

    nz, fw = per_galaxy(noise), per_galaxy(fwhm)
    sh = None if shape is None else per_galaxy(shape)
    return [network_pass(net, img, nz, fw, sh, dropout=passes > 1) for _ in range(max(1, passes))], nz, fw


def posterior(
    net: MorphNet,
    images,
    noise,
    fwhm,
    *,
    passes: int = 1,
    draws: int = 1000,
    seed: int = 0,
    keep_samples: bool = False,
    calibrated: bool = True,
    shape=None,
) -> dict:
    """Posterior summaries of N galaxies of one cutout size.

    images: [N, H, W] sky-subtracted; noise: [N] noise level (median of the sigma map); fwhm: [N]
    or scalar PSF FWHM (px); shape: [N] or scalar PSF shape (ml.morph.render.psf_shape; None: a
    Gaussian's; networks made without ``psf_shape`` ignore it). passes > 1: MC dropout,
    ``draws // passes`` samples per pass.
    Returns numpy arrays: names, mean_t [N, K] and cov_t [N, K, K] (target space, first pass,
    the mean corrected when calibrated), median, mode, mean, std [N, K'], lo, hi [N, K', 3]
    (LEVELS), zoom [N], net_seconds, and samples [N, S, K'] when keep_samples. calibrated: apply
    the weights' calibration for this cutout side and number of passes when they carry one
    (calibration.json, see ml.morph.calibration; fitted on one side, it does not carry over to
    others); ``calibrated`` in the result says whether it was.
    """
    t0 = time.perf_counter()
    runs, nz, fw = network_runs(net, images, noise, fwhm, passes, shape)
    net_seconds = time.perf_counter() - t0
    size = float(max(np.shape(images)[-2:]))
    cal = getattr(net, "posterior_calibration", {}).get((int(size), len(runs))) if calibrated else None
    out = summaries(net.meta["kind"], runs, size, nz, fw, draws=draws, seed=seed, calibration=cal, keep_samples=keep_samples)
    out["net_seconds"] = net_seconds
    return out


def summaries(
    kind: str,
    runs: list[tuple[Tensor, Tensor, Tensor]],
    size: float,
    noise: Tensor,
    fwhm: Tensor,
    *,
    draws: int = 1000,
    seed: int = 0,
    calibration: dict | None = None,
    keep_samples: bool = False,
) -> dict:
    """The summaries of :func:`posterior` from the network's passes ``runs`` [(mean [N, K],
    Sigma [N, K, K], zoom [N])] of cutouts of side ``size``; calibration: {'mean': correction,
    'scales': [K', L] (optional)} (ml.morph.calibration) or None. Galaxies are summarised in
    blocks of SUMMARY_BLOCK (the samples of one block in memory at a time)."""
    if calibration is not None:
        runs = [(apply_mean_correction(kind, m, fwhm, calibration["mean"]), c, z) for m, c, z in runs]
    scales = None if calibration is None else calibration.get("scales")
    n = runs[0][0].shape[0]
    gen = torch.Generator().manual_seed(seed)
    per = max(1, draws // len(runs))
    parts = []
    for b0 in range(0, n, SUMMARY_BLOCK):
        sl = slice(b0, b0 + SUMMARY_BLOCK)
        ps = _samples(kind, [(m[sl], c[sl]) for m, c, _ in runs], size, noise[sl], per, gen)
        if scales is not None:
            ps = apply_interval_scales(ps, *quantiles(ps), scales)
            for j, c in enumerate(PHYSICAL[kind]):
                if c in BOUNDS:
                    ps[..., j] = np.clip(ps[..., j], *BOUNDS[c])
        part = summarise(ps)
        if keep_samples:
            part["samples"] = ps
        parts.append(part)
    out = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    ith = theta_column(kind)
    out["median"][:, ith] = (out["median"][:, ith] + np.pi / 2) % np.pi - np.pi / 2
    out.update(
        names=list(PHYSICAL[kind]),
        kind=kind,
        mean_t=runs[0][0].numpy(),
        cov_t=runs[0][1].numpy(),
        zoom=runs[0][2].numpy(),
        passes=len(runs),
        draws=per * len(runs),
        calibrated=scales is not None,
    )
    return out


def _samples(kind: str, runs: list[tuple[Tensor, Tensor]], size: float, noise: Tensor, per: int, gen: torch.Generator) -> np.ndarray:
    """Physical samples [N, S, K'] of ``per`` draws from each pass's N(mean, Sigma), theta placed
    about the circular mean of its samples."""
    chunks = []
    for mean, cov in runs:
        chol = torch.linalg.cholesky(cov + 1e-12 * torch.eye(cov.shape[-1], dtype=cov.dtype))
        z = torch.randn(mean.shape[0], per, mean.shape[1], generator=gen, dtype=torch.float64)
        chunks.append(mean[:, None, :] + (z @ chol.transpose(1, 2)))
    phys = to_physical(kind, torch.cat(chunks, 1), torch.tensor(size, dtype=torch.float64), noise[:, None])
    ith = theta_column(kind)
    # theta is defined modulo pi: summarise it around the circular mean of the samples
    c2 = torch.cos(2 * phys[..., ith]).mean(1)
    s2 = torch.sin(2 * phys[..., ith]).mean(1)
    centre = 0.5 * torch.atan2(s2, c2)
    phys[..., ith] = centre[:, None] + torch.remainder(phys[..., ith] - centre[:, None] + np.pi / 2, np.pi) - np.pi / 2
    return phys.numpy()


def quantiles(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """median [N, K] and the central intervals lo, hi [N, K, L] (LEVELS) of samples [N, S, K]."""
    q = []
    for p in LEVELS:
        q += [(1 - p) / 2, (1 + p) / 2]
    pct = np.quantile(samples, [0.5, *q], axis=1)  # [1 + 2L, N, K]
    lo = np.stack([pct[1 + 2 * i] for i in range(len(LEVELS))], -1)
    hi = np.stack([pct[2 + 2 * i] for i in range(len(LEVELS))], -1)
    return pct[0], lo, hi


def summarise(samples: np.ndarray) -> dict:
    """median, mode, mean, std [N, K] and lo, hi [N, K, 3] of samples [N, S, K]."""
    med, lo, hi = quantiles(samples)
    n, _, k = samples.shape
    mode = np.empty((n, k))
    for j in range(k):
        col = samples[:, :, j]
        a, b = np.quantile(col, [0.005, 0.995], axis=1)
        width = np.where(b > a, b - a, 1.0)
        idx = np.clip(((col - a[:, None]) / width[:, None] * MODE_BINS).astype(int), 0, MODE_BINS - 1)
        counts = np.zeros((n, MODE_BINS))
        np.add.at(counts, (np.repeat(np.arange(n), col.shape[1]), idx.ravel()), 1)
        mode[:, j] = a + (counts.argmax(1) + 0.5) * width / MODE_BINS
    return {"median": med, "mode": mode, "mean": samples.mean(1), "std": samples.std(1), "lo": lo, "hi": hi}


def histograms(samples: np.ndarray, bins: int = 30) -> list[dict]:
    """Per physical column of one galaxy's samples [S, K]: {'edges': [...], 'counts': [...]}
    between the 0.15 and 99.85 percentiles (for the galaxy page)."""
    out = []
    for j in range(samples.shape[1]):
        a, b = np.quantile(samples[:, j], [0.0015, 0.9985])
        counts, edges = np.histogram(samples[:, j], bins=bins, range=(a, b if b > a else a + 1e-9))
        out.append({"edges": np.round(edges, 6).tolist(), "counts": counts.tolist()})
    return out
