"""Batched Levenberg-Marquardt with per-galaxy damping, bounds by smooth reparametrisation.

Three parameter spaces, all [B, P] in the order of :class:`~fitting.engine.model.ModelSpec`:

- m, the model's internal parameters (x0, y0, sky, log_flux, log_re, n, e1, e2, ...): the
  renderer's analytic Jacobian is d model / d m;
- u, the unbounded space the optimiser steps in: log_re and n are mapped into their bounds by a
  logistic function, (e1, e2) by e = e_max tanh|g| g/|g| (so q >= q_min), the rest is identity;
- p, the physical parameters reported (x0, y0, sky, flux, re, n, q, theta, ...).

The covariance is (J^T W J)^-1 in m (independent of how the bounds are imposed, so a parameter
near its bound keeps an honest curvature error instead of the vanishing one of the u space),
carried to p with the Jacobian dp/dm.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .model import (
    E1,
    E2,
    FLUX,
    GLOBAL_NAMES,
    N_COMPONENT,
    N_GLOBAL,
    PHYSICAL_COMPONENT_NAMES,
    RE,
    SERSIC_N,
    SKY,
    THETA,
    ModelSpec,
    Q,
    Renderer,
)
from .profiles import q_to_e

#: Bounds of the fitted parameters (pixels for re).
N_BOUNDS = (0.2, 10.0)
RE_MIN = 0.05
Q_MIN = 0.02
#: A bounded parameter within this fraction of its range from a bound is reported as pinned.
PINNED_FRACTION = 1e-3


@dataclass(frozen=True)
class Bounds:
    """Per-fit bounds: log_re in [log RE_MIN, log re_max], n in N_BOUNDS, e <= e_max."""

    log_re: tuple[float, float]
    n: tuple[float, float] = N_BOUNDS
    e_max: float = float(q_to_e(torch.tensor(Q_MIN)))


def default_bounds(height: int, width: int) -> Bounds:
    return Bounds(log_re=(math.log(RE_MIN), math.log(2.0 * max(height, width))))


def _kinds(spec: ModelSpec) -> list[str]:
    """Per m index: 'id', 'lre', 'n', 'e1', 'e2'."""
    block = ["id"] * N_COMPONENT
    block[RE], block[SERSIC_N], block[E1], block[E2] = "lre", "n", "e1", "e2"
    return ["id"] * N_GLOBAL + block * len(spec.components)


def _logistic(u: Tensor, lo: float, hi: float) -> tuple[Tensor, Tensor]:
    s = torch.sigmoid(u)
    return lo + (hi - lo) * s, (hi - lo) * s * (1.0 - s)


def _logit(m: Tensor, lo: float, hi: float) -> Tensor:
    eps = 1e-6 * (hi - lo)
    x = (m.clamp(lo + eps, hi - eps) - lo) / (hi - lo)
    return torch.log(x) - torch.log1p(-x)


def u_to_m(u: Tensor, spec: ModelSpec, bounds: Bounds) -> tuple[Tensor, Tensor]:
    """Map u [B, P] to m [B, P]; also returns D = dm/du [B, P, P] (block diagonal)."""
    kinds = _kinds(spec)
    bsz, npar = u.shape
    m = u.clone()
    d = torch.zeros(bsz, npar, npar, dtype=u.dtype, device=u.device)
    idx = torch.arange(npar, device=u.device)
    d[:, idx, idx] = 1.0
    for i, k in enumerate(kinds):
        if k == "lre":
            m[:, i], d[:, i, i] = _logistic(u[:, i], *bounds.log_re)
        elif k == "n":
            m[:, i], d[:, i, i] = _logistic(u[:, i], *bounds.n)
        elif k == "e1":
            j = i + E2 - E1  # its e2
            g1, g2 = u[:, i], u[:, j]
            gn = torch.sqrt(g1 * g1 + g2 * g2)
            th = torch.tanh(gn)
            ratio = torch.where(gn > 1e-6, bounds.e_max * th / gn.clamp_min(1e-6), torch.full_like(gn, bounds.e_max))
            fprime = bounds.e_max * (1.0 - th * th)
            m[:, i], m[:, j] = ratio * g1, ratio * g2
            gs = gn.clamp_min(1e-12)
            h1, h2 = g1 / gs, g2 / gs
            d[:, i, i] = fprime * h1 * h1 + ratio * (1.0 - h1 * h1)
            d[:, j, j] = fprime * h2 * h2 + ratio * (1.0 - h2 * h2)
            d[:, i, j] = d[:, j, i] = (fprime - ratio) * h1 * h2
    return m, d


def m_to_u(m: Tensor, spec: ModelSpec, bounds: Bounds) -> Tensor:
    """Inverse of :func:`u_to_m` (values outside the bounds are clamped inside). m: [B, P]."""
    u = m.clone()
    for i, k in enumerate(_kinds(spec)):
        if k == "lre":
            u[:, i] = _logit(m[:, i], *bounds.log_re)
        elif k == "n":
            u[:, i] = _logit(m[:, i], *bounds.n)
        elif k == "e1":
            j = i + E2 - E1  # its e2
            e1, e2 = m[:, i], m[:, j]
            en = torch.sqrt(e1 * e1 + e2 * e2)
            x = (en / bounds.e_max).clamp(max=1.0 - 1e-6)
            gn = torch.atanh(x)
            ratio = torch.where(en > 1e-9, gn / en.clamp_min(1e-9), torch.full_like(en, 1.0 / bounds.e_max))
            u[:, i], u[:, j] = ratio * e1, ratio * e2
    return u


def pinned(m: Tensor, spec: ModelSpec, bounds: Bounds) -> list[list[str]]:
    """Names of bounded parameters sitting at a bound, per galaxy. m: [B, P]."""
    out: list[list[str]] = [[] for _ in range(m.shape[0])]
    names = spec.names
    fixed = spec.fixed
    for i, k in enumerate(_kinds(spec)):
        if fixed[i]:
            continue
        if k in ("lre", "n"):
            lo, hi = bounds.log_re if k == "lre" else bounds.n
            tol = PINNED_FRACTION * (hi - lo)
            hit = (m[:, i] < lo + tol) | (m[:, i] > hi - tol)
        elif k == "e1":
            j = i + E2 - E1  # its e2
            en = torch.sqrt(m[:, i] ** 2 + m[:, j] ** 2)
            hit = en > bounds.e_max * (1.0 - PINNED_FRACTION)
        else:
            continue
        for b in hit.nonzero().flatten().tolist():
            out[b].append(names[i].replace("log_re", "re").replace("e1", "q"))
    return out


@dataclass
class LMState:
    """Result of :func:`levenberg_marquardt`; tensors over the batch B."""

    u: Tensor  # [B, P] float64
    chi2: Tensor  # [B] float64
    jtj_m: Tensor  # [B, Pf, Pf] float64, J^T W J in m over the free parameters
    iterations: Tensor  # [B] int64
    converged: Tensor  # [B] bool
    status: list[str]  # '' when converged, else why not


def _normal_equations(jac: Tensor, res_w: Tensor, weight: Tensor, sky_free: bool) -> tuple[Tensor, Tensor]:
    """J^T W J [B, Pf, Pf] and J^T W r [B, Pf] in float64.

    jac: [B, Pf', H, W] derivative channels without the sky; res_w = r w and weight w: [B, H, W].
    With sky_free the sky (derivative 1; free parameter SKY, as x0 and y0 before it are always
    free) is added to the matrices.
    """
    bsz = jac.shape[0]
    # products in the renderer's precision (float32: ~5x faster), accumulated by BLAS; the solve
    # that follows is in float64 with Marquardt's diagonal scaling, so only the scaled matrix's
    # condition matters
    jw = (jac * weight[:, None]).reshape(bsz, jac.shape[1], -1)
    rw = res_w.reshape(bsz, -1, 1)
    jtj = torch.bmm(jw, jw.transpose(1, 2)).double()
    jtr = torch.bmm(jw, rw)[:, :, 0].double()
    if not sky_free:
        return jtj, jtr
    ww = weight.reshape(bsz, -1, 1)
    cross = torch.bmm(jw, ww)[:, :, 0].double()  # [B, Pf']
    npf = jtj.shape[1] + 1
    full = torch.empty(bsz, npf, npf, dtype=torch.float64, device=jac.device)
    keep = [i for i in range(npf) if i != SKY]
    ki = torch.tensor(keep, device=jac.device)
    full[:, ki[:, None], ki[None, :]] = jtj
    full[:, SKY, ki] = cross
    full[:, ki, SKY] = cross
    full[:, SKY, SKY] = (ww[:, :, 0] ** 2).sum(1)
    g = torch.empty(bsz, npf, dtype=torch.float64, device=jac.device)
    g[:, ki] = jtr
    g[:, SKY] = (ww[:, :, 0] * rw[:, :, 0]).sum(1)
    return full, g


def levenberg_marquardt(
    renderer: Renderer,
    data: Tensor,
    weight: Tensor,
    u0: Tensor,
    bounds: Bounds,
    *,
    max_iter: int = 60,
    dchi2_tol: float = 1e-2,
    final_step_tol: float = 3.0,
    lam0: float = 1e-3,
) -> LMState:
    """Minimise chi^2 = sum (w (data - model))^2 for every galaxy of the batch independently.

    data, weight: [B, H, W] (weight = 1/sigma, 0 for masked pixels), renderer dtype.
    u0: [B, P] float64 start in u space. Each galaxy has its own damping lambda (Marquardt's
    diagonal scaling) and stops when the step predicted by the linearised model would lower chi^2 by
    less than ``dchi2_tol`` (a small fraction of one sigma), or takes that last step unrendered when
    it would lower chi^2 by less than ``final_step_tol`` (then chi2 is the predicted value and the
    curvature matrix is the one before the step). Converged galaxies leave the batch.
    """
    spec = renderer.spec
    free = torch.tensor(spec.free, device=u0.device)
    sky_free = SKY in spec.free
    dt = renderer.dtype
    bsz = u0.shape[0]
    dev = u0.device
    u = u0.clone()
    lam = torch.full((bsz,), lam0, dtype=torch.float64, device=dev)
    iters = torch.zeros(bsz, dtype=torch.int64, device=dev)
    done = torch.zeros(bsz, dtype=torch.bool, device=dev)
    conv = torch.zeros(bsz, dtype=torch.bool, device=dev)
    status = [""] * bsz

    def evaluate(uu: Tensor, dd: Tensor, ww: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        m, dmdu = u_to_m(uu, spec, bounds)
        model, jac = renderer.render(m.to(dt), need_grad=True)
        rw = (dd - model) * ww
        chi2 = (rw.double() ** 2).sum(dim=(1, 2))
        jtj, jtr = _normal_equations(jac, rw, ww, sky_free)
        return chi2, jtj, jtr, dmdu[:, free][:, :, free]

    chi2, jtj_m, jtr_m, dsub = evaluate(u, data, weight)
    bad = ~torch.isfinite(chi2) | ~torch.isfinite(jtj_m).all(dim=(1, 2))
    for b in bad.nonzero().flatten().tolist():
        status[b] = "non-finite model at the start"
    done |= bad
    eye = torch.eye(len(spec.free), dtype=torch.float64, device=dev)

    for _ in range(max_iter):
        act = (~done).nonzero().flatten()
        if act.numel() == 0:
            break
        a_jtj, a_jtr, a_d = jtj_m[act], jtr_m[act], dsub[act]
        # normal equations in u: (D^T H D + lam diag) du = D^T J^T W r
        h_u = a_d.transpose(1, 2) @ a_jtj @ a_d
        g_u = (a_d.transpose(1, 2) @ a_jtr[:, :, None])[:, :, 0]
        diag = torch.diagonal(h_u, dim1=1, dim2=2).clamp_min(1e-12)
        lhs = h_u + (lam[act][:, None, None] * eye) * diag[:, None, :]
        step, info = torch.linalg.solve_ex(lhs, g_u)
        step = torch.where((info == 0)[:, None] & torch.isfinite(step), step, torch.zeros_like(step))
        pred = (step * (2.0 * g_u - (h_u @ step[:, :, None])[:, :, 0])).sum(1)
        # galaxies whose (lightly damped) step cannot improve chi^2 noticeably have converged;
        # a heavily damped step predicts little only because it is short, so it does not count
        gn = lam[act] < 1.0
        small = (pred < dchi2_tol) & gn
        fin = act[small]
        if fin.numel():
            done[fin] = True
            conv[fin] = True
        # a (nearly undamped) Gauss-Newton step that the linearised model says lowers chi^2 by less
        # than final_step_tol is taken without rendering again: it moves the parameters by less
        # than their errors, where the linearisation is exact to second order, and the Jacobian
        # for the covariance changes negligibly. Saves the confirming render of most fits.
        last = ~small & (pred < final_step_tol) & (lam[act] < 1e-2)
        fl = act[last]
        if fl.numel():
            u[fl[:, None], free[None, :]] += step[last]
            chi2[fl] = chi2[fl] - pred[last]
            done[fl] = True
            conv[fl] = True
        trial = act[~small & ~last]
        if trial.numel() == 0:
            continue
        ut = u[trial].clone()
        ut[:, free] += step[~small & ~last]
        c2, jtj_t, jtr_t, d_t = evaluate(ut, data[trial], weight[trial])
        iters[trial] += 1
        ok = torch.isfinite(c2) & (c2 < chi2[trial]) & torch.isfinite(jtj_t).all(dim=(1, 2))
        acc = trial[ok]
        u[acc] = ut[ok]
        chi2[acc] = c2[ok]
        jtj_m[acc], jtr_m[acc], dsub[acc] = jtj_t[ok], jtr_t[ok], d_t[ok]
        lam[acc] = (lam[acc] * 0.2).clamp_min(1e-9)
        rej = trial[~ok]
        lam[rej] = lam[rej] * 10.0
        stalled = rej[lam[rej] > 1e9]
        if stalled.numel():
            done[stalled] = True
            for b in stalled.tolist():
                status[b] = "damping diverged: no step lowers chi2"
    for b in (~done).nonzero().flatten().tolist():
        status[b] = f"not converged in {max_iter} iterations"
    return LMState(u=u, chi2=chi2, jtj_m=jtj_m, iterations=iters, converged=conv, status=status)


# ----------------------------------------------------------------------
def physical_names(spec: ModelSpec) -> list[str]:
    """Names of the physical parameters, e.g. ['x0', 'y0', 'sky', 'flux', 're', 'n', 'q', 'theta']."""
    out = list(GLOBAL_NAMES)
    one = len(spec.components) == 1
    for cname, _ in spec.components:
        pre = "" if one else f"{cname}."
        out += [pre + s for s in PHYSICAL_COMPONENT_NAMES]
    return out


def m_to_physical(m: Tensor, spec: ModelSpec) -> tuple[Tensor, Tensor]:
    """Physical parameters p [B, P] and dp/dm [B, P, P] from m [B, P] (float64 advised).

    theta is in (-pi/2, pi/2]; for a round galaxy (e = 0) d theta/d e is infinite and its error
    is reported as such.
    """
    bsz, npar = m.shape
    p = m.clone()
    t = torch.zeros(bsz, npar, npar, dtype=m.dtype, device=m.device)
    for i in range(N_GLOBAL):
        t[:, i, i] = 1.0
    for c in range(len(spec.components)):
        s = spec.comp_start(c)
        f, r, ns, q_, th = s + FLUX, s + RE, s + SERSIC_N, s + Q, s + THETA
        lf, lre, n, e1, e2 = m[:, s + FLUX], m[:, s + RE], m[:, s + SERSIC_N], m[:, s + E1], m[:, s + E2]
        p[:, f] = torch.exp(lf)
        t[:, f, f] = p[:, f]
        p[:, r] = torch.exp(lre)
        t[:, r, r] = p[:, r]
        p[:, ns] = n
        t[:, ns, ns] = 1.0
        e2sum = e1 * e1 + e2 * e2
        e = torch.sqrt(e2sum)
        q = torch.sqrt((1.0 - e) / (1.0 + e))
        p[:, q_] = q
        p[:, th] = 0.5 * torch.atan2(e2, e1)
        dq_de = -1.0 / (q * (1.0 + e) ** 2)
        es = e.clamp_min(1e-300)
        # rows: p's q, theta; columns: m's e1, e2 (the same positions)
        t[:, q_, s + E1] = dq_de * e1 / es
        t[:, q_, s + E2] = dq_de * e2 / es
        e2s = e2sum.clamp_min(1e-300)
        t[:, th, s + E1] = -0.5 * e2 / e2s
        t[:, th, s + E2] = 0.5 * e1 / e2s
    return p, t


def covariance(jtj_m: Tensor, m: Tensor, spec: ModelSpec) -> tuple[Tensor, Tensor]:
    """Physical covariance [B, P, P] and 1-sigma errors [B, P] from J^T W J over the free m.

    jtj_m: [B, Pf, Pf] float64; m: [B, P]. Fixed parameters get zero error. A free parameter the
    data do not constrain at all (its column of J vanishes, e.g. the shape of a bulge whose flux
    went to zero) gets an infinite error, and so does any parameter of a singular matrix.
    """
    bsz, npar = m.shape
    free = spec.free
    diag = torch.diagonal(jtj_m, dim1=1, dim2=2)
    dead = ~(diag > 1e-12 * diag.amax(dim=1, keepdim=True))  # [B, Pf], NaN counts as dead
    reg = torch.where(dead[:, :, None] | dead[:, None, :], torch.zeros_like(jtj_m), jtj_m)
    reg = reg + torch.diag_embed(dead.double())
    cov_f, info = torch.linalg.inv_ex(reg)
    cov_f = torch.where(dead[:, :, None] | dead[:, None, :], torch.zeros_like(cov_f), cov_f)
    singular = (info != 0) | ~torch.isfinite(cov_f).all(dim=(1, 2))
    cov_f = torch.where(singular[:, None, None], torch.zeros_like(cov_f), cov_f)
    cov_m = torch.zeros(bsz, npar, npar, dtype=torch.float64, device=m.device)
    fi = torch.tensor(free, device=m.device)
    cov_m[:, fi[:, None], fi[None, :]] = cov_f
    _, t = m_to_physical(m.double(), spec)
    cov_p = t @ cov_m @ t.transpose(1, 2)
    err = torch.sqrt(torch.diagonal(cov_p, dim1=1, dim2=2).clamp_min(0.0))
    inf = torch.zeros(bsz, npar, dtype=torch.bool, device=m.device)
    inf[:, fi] = dead | singular[:, None]
    # the ellipse is one block: e1 or e2 unconstrained leaves q and theta unconstrained
    for c in range(len(spec.components)):
        iq, ith = spec.comp_start(c) + Q, spec.comp_start(c) + THETA
        both = inf[:, iq] | inf[:, ith]
        inf[:, iq] = inf[:, ith] = both
    err = torch.where(inf, torch.full_like(err, float("inf")), err)
    return cov_p, err
