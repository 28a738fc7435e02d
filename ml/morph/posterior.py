"""Posteriors from a trained network: Monte-Carlo dropout passes, samples, GaMPEN's summaries.

Each pass (dropout on when passes > 1, else one deterministic pass) gives a mean and a covariance
in target space; from each pass ``draws`` samples are drawn from N(mean, Sigma) and mapped to the
physical columns, where the summaries are taken: median, mode (peak of a histogram of the samples),
mean, standard deviation and the central 68.3 / 95.4 / 99.7 % intervals.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ml.morph.nets import MorphNet, covariance, mc_dropout, preprocess
from ml.morph.targets import PHYSICAL, TARGETS, theta_column, to_physical
from ml.weights_files import checked_manifest, sha256_file

#: Central interval probabilities kept (1, 2, 3 sigma).
LEVELS = (0.6827, 0.9545, 0.9973)
#: Bins of the histogram whose peak is the mode.
MODE_BINS = 40


def load_nets(directory: str | Path, expected_sha256: dict | None = None, device: str = "cpu") -> dict[str, MorphNet]:
    """{kind: network} of a weights folder, after checking every file's sha256 against the folder's
    ensemble.json (and against ``expected_sha256`` {file: sha256}, e.g. a ModelVersion's, when given).
    Raises ml.weights_files.WeightsChecksumError on a mismatch."""
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
        net = MorphNet(TARGETS[meta["kind"]], width=meta["width"], dropout=meta["dropout"], view=meta["view"], crop=crop)
        net.load_state_dict({"pixel_power": net.pixel_power, **ck["state_dict"]})
        net.to(device).eval()
        net.meta = meta
        nets[meta["kind"]] = net
    cal = manifest.get("calibration")
    if cal:
        if sha256_file(directory / cal["file"]) != cal["sha256"]:
            raise WeightsChecksumError(f"{directory / cal['file']}: sha256 differs from the manifest's {cal['sha256']}")
        data = json.loads((directory / cal["file"]).read_text())
        for kind, net in nets.items():
            if kind in data["scales"]:
                net.interval_scale = np.array([data["scales"][kind][c] for c in PHYSICAL[kind]])
                net.interval_passes = int(data["passes"])
    return nets


@torch.no_grad()
def network_pass(net: MorphNet, images: Tensor, noise: Tensor, fwhm: Tensor, dropout: bool = False, batch: int = 64):
    """One pass over [N, H, W]: (mean [N, K], Sigma [N, K, K], zoom [N]) in target units, float64."""
    mc_dropout(net, dropout)
    dev = next(net.parameters()).device
    means, covs, zooms = [], [], []
    for b0 in range(0, images.shape[0], batch):
        x, ex = preprocess(images[b0 : b0 + batch].to(dev), noise[b0 : b0 + batch], fwhm[b0 : b0 + batch])
        mean, log_var, off, s, _ = net(x, ex)
        means.append(mean.double().cpu())
        covs.append(covariance(log_var.double(), off.double(), net.scale().double()).cpu())
        zooms.append(s.double().cpu())
    return torch.cat(means), torch.cat(covs), torch.cat(zooms)


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
) -> dict:
    """Posterior summaries of N galaxies of one cutout size.

    images: [N, H, W] sky-subtracted; noise: [N] noise level (median of the sigma map); fwhm: [N]
    or scalar PSF FWHM (px). passes > 1: MC dropout, ``draws // passes`` samples per pass.
    Returns numpy arrays: names, mean_t [N, K] and cov_t [N, K, K] (target space, first pass),
    median, mode, mean, std [N, K'], lo, hi [N, K', 3] (LEVELS), zoom [N], net_seconds, and
    samples [N, S, K'] when keep_samples. calibrated: when the weights carry interval scales
    fitted for this number of passes (calibration.json, see ml.morph.evaluate.interval_scales),
    the samples' spread around their median is multiplied by them (mean_t and cov_t are not);
    ``calibrated`` in the result says whether they were.
    """
    kind = net.meta["kind"]
    img = torch.as_tensor(np.asarray(images, dtype=np.float32))
    n = img.shape[0]
    nz = torch.as_tensor(np.broadcast_to(np.asarray(noise, dtype=np.float64), (n,)).copy())
    fw = torch.as_tensor(np.broadcast_to(np.asarray(fwhm, dtype=np.float64), (n,)).copy())
    t0 = time.perf_counter()
    runs = [network_pass(net, img, nz, fw, dropout=passes > 1) for _ in range(max(1, passes))]
    net_seconds = time.perf_counter() - t0
    gen = torch.Generator().manual_seed(seed)
    per = max(1, draws // len(runs))
    size = float(max(img.shape[-2:]))
    chunks = []
    for mean, cov, _ in runs:
        chol = torch.linalg.cholesky(cov + 1e-12 * torch.eye(cov.shape[-1], dtype=cov.dtype))
        z = torch.randn(n, per, mean.shape[1], generator=gen, dtype=torch.float64)
        chunks.append(mean[:, None, :] + (z @ chol.transpose(1, 2)))
    t_samples = torch.cat(chunks, 1)  # [N, S, K]
    phys = to_physical(kind, t_samples, torch.tensor(size, dtype=torch.float64), nz[:, None])
    ith = theta_column(kind)
    # theta is defined modulo pi: summarise it around the circular mean of the samples
    c2 = torch.cos(2 * phys[..., ith]).mean(1)
    s2 = torch.sin(2 * phys[..., ith]).mean(1)
    centre = 0.5 * torch.atan2(s2, c2)
    phys[..., ith] = centre[:, None] + torch.remainder(phys[..., ith] - centre[:, None] + np.pi / 2, np.pi) - np.pi / 2
    ps = phys.numpy()
    scale = getattr(net, "interval_scale", None)
    apply = calibrated and scale is not None and getattr(net, "interval_passes", None) == len(runs)
    if apply:
        med = np.median(ps, axis=1, keepdims=True)
        ps = med + (ps - med) * scale
    out = summarise(ps)
    out["median"][:, ith] = (out["median"][:, ith] + np.pi / 2) % np.pi - np.pi / 2
    out.update(
        names=list(PHYSICAL[kind]),
        kind=kind,
        mean_t=runs[0][0].numpy(),
        cov_t=runs[0][1].numpy(),
        zoom=runs[0][2].numpy(),
        net_seconds=net_seconds,
        passes=len(runs),
        draws=per * len(runs),
        calibrated=bool(apply),
    )
    if keep_samples:
        out["samples"] = ps
    return out


def summarise(samples: np.ndarray) -> dict:
    """median, mode, mean, std [N, K] and lo, hi [N, K, 3] of samples [N, S, K]."""
    q = []
    for p in LEVELS:
        q += [(1 - p) / 2, (1 + p) / 2]
    pct = np.quantile(samples, [0.5, *q], axis=1)  # [1 + 2L, N, K]
    lo = np.stack([pct[1 + 2 * i] for i in range(len(LEVELS))], -1)
    hi = np.stack([pct[2 + 2 * i] for i in range(len(LEVELS))], -1)
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
    return {"median": pct[0], "mode": mode, "mean": samples.mean(1), "std": samples.std(1), "lo": lo, "hi": hi}


def histograms(samples: np.ndarray, bins: int = 30) -> list[dict]:
    """Per physical column of one galaxy's samples [S, K]: {'edges': [...], 'counts': [...]}
    between the 0.15 and 99.85 percentiles (for the galaxy page)."""
    out = []
    for j in range(samples.shape[1]):
        a, b = np.quantile(samples[:, j], [0.0015, 0.9985])
        counts, edges = np.histogram(samples[:, j], bins=bins, range=(a, b if b > a else a + 1e-9))
        out.append({"edges": np.round(edges, 6).tolist(), "counts": counts.tolist()})
    return out
