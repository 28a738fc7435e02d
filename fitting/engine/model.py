"""Model specification and rendering with analytic Jacobian: sub-pixel integration, PSF, sky.

Internal parameter vector m, per galaxy, [B, P] with P = 3 + 5 C for C Sérsic components:

    m = [x0, y0, sky, (log_flux, log_re, n, e1, e2) for each component]

All components share the centre (x0, y0). Parameters fixed by the spec (n = 1 of an exponential
disk, the sky when it is not fitted) keep their value and are left out of the fit; the free ones
are listed by :attr:`ModelSpec.free`.

The exact model is the galaxy g convolved with the PSF P and the pixel response, sampled at pixel
centres. P is known only by its samples, so it is taken as the band-limited function through them
(Whittaker-Shannon); Q = P (x) pixel is then band-limited too and M(o) = integral g(y) Q(o - y) dy.
:class:`Renderer` evaluates it in four steps, all linear in g (so every Jacobian channel takes the
same path):

1. g is sampled at the centres of an extended grid (the image plus a PSF half-width margin, so
   light from just outside the frame is scattered in), and each sample is turned into a pixel
   integral by the midpoint rule with its curvature term, g + (discrete Laplacian of g) / 24;
2. a FINE_BOX x FINE_BOX box of pixels around the centre is cut into cells of 1/FINE pixel,
   integrated like the pixels of step 1 (centre sample plus curvature term on the cell grid),
   and the CUSP_CELLS x CUSP_CELLS cells around the centre on a grid stretched towards it (a
   regular grid converges slowly and erratically on the r^(1/n) cusp); their sums replace those
   pixels;
3. the pixel integrals are convolved with the sampled PSF by one real FFT of the extended grid
   (exactly image + PSF - 1 wide, so the circular convolution equals the linear one on the image).
   That is exact when g (x) pixel is band-limited, and wrong by per cent of the peak at a steep
   cusp, whose high frequencies alias;
4. the cusp is therefore taken out of step 3 and put back exactly: with a smooth taper w that is 1
   around the centre and 0 at the box edge, the cells' fluxes w F_c are added as points at the cell
   centres convolved with Q, and subtracted as pixel sums convolved with P. The kernel of a cell,
   Q(d - phase) - P(d) over output offsets |d| <= CORR_RADIUS, depends only on the cell's phase in
   its pixel; the FINE^2 kernels are compressed by an SVD to a few basis images, so the
   correction costs two small matrix products per batch. g (1 - w) is smooth and stays in step 3.

With a PSF, step 1's curvature term is applied as a factor of the kernel's spectrum (the fine box's
values are solved for so that it leaves their integrals unchanged), and the derivatives in x0, y0
are minus the image gradient, taken in Fourier space, rather than two more rendered channels.

Against GalSim renders (Sérsic x Moffat, 64 x 64, 10^3-10^4 counts at unit noise) the model
matches to chi^2 < 0.5 for all but the most compact n = 4 galaxies (~1-2.5), where the
band-limited reading of a Moffat sampled at FWHM 2.5 px is itself the limit.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import Tensor

from .profiles import compiled_sersic_channels, sersic_b_and_derivative, sersic_channels, sersic_with_grad

#: Pixels on a side of the box around the centre cut into cells of 1/FINE pixel (see the module notes).
FINE_BOX = 5
FINE = 8
#: Stretched sampling of the CUSP_CELLS x CUSP_CELLS cells around the centre: x = u |u|^(p-1) on a
#: uniform u grid.
CUSP_CELLS = 3
CUSP_SAMPLES = 12
CUSP_STRETCH = 3.0
#: Taper of the exactly convolved cusp: 1 within TAPER_INNER px of the box centre, cos^2 down to 0
#: at TAPER_OUTER (the box edge).
TAPER_INNER = 1.0
TAPER_OUTER = FINE_BOX / 2.0
#: Output offsets (px) of the cusp correction kernels (differences of two PSF-wide kernels, which
#: fall off like the PSF gradient).
CORR_RADIUS = 6
#: Relative Frobenius error allowed when the FINE^2 correction kernels are compressed by an SVD.
CORR_SVD_TOL = 1e-3

#: Layout of the parameter vector, defined here once: the globals, then one block per component.
GLOBAL_NAMES = ("x0", "y0", "sky")
COMPONENT_NAMES = ("log_flux", "log_re", "n", "e1", "e2")
#: Names of a component's block in the physical vector p (fitting.engine.lm.physical_names), which
#: has the same layout as m.
PHYSICAL_COMPONENT_NAMES = ("flux", "re", "n", "q", "theta")
N_GLOBAL = len(GLOBAL_NAMES)
N_COMPONENT = len(COMPONENT_NAMES)
#: Indices of the globals in m and p.
X0, Y0, SKY = (GLOBAL_NAMES.index(k) for k in ("x0", "y0", "sky"))
#: Offsets within a component's block (add ModelSpec.comp_start(c)): m holds log_flux, log_re,
#: n, e1, e2 there, p flux, re, n, q, theta.
FLUX, RE, SERSIC_N, E1, E2 = (COMPONENT_NAMES.index(k) for k in ("log_flux", "log_re", "n", "e1", "e2"))
Q, THETA = E1, E2
#: The centre (x0, y0) comes first: the first two channels of a Jacobian are d/dx0, d/dy0.
N_CENTRE = 2


@dataclass(frozen=True)
class ModelSpec:
    """Which model is fitted: components (name, fixed Sérsic n or None) and whether sky is free."""

    kind: str
    components: tuple[tuple[str, float | None], ...]
    fit_sky: bool = True

    @property
    def n_params(self) -> int:
        return N_GLOBAL + N_COMPONENT * len(self.components)

    @property
    def names(self) -> list[str]:
        """Internal parameter names in m order, e.g. 'x0', 'bulge.log_re'."""
        out = list(GLOBAL_NAMES)
        for cname, _ in self.components:
            out += [f"{cname}.{p}" for p in COMPONENT_NAMES]
        return out

    @property
    def fixed(self) -> list[bool]:
        out = [name == "sky" and not self.fit_sky for name in GLOBAL_NAMES]
        for _, nfix in self.components:
            out += [name == "n" and nfix is not None for name in COMPONENT_NAMES]
        return out

    @property
    def free(self) -> list[int]:
        return [i for i, f in enumerate(self.fixed) if not f]

    def comp_start(self, c: int) -> int:
        """Index in m (and p) of component c's first parameter (its log_flux / flux)."""
        return N_GLOBAL + N_COMPONENT * c

    def comp_slice(self, c: int) -> slice:
        return slice(self.comp_start(c), self.comp_start(c) + N_COMPONENT)


