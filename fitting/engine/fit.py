"""Fit a batch of galaxy images: validation, masks, initial values, batched LM, errors.

    >>> from fitting.engine import fit
    >>> out = fit(images, sigma, psf, model="sersic")       # images, sigma: [B, H, W]
    >>> out.params[:, out.names.index("re")], out.errors, out.converged, out.reasons

A galaxy that cannot be fitted (NaN image, all zeros, no pixel with sigma > 0, ...) gets NaN
parameters, converged False and its reason; the rest of the batch is fitted as usual.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .init import border_sky, bulge_disk_from_sersic, moments_init, segment
from .lm import (
    covariance,
    default_bounds,
    levenberg_marquardt,
    m_to_physical,
    m_to_u,
    physical_names,
    pinned,
    u_to_m,
)
from .model import E1, E2, FLUX, N_GLOBAL, RE, SERSIC_N, SKY, THETA, ModelSpec, Q, model_spec, renderer_for
from .profiles import qtheta_to_e12
from .version import ENGINE_VERSION  # noqa: E402,F401 (re-exported)

#: Batch size on CPU (64 x 64 images: one thread was fastest at 32-64 galaxies per batch, where a
#: batch's channel stack still fits the caches).
CPU_BATCH = 64
#: Galaxies needing fewer valid pixels than this many per free parameter are not fitted.
MIN_PIXELS_PER_PARAM = 4


def default_device() -> torch.device:
    """CUDA when present, else CPU."""
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def auto_batch_size(height: int, width: int, n_channels: int, device: torch.device, fraction: float = 0.5) -> int:
    """Galaxies per batch: from free GPU memory on CUDA (``fraction`` of it), CPU_BATCH on CPU.

    Per galaxy the renderer holds about 6 real copies of its channel stack (samples, FFT, Jacobian)
    on the extended grid, which is at most twice the image side.
    """
    if device.type != "cuda":
        return CPU_BATCH
    free, _ = torch.cuda.mem_get_info(device)
    per = 6 * 4 * n_channels * (2 * height) * (2 * width) + 64 * height * width
    return int(max(1, min(65536, fraction * free // per)))


@dataclass
class BatchFit:
    """Results for B galaxies, tensors on the CPU in float64 (bool/int64 where stated).

    names: physical parameter names (see :func:`fitting.engine.lm.physical_names`); x0, y0 in
    pixels (centre of pixel [0, 0] at (0, 0), x along the second axis), theta in radians
    counter-clockwise from +x, re along the major axis in pixels, flux and sky in image units.
    """

    kind: str
    names: list[str]
    params: Tensor  # [B, P]
    errors: Tensor  # [B, P] 1-sigma from (J^T W J)^-1; 0 for fixed parameters
    covariance: Tensor  # [B, P, P]
    chi2: Tensor  # [B]
    dof: Tensor  # [B] int64
    iterations: Tensor  # [B] int64
    converged: Tensor  # [B] bool
    reasons: list[str]  # '' when all is well
    seconds: float
    device: str
    model: Tensor | None = None  # [B, H, W] best-fit model image (with sky) when asked for
    fit_mask: Tensor | None = None  # [B, H, W] bool, pixels that entered the fit
    bootstrap_errors: Tensor | None = None  # [B, P] when asked for
    extra: dict = field(default_factory=dict)

    def row(self, i: int) -> dict:
        """Galaxy i as plain Python: {'params': {name: value}, 'errors': {...}, ...}."""
        return {
            "params": dict(zip(self.names, self.params[i].tolist(), strict=True)),
            "errors": dict(zip(self.names, self.errors[i].tolist(), strict=True)),
            "covariance": self.covariance[i].tolist(),
            "chi2": float(self.chi2[i]),
            "dof": int(self.dof[i]),
            "iterations": int(self.iterations[i]),
            "converged": bool(self.converged[i]),
            "reason": self.reasons[i],
        }


def physical_to_m(p: Tensor, spec: ModelSpec) -> Tensor:
    """Physical start values p [B, P] (physical_names order) to internal m [B, P], float64."""
    m = p.double().clone()
    for c in range(len(spec.components)):
        s = spec.comp_start(c)
        m[:, s + FLUX] = torch.log(p[:, s + FLUX].double().clamp_min(1e-30))
        m[:, s + RE] = torch.log(p[:, s + RE].double().clamp_min(1e-6))
        e1, e2 = qtheta_to_e12(p[:, s + Q].double().clamp(0.02, 1.0), p[:, s + THETA].double())
        m[:, s + E1], m[:, s + E2] = e1, e2
    return m


def _validate(img: Tensor, sig: Tensor, user_mask: Tensor | None) -> tuple[Tensor, list[str], list[str]]:
    """Per-pixel validity [B, H, W] and per-galaxy fatal reasons / notes."""
    finite = torch.isfinite(img)
    sig_ok = torch.isfinite(sig) & (sig > 0)
    valid = finite & sig_ok
    if user_mask is not None:
        valid &= ~user_mask
    fatal, notes = [], []
    b = img.shape[0]
    npix = img.shape[1] * img.shape[2]
    frac_finite = finite.reshape(b, -1).float().mean(1).tolist()
    any_sig = sig_ok.reshape(b, -1).any(1).tolist()
    nonzero = (torch.where(finite, img, torch.zeros_like(img)) != 0).reshape(b, -1).any(1).tolist()
    nbad_sig = (~sig_ok).reshape(b, -1).sum(1).tolist()
    nbad_img = (~finite).reshape(b, -1).sum(1).tolist()
    for i in range(b):
        if frac_finite[i] < 0.5:
            fatal.append(f"image is mostly NaN/inf ({npix - round(frac_finite[i] * npix)} of {npix} pixels)")
        elif not nonzero[i]:
            fatal.append("image is all zeros")
        elif not any_sig[i]:
            fatal.append("no pixel has a finite sigma > 0")
        else:
            fatal.append("")
        parts = []
        if nbad_img[i] and not fatal[i]:
            parts.append(f"{nbad_img[i]} NaN/inf pixels masked")
        if nbad_sig[i] and not fatal[i]:
            parts.append(f"{nbad_sig[i]} pixels with sigma <= 0 or NaN masked")
        notes.append("; ".join(parts))
    return valid, fatal, notes


def fit(
    images: Tensor,
    sigma: Tensor | None = None,
    psf: Tensor | None = None,
    *,
    model: str = "sersic",
    init: Tensor | None = None,
    mask: Tensor | None = None,
    fit_sky: bool = True,
    mask_neighbours: bool = True,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    batch_size: int | None = None,
    max_iter: int = 60,
    bootstrap: int = 0,
    return_model: bool = False,
    seed: int = 0,
    compile: bool = False,
) -> BatchFit:
    """Fit every image of a batch with the named model.

    images: [B, H, W]; sigma: [B, H, W] per-pixel 1-sigma noise (None: constant, from the border
    MAD); psf: [h, w] odd, centred (None: no PSF); init: [B, P] physical start values in
    ``physical_names`` order (None: from moments, and sky from the border); mask: [B, H, W] bool,
    True = ignore. With fit_sky False the sky stays at its start value. bootstrap > 0 refits that
    many noise realisations of each best-fit model (parametric bootstrap) for a second error
    estimate. The model is rendered in ``dtype``; normal equations are solved in float64.
    Several CPU cores are best used by worker processes (:class:`fitting.engine.parallel.CpuPool`).
    compile: fuse the profile arithmetic with torch.compile (faster on big runs; the first call
    of a process compiles first, see bench/README.md).
    """
    t0 = time.perf_counter()
    dev = torch.device(device) if device is not None else default_device()
    spec = model_spec(model, fit_sky=fit_sky)
    names = physical_names(spec)
    img = torch.as_tensor(images).to(dev, dtype)
    if img.dim() == 2:
        img = img[None]
    if img.dim() != 3:
        raise ValueError(f"images must be [B, H, W], got shape {tuple(img.shape)}")
    bsz, h, w = img.shape
    if bsz == 0:
        raise ValueError("no images to fit: the batch is empty")
    user_mask = None if mask is None else torch.as_tensor(mask, device=dev).bool().reshape(bsz, h, w)
    if sigma is None:
        finite = torch.isfinite(img)
        _, noise = border_sky(torch.nan_to_num(img), finite)
        sig = noise.to(dtype)[:, None, None].expand(bsz, h, w).clone()
    else:
        sig = torch.as_tensor(sigma).to(dev, dtype).reshape(bsz, h, w)
    valid, fatal, notes = _validate(img, sig, user_mask)
    clean = torch.where(valid, img, torch.zeros_like(img))
    sky, noise = border_sky(clean, valid)
    sky = torch.nan_to_num(sky)
    target, neighbours, found = segment(clean, sky, torch.where(valid, sig, torch.zeros_like(sig)), valid)
    if mask_neighbours:
        valid = valid & ~neighbours
    if init is None:
        p0 = moments_init(clean, sky, target, found)
        if model == "bulge_disk":
            p0 = bulge_disk_from_sersic(p0)
        elif model == "exp":
            p0[:, N_GLOBAL + SERSIC_N] = 1.0
    else:
        p0 = torch.as_tensor(init, dtype=torch.float64, device=dev).reshape(bsz, spec.n_params).clone()
        if not fit_sky and not torch.isfinite(p0[:, SKY]).all():
            p0[:, SKY] = sky.double()
    for c, (_, nfix) in enumerate(spec.components):
        if nfix is not None:
            p0[:, spec.comp_start(c) + SERSIC_N] = nfix
    nfree = len(spec.free)
    npix = valid.reshape(bsz, -1).sum(1)
    for i in range(bsz):
        if not fatal[i] and int(npix[i]) < MIN_PIXELS_PER_PARAM * nfree:
            fatal[i] = f"only {int(npix[i])} valid pixels for {nfree} parameters"
        if not fatal[i] and not torch.isfinite(p0[i]).all():
            fatal[i] = "no finite start values"
    good = torch.tensor([not f for f in fatal], device=dev)
    bounds = default_bounds(h, w)
    renderer = renderer_for(spec, h, w, psf, device=dev, dtype=dtype, compile=compile)
    nch = len(spec.free) + 1
    bs = batch_size or auto_batch_size(h, w, nch, dev)

    m_all = torch.full((bsz, spec.n_params), float("nan"), dtype=torch.float64, device=dev)
    chi2 = torch.full((bsz,), float("nan"), dtype=torch.float64, device=dev)
    iters = torch.zeros(bsz, dtype=torch.int64, device=dev)
    conv = torch.zeros(bsz, dtype=torch.bool, device=dev)
    jtj = torch.full((bsz, nfree, nfree), float("nan"), dtype=torch.float64, device=dev)
    reasons = list(fatal)
    gidx = good.nonzero().flatten()
    data = clean
    wgt = torch.where(valid, 1.0 / torch.where(valid, sig, torch.ones_like(sig)), torch.zeros_like(sig))
    u_start = m_to_u(physical_to_m(p0, spec), spec, bounds)
    for start in range(0, gidx.numel(), bs):
        sel = gidx[start : start + bs]
        st = levenberg_marquardt(renderer, data[sel], wgt[sel], u_start[sel], bounds, max_iter=max_iter)
        m_all[sel] = u_to_m(st.u, spec, bounds)[0]
        chi2[sel], iters[sel], conv[sel], jtj[sel] = st.chi2, st.iterations, st.converged, st.jtj_m
        for j, b in enumerate(sel.tolist()):
            reasons[b] = st.status[j]
    params, _ = m_to_physical(m_all, spec)
    cov = torch.full((bsz, spec.n_params, spec.n_params), float("nan"), dtype=torch.float64, device=dev)
    err = torch.full((bsz, spec.n_params), float("nan"), dtype=torch.float64, device=dev)
    if gidx.numel():
        cov[gidx], err[gidx] = covariance(jtj[gidx], m_all[gidx], spec)
        pins = pinned(m_all[gidx], spec, bounds)
        for j, b in enumerate(gidx.tolist()):
            if pins[j]:
                msg = "at bound: " + ", ".join(pins[j])
                reasons[b] = f"{reasons[b]}; {msg}" if reasons[b] else msg
    for b in range(bsz):
        if notes[b]:
            reasons[b] = f"{reasons[b]}; {notes[b]}" if reasons[b] else notes[b]
        if not found[b] and not fatal[b]:
            reasons[b] = (reasons[b] + "; " if reasons[b] else "") + "no source detected near the centre"
    dof = (npix - nfree).to(torch.int64)
    out = BatchFit(
        kind=model,
        names=names,
        params=params.cpu(),
        errors=err.cpu(),
        covariance=cov.cpu(),
        chi2=chi2.cpu(),
        dof=dof.cpu(),
        iterations=iters.cpu(),
        converged=conv.cpu(),
        reasons=reasons,
        seconds=0.0,
        device=str(dev),
    )
    if return_model or bootstrap:
        mod = torch.full((bsz, h, w), float("nan"), dtype=dtype, device=dev)
        for start in range(0, gidx.numel(), bs):
            sel = gidx[start : start + bs]
            mod[sel] = renderer.render(m_all[sel].to(dtype), need_grad=False)[0]
        if return_model:
            out.model = mod.cpu()
            out.fit_mask = valid.cpu()
        if bootstrap and gidx.numel():
            out.bootstrap_errors = _bootstrap(renderer, mod, sig, wgt, m_all, gidx, bounds, bootstrap, bs, max_iter, seed).cpu()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    out.seconds = time.perf_counter() - t0
    return out


def _bootstrap(renderer, mod, sig, wgt, m_all, gidx, bounds, nboot, bs, max_iter, seed) -> Tensor:
    """Parametric bootstrap: refit nboot noise realisations of each best-fit model; std of p."""
    spec = renderer.spec
    gen = torch.Generator(device=mod.device).manual_seed(seed)
    bsz, npar = m_all.shape
    out = torch.full((bsz, npar), float("nan"), dtype=torch.float64, device=mod.device)
    rep = gidx.repeat_interleave(nboot)
    samples = torch.empty(rep.numel(), npar, dtype=torch.float64, device=mod.device)
    u0 = m_to_u(m_all, spec, bounds)
    for start in range(0, rep.numel(), bs):
        sel = rep[start : start + bs]
        noise = torch.randn(mod[sel].shape, generator=gen, device=mod.device, dtype=mod.dtype)
        data = mod[sel] + noise * sig[sel]
        st = levenberg_marquardt(renderer, data, wgt[sel], u0[sel], bounds, max_iter=max_iter)
        samples[start : start + sel.numel()] = m_to_physical(u_to_m(st.u, spec, bounds)[0], spec)[0]
    samples = samples.reshape(gidx.numel(), nboot, npar)
    out[gidx] = samples.std(dim=1)
    return out
