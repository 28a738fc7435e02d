"""Cramér-Rao bound per galaxy from the fitting engine's own Jacobian.

For pixels with independent Gaussian noise sigma_i (or Poisson noise of mean mu_i, then
sigma_i^2 = mu_i), the Fisher matrix of the model parameters m is F = J^T W J with J = d model / d m
at the true parameters and W = diag(1 / sigma^2); any unbiased estimator has Cov >= F^-1. The bound
of a function g(m) (the physical columns: flux, re, q, theta, B/T, ...) is G F^-1 G^T with
G = dg/dm (delta rule). The sky is taken as known (the images are sky-subtracted and the fits hold
it), as the engine bench does.
"""

from __future__ import annotations

import torch
from torch import Tensor

from fitting.engine.fit import physical_to_m
from fitting.engine.model import E1, E2, FLUX, RE, SERSIC_N, X0, Y0, ModelSpec, Renderer, model_spec


def fisher(renderer: Renderer, m: Tensor, sigma: Tensor) -> Tensor:
    """J^T W J [B, Pf, Pf] over the free parameters (spec.free order) at m [B, P] (float64)."""
    _, jac = renderer.render(m.to(renderer.dtype), need_grad=True)
    w = (1.0 / sigma.to(jac.dtype) ** 2)[:, None]
    bsz, nch = jac.shape[:2]
    jw = (jac * w).reshape(bsz, nch, -1)
    return torch.bmm(jw, jac.reshape(bsz, nch, -1).transpose(1, 2)).double()


def physical_columns(kind: str, m: Tensor, spec: ModelSpec) -> Tensor:
    """The network's physical columns (ml.morph.targets.PHYSICAL order) as functions of m [B, P]."""

    def comp(c: int, j: int) -> Tensor:
        return m[:, spec.comp_start(c) + j]

    def q_theta(c: int) -> tuple[Tensor, Tensor]:
        e1, e2 = comp(c, E1), comp(c, E2)
        e = torch.sqrt(e1 * e1 + e2 * e2).clamp_min(1e-12)
        return torch.sqrt((1.0 - e) / (1.0 + e)), 0.5 * torch.atan2(e2, e1)

    x, y = m[:, X0], m[:, Y0]
    if kind == "sersic":
        q, th = q_theta(0)
        return torch.stack([x, y, torch.exp(comp(0, FLUX)), torch.exp(comp(0, RE)), comp(0, SERSIC_N), q, th], 1)
    fb, fd = torch.exp(comp(0, FLUX)), torch.exp(comp(1, FLUX))
    q, th = q_theta(1)
    return torch.stack([x, y, fb + fd, fb / (fb + fd), torch.exp(comp(1, RE)), torch.exp(comp(0, RE)), q, th], 1)


def cramer_rao(kind: str, p_true: Tensor, psf: Tensor | None, sigma: Tensor) -> tuple[Tensor, Tensor]:
    """CRB covariance [B, K, K] of the physical columns and its 1-sigma bounds [B, K].

    p_true: [B, P] engine physical parameters (fitting.engine.lm.physical_names order);
    psf: [h, w] or None; sigma: [B, H, W] per-pixel noise of the data.
    """
    spec = model_spec(kind, fit_sky=False)
    h, w = sigma.shape[-2:]
    r = Renderer(spec, h, w, psf, dtype=torch.float64)
    m = physical_to_m(torch.as_tensor(p_true, dtype=torch.float64), spec)
    fis = fisher(r, m, torch.as_tensor(sigma, dtype=torch.float64))
    cov_f = torch.linalg.inv(fis)
    free = spec.free
    mm = m.clone().requires_grad_(True)
    g = physical_columns(kind, mm, spec)
    rows = [torch.autograd.grad(g[:, k].sum(), mm, retain_graph=True)[0][:, free] for k in range(g.shape[1])]
    jac = torch.stack(rows, 1)  # [B, K, Pf]
    cov = jac @ cov_f @ jac.transpose(1, 2)
    return cov, torch.sqrt(torch.diagonal(cov, dim1=1, dim2=2).clamp_min(0.0))