def model_spec(kind: str, fit_sky: bool = True) -> ModelSpec:
    """Named models: 'sersic', 'exp' (Sérsic n = 1), 'bulge_disk' (free-n bulge + exponential disk)."""
    if kind == "sersic":
        comps: tuple[tuple[str, float | None], ...] = (("sersic", None),)
    elif kind == "exp":
        comps = (("disk", 1.0),)
    elif kind == "bulge_disk":
        comps = (("bulge", None), ("disk", 1.0))
    else:
        raise ValueError(f"unknown model kind {kind!r}; expected sersic, exp or bulge_disk")
    return ModelSpec(kind=kind, components=comps, fit_sky=fit_sky)


def _good_fft_size(n: int) -> int:
    """Smallest m >= n whose prime factors are 2, 3, 5 (fast FFT lengths)."""
    m = n
    while True:
        k = m
        for p in (2, 3, 5):
            while k % p == 0:
                k //= p
        if k == 1:
            return m
        m += 1


class Renderer:
    """Renders a :class:`ModelSpec` on an H x W grid, optionally convolved with a PSF.

    psf: [h, w] odd-sized, centred, sampled at pixel centres (no pixel response: the renderer
    integrates pixels itself), normalised here to sum 1; or None. The renderer holds only constant
    tensors; reuse it for every batch of the same image size on the same device and dtype
    (:func:`renderer_for` caches them).
    """

    def __init__(
        self,
        spec: ModelSpec,
        height: int,
        width: int,
        psf: Tensor | None = None,
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        compile: bool = False,
    ) -> None:
        self.spec = spec
        self.channel_fn = compiled_sersic_channels() if compile else sersic_channels
        self.h, self.w = height, width
        self.device = dev = torch.device(device)
        self.dtype = dt = dtype
        if psf is not None:
            psf = torch.as_tensor(psf, device=dev, dtype=torch.float64)
            ph, pw = psf.shape
            if ph % 2 == 0 or pw % 2 == 0:
                raise ValueError(f"PSF must have odd sides, got {tuple(psf.shape)}")
            if not torch.isfinite(psf).all() or psf.sum() <= 0:
                raise ValueError("PSF must be finite with a positive sum")
            psf = psf / psf.sum()
            self.my, self.mx = ph // 2, pw // 2
            self.he = _good_fft_size(height + 2 * self.my)
            self.we = _good_fft_size(width + 2 * self.mx)
        else:
            self.my = self.mx = 0
            self.he, self.we = height, width
        self.ys = (torch.arange(self.he, device=dev, dtype=dt) - self.my).reshape(1, -1, 1)
        self.xs = (torch.arange(self.we, device=dev, dtype=dt) - self.mx).reshape(1, 1, -1)
        self.fbox = min(FINE_BOX, self.he, self.we)
        self.nf = self.fbox * FINE  # fine cells per side
        self.frac = {k: (torch.arange(k, device=dev, dtype=dt) + 0.5) / k for k in (1, CUSP_SAMPLES)}
        ar = torch.arange(self.fbox, device=dev)
        self.fine_flat = (ar[:, None] * self.we + ar[None, :]).reshape(1, 1, -1)
        self._box_laplacian_system()
        self.psf_fft = None
        #: with a PSF, d model / d (x0, y0) is minus the gradient of the convolved image, taken in
        #: Fourier space (exact for the band-limited image), instead of two more rendered channels
        self.spectral_centre = psf is not None
        if psf is not None:
            kern = torch.zeros(self.he, self.we, device=dev, dtype=torch.float64)
            kern[:ph, :pw] = psf
            kern = torch.roll(kern, shifts=(-self.my, -self.mx), dims=(0, 1))
            kern_fft = torch.fft.rfft2(kern)
            cdt = torch.complex64 if dt == torch.float32 else torch.complex128
            ky = torch.fft.fftfreq(self.he, device=dev, dtype=torch.float64)
            kx = torch.fft.rfftfreq(self.we, device=dev, dtype=torch.float64)
            # step 1's curvature term as a multiplier: 1 + (5-point laplacian) / 24
            lap = 1.0 + (torch.cos(2 * math.pi * ky)[:, None] + torch.cos(2 * math.pi * kx)[None, :] - 2.0) / 12.0
            self.psf_fft = (kern_fft * lap).to(cdt)
            # -d/do as a multiplier of the spectrum, 0 at the Nyquist frequency of an even side
            ky = torch.where(ky.abs() >= 0.5, torch.zeros_like(ky), ky)
            kx = torch.where(kx.abs() >= 0.5, torch.zeros_like(kx), kx)
            self.ddx = (-2j * math.pi * kx)[None, :].to(cdt)
            self.ddy = (-2j * math.pi * ky)[:, None].to(cdt)
            self._cusp_correction(kern_fft)

    # ------------------------------------------------------------------ pixel integrals
    @staticmethod
    def _laplacian(x: Tensor) -> Tensor:
        """5-point discrete Laplacian of [..., H, W] (zero beyond the edges)."""
        out = -4.0 * x
        out[..., 1:, :] += x[..., :-1, :]
        out[..., :-1, :] += x[..., 1:, :]
        out[..., :, 1:] += x[..., :, :-1]
        out[..., :, :-1] += x[..., :, 1:]
        return out

    def _box_laplacian_system(self) -> None:
        """Matrices that set the fine box's values v so that L v (L = 1 + laplacian / 24, with the
        box's outside neighbours as they are) equals the box's pixel integrals F:
        v = (F - outside @ ring_to_box) @ box_solve."""
        s, dev = self.fbox, self.device
        inside = {(i, j): i * s + j for i in range(s) for j in range(s)}
        ring = sorted({(i + di, j + dj) for (i, j) in inside for di, dj in ((1, 0), (-1, 0), (0, 1), (0, -1))} - set(inside))
        lmat = torch.zeros(s * s, s * s, dtype=torch.float64)
        rmat = torch.zeros(len(ring), s * s, dtype=torch.float64)
        for (i, j), k in inside.items():
            lmat[k, k] = 1.0 - 4.0 / 24.0
            for di, dj in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                q = (i + di, j + dj)
                if q in inside:
                    lmat[inside[q], k] += 1.0 / 24.0
                else:
                    rmat[ring.index(q), k] += 1.0 / 24.0
        # row-vector convention: (v @ lmat)[k] = (L v)_k over the box
        self.box_solve = torch.linalg.inv(lmat).to(dev, self.dtype)
        self.ring_to_box = rmat.to(dev, self.dtype)
        self.ring_at = torch.tensor(ring, device=dev).T  # [2, R] (row, column) of each ring pixel from the box's corner

    # ------------------------------------------------------------------ PSF helpers
    def _cusp_correction(self, kern_fft: Tensor) -> None:
        """Constant tensors of step 4 (module notes): the cell taper, the SVD basis over cell phases
        and the matrix from (pixel, basis) coefficients to output offsets around the box.

        kern_fft: rfft2 of the PSF on the extended grid (float64 complex, centred at index 0).
        """
        dev, f, box = kern_fft.device, FINE, self.fbox
        rad = min(CORR_RADIUS, (self.he - box) // 2, (self.we - box) // 2)
        self.crad = rad
        ky = torch.fft.fftfreq(self.he, device=dev, dtype=torch.float64)[:, None]
        kx = torch.fft.rfftfreq(self.we, device=dev, dtype=torch.float64)[None, :]
        q_fft = kern_fft * torch.sinc(ky) * torch.sinc(kx)  # Q = P (x) pixel
        kx_d = torch.where(kx.abs() >= 0.5, torch.zeros_like(kx), kx)  # no derivative at Nyquist
        ky_d = torch.where(ky.abs() >= 0.5, torch.zeros_like(ky), ky)
        phase = (torch.arange(f, device=dev, dtype=torch.float64) + 0.5) / f - 0.5  # cell centre - pixel centre
        d = torch.arange(-rad, rad + 1, device=dev)
        iy, ix = d % self.he, d % self.we
        kernels, kernel_spectra = [], []
        for py in phase.tolist():
            for px in phase.tolist():
                spec = q_fft * torch.exp(-2j * math.pi * (ky * py + kx * px)) - kern_fft
                kernel_spectra.append(spec)
                kernels.append(torch.fft.irfft2(spec, s=(self.he, self.we))[iy[:, None], ix[None, :]].reshape(-1))
        kmat = torch.stack(kernels)  # [f^2, (2 rad + 1)^2]
        u, sv, vh = torch.linalg.svd(kmat, full_matrices=False)
        err = torch.sqrt(torch.flip(torch.cumsum(torch.flip(sv**2, [0]), 0), [0]))  # tail norms
        rank = int((err > CORR_SVD_TOL * err[0]).sum())
        self.corr_rank = rank
        self.corr_u = (u[:, :rank] * sv[:rank]).to(self.dtype)  # [f^2, r]
        # the basis images and their -d/dx, -d/dy (exact: the kernels are band-limited), each
        # placed at every box pixel: [box^2 * r, no^2], no = box + 2 rad
        proj = u[:, :rank] / sv[:rank]  # V^T = (U / S)^T K
        no = box + 2 * rad
        self.corr_big = []
        for mult in (None, "x", "y"):
            if mult is None:
                basis = vh[:rank]
            else:
                kd = []
                for kvec in kernel_spectra:
                    spec = kvec * (-2j * math.pi * (kx_d if mult == "x" else ky_d))
                    kd.append(torch.fft.irfft2(spec, s=(self.he, self.we))[iy[:, None], ix[None, :]].reshape(-1))
                basis = proj.T @ torch.stack(kd)
            basis = basis.reshape(rank, 2 * rad + 1, 2 * rad + 1)
            big = torch.zeros(box, box, rank, no, no, device=dev, dtype=torch.float64)
            for by in range(box):
                for bx in range(box):
                    big[by, bx, :, by : by + 2 * rad + 1, bx : bx + 2 * rad + 1] = basis
            self.corr_big.append(big.reshape(box * box * rank, no * no).to(self.dtype))
        # taper of the cells, from their distance to the centre of the box's middle pixel
        c = (torch.arange(self.nf, device=dev, dtype=torch.float64) + 0.5) / f - 0.5 - (box - 1) / 2.0
        r = torch.sqrt(c[:, None] ** 2 + c[None, :] ** 2)
        t = ((r - TAPER_INNER) / (TAPER_OUTER - TAPER_INNER)).clamp(0.0, 1.0)
        taper = torch.cos(0.5 * math.pi * t) ** 2  # [nf, nf]
        # reorder to [box, box, f^2] (pixel, phase) to match the cells' layout after a reshape
        self.corr_taper = taper.reshape(box, f, box, f).permute(0, 2, 1, 3).reshape(box * box, f * f).to(self.dtype)
        oy = torch.arange(-rad, box + rad, device=dev)
        self.corr_off = torch.stack(torch.meshgrid(oy, oy, indexing="ij"), 0).reshape(2, -1)  # [2, no^2]

    # ------------------------------------------------------------------ sampling
    def _channels(self, m: Tensor, dx: Tensor, dy: Tensor, need_grad: bool, bn: list) -> Tensor:
        """Unconvolved channels at sample offsets dx, dy [B, a, b]: with need_grad [B, Pf', a, b],
        the derivatives of every free parameter but the sky in m order (without x0, y0 when the
        renderer takes those from the convolved image, see :attr:`spectral_centre`); else
        [B, 1, a, b], the image."""
        fixed = self.spec.fixed
        centre = not self.spectral_centre
        comps = []
        for c in range(len(self.spec.components)):
            s = self.spec.comp_slice(c)
            lf, lre, n, e1, e2 = m[:, s].unbind(1)
            b, db = bn[c]
            if need_grad:
                comps.append(self.channel_fn(dx, dy, lf, lre, n, e1, e2, b, db, not fixed[s.start + SERSIC_N], centre))
            else:
                comps.append(sersic_with_grad(dx, dy, lf, lre, n, e1, e2, b, db, need_grad=False)[0][:, None])
        if len(comps) == 1:
            return comps[0]
        if not need_grad:
            return sum(comps)
        if not centre:
            return torch.cat(comps, dim=1)
        both = sum(c[:, :N_CENTRE] for c in comps)
        return torch.cat([both] + [c[:, N_CENTRE:] for c in comps], dim=1)

    def _axis_samples(self, lo: Tensor, cell: float, ncell: int, k: int, p: float) -> tuple[Tensor, Tensor]:
        """Sample offsets and weights along one axis for ncell cells of width ``cell``.

        lo: [B] offset of the first cell's lower edge from the galaxy centre. Returns (t, w), each
        [B, ncell*k]: offsets from the centre and quadrature weights (summing to ``cell`` per cell).
        With p > 1 the samples are uniform in u where t = u |u|^(p-1).
        """
        edges = lo[:, None] + cell * torch.arange(ncell, device=lo.device, dtype=lo.dtype)[None, :]  # [B, n]
        frac = self.frac[k][None, None, :]
        if p == 1.0:
            t = (edges[:, :, None] + cell * frac).reshape(-1, ncell * k)
            return t, torch.full_like(t, cell / k)
        inv = 1.0 / p
        ulo = torch.sign(edges) * edges.abs() ** inv
        hi = edges + cell
        uhi = torch.sign(hi) * hi.abs() ** inv
        du = (uhi - ulo)[:, :, None]
        u = ulo[:, :, None] + frac * du
        ua = u.abs()
        t = torch.sign(u) * ua**p
        w = p * ua ** (p - 1.0) * du / k
        return t.reshape(-1, ncell * k), w.reshape(-1, ncell * k)

    def _integrate(self, m, bn, need_grad, lox, loy, cell, ncell, k, p) -> Tensor:
        """Cell integrals (flux per cell) [B, C, ncell, ncell] of a square block of cells."""
        tx, wx = self._axis_samples(lox, cell, ncell, k, p)
        ty, wy = self._axis_samples(loy, cell, ncell, k, p)
        ch = self._channels(m, tx[:, None, :], ty[:, :, None], need_grad, bn)
        if p == 1.0 and k == 1:  # one sample per cell: the midpoint rule
            return ch * (cell * cell)
        wgt = (wy[:, :, None] * wx[:, None, :]).unsqueeze(1)
        bsz, nch = ch.shape[:2]
        return (ch * wgt).reshape(bsz, nch, ncell, k, ncell, k).sum(dim=(3, 5))

    def _model_cols(self) -> list[int]:
        """Positions of the components' log_flux channels (their images) among the rendered
        channels before the x0, y0 channels are added."""
        cols, col = [], 0
        for c in range(len(self.spec.components)):
            cols.append(col)
            col += sum(1 for j in range(N_COMPONENT) if not self.spec.fixed[self.spec.comp_start(c) + j])
        return cols

    def _convolve(self, stack: Tensor, cells: Tensor, fbx: Tensor, fby: Tensor, need_grad: bool) -> Tensor:
        """Steps 3 and 4 of the module notes, then the crop to the image.

        stack: [B, C, He, We] pixel integrals; cells: [B, C, box^2, FINE^2] fine-cell fluxes;
        fbx, fby: [B] first pixel of the fine box. Returns [B, C', H, W] with C' = C + 2 when the
        centre derivatives are taken from the image (prepended as x0, y0).
        """
        bsz, nch = stack.shape[:2]
        centre = need_grad and self.spectral_centre
        extra = N_CENTRE if centre else 0
        spec = torch.empty(bsz, nch + extra, self.he, self.we // 2 + 1, dtype=self.psf_fft.dtype, device=stack.device)
        torch.mul(torch.fft.rfft2(stack), self.psf_fft, out=spec[:, extra:])
        coef = (cells * self.corr_taper) @ self.corr_u  # [B, C, box^2, r]
        no2 = self.corr_big[0].shape[1]
        corr = torch.empty(bsz, nch + extra, no2, dtype=stack.dtype, device=stack.device)
        corr[:, extra:] = (coef.reshape(bsz * nch, -1) @ self.corr_big[0]).reshape(bsz, nch, no2)
        if centre:
            cols = [c + extra for c in self._model_cols()]
            mspec = spec[:, cols[0]] if len(cols) == 1 else sum(spec[:, c] for c in cols)
            torch.mul(mspec, self.ddx, out=spec[:, X0])
            torch.mul(mspec, self.ddy, out=spec[:, Y0])
            mcoef = sum(coef[:, c - extra] for c in cols).reshape(bsz, -1)
            corr[:, X0] = mcoef @ self.corr_big[1]
            corr[:, Y0] = mcoef @ self.corr_big[2]
            nch += N_CENTRE
        # inverse transform of the rows the image needs only (two 1-D passes)
        rows = torch.fft.ifft(spec, dim=-2)[:, :, self.my : self.my + self.h]
        out = torch.fft.irfft(rows, n=self.we, dim=-1)[..., self.mx : self.mx + self.w].contiguous()
        oy = fby.long()[:, None] + self.corr_off[0][None, :] - self.my
        ox = fbx.long()[:, None] + self.corr_off[1][None, :] - self.mx
        inside = (oy >= 0) & (oy < self.h) & (ox >= 0) & (ox < self.w)
        flat = torch.where(inside, oy * self.w + ox, torch.zeros_like(oy))
        corr = corr * inside[:, None, :].to(corr.dtype)
        out = out.reshape(bsz, nch, -1)
        out.scatter_add_(2, flat[:, None, :].expand(bsz, nch, flat.shape[1]), corr)
        return out.reshape(bsz, nch, self.h, self.w)

    # ------------------------------------------------------------------ render
    def render(self, m: Tensor, need_grad: bool = True) -> tuple[Tensor, Tensor | None]:
        """Model image and Jacobian at internal parameters m [B, P].

        Returns model [B, H, W] (sky included) and, with need_grad, J [B, Pf', H, W] = d model / d m
        over the free parameters (spec.free order) except the sky, whose derivative is 1
        everywhere (J may be a strided view). dtype/device follow the renderer.
        """
        bsz = m.shape[0]
        ncomp = len(self.spec.components)
        bn = [sersic_b_and_derivative(m[:, self.spec.comp_start(c) + SERSIC_N]) for c in range(ncomp)]
        x0, y0 = m[:, X0], m[:, Y0]
        # 1. point samples of the extended grid, made pixel integrals by the curvature term
        stack = self._channels(m, self.xs - x0.reshape(-1, 1, 1), self.ys - y0.reshape(-1, 1, 1), need_grad, bn)
        nch = stack.shape[1]
        if self.psf_fft is None:  # with a PSF the curvature term is part of the kernel (see _convolve)
            stack = stack + self._laplacian(stack) * (1.0 / 24.0)
        stack = stack.reshape(bsz, nch, -1)  # [B, C, He*We]
        # 2. fine box: cells of 1/FINE pixel, the cusp cells on a stretched grid
        s, f, nf = self.fbox, FINE, self.nf
        cx = torch.round(x0.detach()) + self.mx  # ext-grid pixel holding the centre
        cy = torch.round(y0.detach()) + self.my
        fbx = torch.clamp(cx - s // 2, 0, self.we - s)
        fby = torch.clamp(cy - s // 2, 0, self.he - s)
        lox = fbx - self.mx - 0.5 - x0
        loy = fby - self.my - 0.5 - y0
        # cells sampled at their centres (plus a one-cell rim for the curvature term)
        pts = self._integrate(m, bn, need_grad, lox - 1.0 / f, loy - 1.0 / f, 1.0 / f, nf + 2, 1, 1.0)
        cells = (pts + self._laplacian(pts) * (1.0 / 24.0))[:, :, 1:-1, 1:-1]  # [B, C, nf, nf]
        half = CUSP_CELLS // 2
        jx = torch.clamp(torch.floor(-lox * f).long() - half, 0, nf - CUSP_CELLS)  # first cusp cell
        jy = torch.clamp(torch.floor(-loy * f).long() - half, 0, nf - CUSP_CELLS)
        cusp = self._integrate(m, bn, need_grad, lox + jx / f, loy + jy / f, 1.0 / f, CUSP_CELLS, CUSP_SAMPLES, CUSP_STRETCH)
        ac = torch.arange(CUSP_CELLS, device=m.device)
        ncc = CUSP_CELLS * CUSP_CELLS
        cidx = ((jy[:, None] + ac[None, :])[:, :, None] * nf + (jx[:, None] + ac[None, :])[:, None, :]).reshape(bsz, 1, ncc)
        cells = cells.reshape(bsz, nch, nf * nf).scatter(2, cidx.expand(bsz, nch, ncc), cusp.reshape(bsz, nch, ncc))
        # [B, C, box^2 pixels, f^2 phases]
        cells = cells.reshape(bsz, nch, s, f, s, f).permute(0, 1, 2, 4, 3, 5).reshape(bsz, nch, s * s, f * f)
        idx = (fby.long() * self.we + fbx.long()).reshape(-1, 1, 1) + self.fine_flat
        box_vals = cells.sum(-1)  # [B, C, box^2] pixel integrals
        if self.psf_fft is not None:
            # the kernel applies L = 1 + laplacian / 24 to every pixel; the box's values are chosen
            # so that L of them (with their outside neighbours) gives the cells' sums
            # (a ring pixel beyond the grid, where a box at its edge has none, holds zero)
            ry, rx = fby.long()[:, None] + self.ring_at[0], fbx.long()[:, None] + self.ring_at[1]  # [B, R]
            on = (ry >= 0) & (ry < self.he) & (rx >= 0) & (rx < self.we)
            ring = torch.where(on, ry * self.we + rx, torch.zeros_like(ry))
            outside = stack.gather(2, ring[:, None, :].expand(bsz, nch, ring.shape[1])) * on[:, None, :].to(stack.dtype)
            box_vals = (box_vals - outside @ self.ring_to_box) @ self.box_solve
        stack.scatter_(2, idx.expand(bsz, nch, s * s), box_vals)
        stack = stack.reshape(bsz, nch, self.he, self.we)
        if self.psf_fft is not None:
            stack = self._convolve(stack, cells, fbx, fby, need_grad)
        sky = m[:, SKY].reshape(-1, 1, 1)
        if not need_grad:
            return stack[:, 0] + sky, None
        # the model is the sum of the components' log_flux channels (d I / d log F = I)
        model = None
        col = N_CENTRE
        for c in range(ncomp):
            ch = stack[:, col]
            model = ch if model is None else model + ch
            col += sum(1 for j in range(N_COMPONENT) if not self.spec.fixed[self.spec.comp_start(c) + j])
        return model + sky, stack


_RENDERERS: OrderedDict = OrderedDict()
_RENDERERS_LOCK = threading.Lock()
#: Renderers kept per process (each holds a few MB of constant tensors).
RENDERER_CACHE_SIZE = 8


def renderer_for(
    spec: ModelSpec,
    height: int,
    width: int,
    psf: Tensor | None,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    compile: bool = False,
) -> Renderer:
    """A cached :class:`Renderer` for this model, image size, PSF (by content), device and dtype:
    building one (the PSF's correction kernels) costs tens of milliseconds, a worker fits many
    batches with the same PSF."""
    digest = None if psf is None else hashlib.sha1(torch.as_tensor(psf).detach().double().cpu().contiguous().numpy().tobytes()).hexdigest()
    key = (spec, int(height), int(width), digest, str(torch.device(device)), dtype, bool(compile))
    with _RENDERERS_LOCK:
        r = _RENDERERS.get(key)
        if r is not None:
            _RENDERERS.move_to_end(key)
            return r
    r = Renderer(spec, height, width, psf, device=device, dtype=dtype, compile=compile)
    with _RENDERERS_LOCK:
        _RENDERERS[key] = r
        while len(_RENDERERS) > RENDERER_CACHE_SIZE:
            _RENDERERS.popitem(last=False)
    return r
