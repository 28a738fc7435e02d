"""Model specification and rendering with analytic Jacobian: sub-pixel integration, PSF, sky.

Internal parameter vector m, per galaxy, [B, P] with P = 3 + 5 C for C Sérsic components:

    m = [x0, y0, sky, (log_flux, log_re, n, e1, e2) for each component]

All components share the centre (x0, y0). Parameters fixed by the spec (n = 1 of an exponential
disk, the sky when it is not fitted) keep their value and are left out of the fit; the free ones
are listed by :attr:`ModelSpec.free`.

Rendering (:class:`Renderer`) of the exact model (galaxy convolved with PSF and pixel, sampled
at pixel centres):

1. every pixel of an extended grid (image plus a PSF half-width margin, so light from just outside
   the frame is scattered in) is sampled at its centre; a MID_BOX x MID_BOX box of pixels around the
   galaxy centre is integrated on MID_OVERSAMPLE^2 sub-samples per pixel;
2. a FINE_BOX x FINE_BOX box around the centre is cut into cells of 1/FINE pixel, each integrated
   on FINE_SAMPLES^2 sub-samples, and the 3 x 3 cells around the centre on a grid stretched towards
   the centre (CUSP_SAMPLES^2, power CUSP_STRETCH: a regular grid converges slowly and erratically on
   the r^(1/n) cusp); their sums replace those pixels;
3. all channels are convolved with the PSF by one real FFT of the extended grid (exactly image +
   PSF - 1 wide, so the circular convolution equals the linear one on the image);
4. the FFT sums (galaxy x pixel) at pixel centres times the sampled PSF: exact for a smooth
   galaxy, wrong by per cent of the peak at a cusp when the PSF is a few pixels wide. Over the fine
   box that sum is redone over the fine cells with the PSF interpolated to their true positions
   and the difference is added (see Renderer._fine_correction): one matrix product per batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .profiles import compiled_sersic_channels, sersic_b_and_derivative, sersic_channels, sersic_with_grad

#: Pixels on a side of the box around the centre integrated on 2 x 2 sub-samples (sampling the
#: convex wings at pixel centres alone lost 0.2 % of an exponential disk's light, re = 4 px).
MID_BOX = 15
MID_OVERSAMPLE = 2
#: Pixels on a side of the box cut into fine cells of 1/FINE pixel (see the module notes).
FINE_BOX = 5
FINE = 4
FINE_SAMPLES = 2
#: Stretched sampling of the 3 x 3 fine cells around the cusp: x = u |u|^(p-1) on a uniform u grid.
CUSP_SAMPLES = 12
CUSP_STRETCH = 3.0

GLOBAL_NAMES = ("x0", "y0", "sky")
COMPONENT_NAMES = ("log_flux", "log_re", "n", "e1", "e2")


@dataclass(frozen=True)
class ModelSpec:
    """Which model is fitted: components (name, fixed Sérsic n or None) and whether sky is free."""

    kind: str
    components: tuple[tuple[str, float | None], ...]
    fit_sky: bool = True

    @property
    def n_params(self) -> int:
        return 3 + 5 * len(self.components)

    @property
    def names(self) -> list[str]:
        """Internal parameter names in m order, e.g. 'x0', 'bulge.log_re'."""
        out = list(GLOBAL_NAMES)
        for cname, _ in self.components:
            out += [f"{cname}.{p}" for p in COMPONENT_NAMES]
        return out

    @property
    def fixed(self) -> list[bool]:
        out = [False, False, not self.fit_sky]
        for _, nfix in self.components:
            out += [False, False, nfix is not None, False, False]
        return out

    @property
    def free(self) -> list[int]:
        return [i for i, f in enumerate(self.fixed) if not f]

    def comp_slice(self, c: int) -> slice:
        return slice(3 + 5 * c, 8 + 5 * c)


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
    tensors; reuse it for every batch of the same image size on the same device and dtype.
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
        self.mid = min(MID_BOX, self.he, self.we)
        self.fbox = min(FINE_BOX, self.he, self.we)
        self.nf = self.fbox * FINE  # fine cells per side
        self.frac = {k: (torch.arange(k, device=dev, dtype=dt) + 0.5) / k for k in (MID_OVERSAMPLE, FINE_SAMPLES, CUSP_SAMPLES)}
        ar = torch.arange(self.mid, device=dev)
        self.mid_flat = (ar[:, None] * self.we + ar[None, :]).reshape(1, 1, -1)
        ar = torch.arange(self.fbox, device=dev)
        self.fine_flat = (ar[:, None] * self.we + ar[None, :]).reshape(1, 1, -1)
        if psf is not None:
            kern = torch.zeros(self.he, self.we, device=dev, dtype=torch.float64)
            kern[:ph, :pw] = psf
            kern = torch.roll(kern, shifts=(-self.my, -self.mx), dims=(0, 1))
            self.psf_fft = torch.fft.rfft2(kern.to(dt))
            self.corr, self.corr_off = self._fine_correction(psf)
        else:
            self.psf_fft = None

    # ------------------------------------------------------------------ PSF helpers
    def _fine_correction(self, psf: Tensor) -> tuple[Tensor, Tensor]:
        """Matrix [Ne*Ne, No*No] from the fluxes of the fine cells (the fine box plus a margin of
        FINE // 2 cells) to the correction of the output pixels around the box (offsets -m ..
        FINE_BOX-1+m from its first pixel, per axis); also returns those offsets [2, No*No].

        The exact model is the integral of (galaxy x pixel)(y) P(x - y) dy. The FFT path takes it
        as a sum over pixel centres, which is exact for a smooth galaxy but not for the cusp; over
        the fine box the sum is redone over fine-cell centres, with (galaxy x pixel) at each cell
        from the window of cells one pixel wide around it, and the PSF P interpolated
        (band-limited trigonometric interpolation of the PSF image) to the true offsets.
        """
        ph, pw = psf.shape
        dev = psf.device
        spec2 = torch.fft.fft2(torch.fft.ifftshift(psf))  # PSF centred at index 0
        ky = torch.fft.fftfreq(ph, device=dev, dtype=torch.float64)  # cycles per pixel
        kx = torch.fft.fftfreq(pw, device=dev, dtype=torch.float64)
        f, nf, half = FINE, self.nf, FINE // 2
        ne = nf + 2 * half

        def offsets(m: int) -> tuple[Tensor, Tensor]:
            o = torch.arange(-m, self.fbox + m, device=dev, dtype=torch.float64)  # output pixel
            j = torch.arange(nf, device=dev)
            cell = (j.double() + 0.5) / f - 0.5  # fine-cell centre from the box's first pixel centre
            parent = torch.div(j, f, rounding_mode="floor").double()
            return (o[:, None] - cell[None, :]).reshape(-1), (o[:, None] - parent[None, :]).reshape(-1)

        def interp(dy: Tensor, dx: Tensor) -> Tensor:
            ey = torch.exp(2j * math.pi * dy[:, None] * ky[None, :])  # [Ny, ph]
            ex = torch.exp(2j * math.pi * dx[:, None] * kx[None, :])
            val = (ey @ spec2.to(ey.dtype) @ ex.T).real / (ph * pw)
            outside = (dy.abs() > self.my)[:, None] | (dx.abs() > self.mx)[None, :]
            return torch.where(outside, torch.zeros_like(val), val)

        fy, cy = offsets(self.my)
        fx, cx = offsets(self.mx)
        no_y, no_x = self.fbox + 2 * self.my, self.fbox + 2 * self.mx
        # [nf*nf, No*No]: sampled at the cells (weight 1/f^2) and at the pixel centres
        fine = interp(fy, fx).reshape(no_y, nf, no_x, nf).permute(1, 3, 0, 2).reshape(nf * nf, -1) / f**2
        coarse = interp(cy, cx).reshape(no_y, nf, no_x, nf).permute(1, 3, 0, 2).reshape(nf * nf, -1)
        # (galaxy x pixel) at each inner cell from the extended cells: window weights 1/2, 1, .., 1/2
        w1 = torch.ones(f + 1, device=dev, dtype=torch.float64)
        w1[0] = w1[-1] = 0.5
        win = (w1[:, None] * w1[None, :])[None, None]  # flux in a one-pixel window
        basis = torch.eye(ne * ne, device=dev, dtype=torch.float64).reshape(ne * ne, 1, ne, ne)
        smooth = torch.nn.functional.conv2d(basis, win).reshape(ne * ne, nf * nf)  # [Ne^2, nf^2]
        inner = torch.zeros(ne, ne, nf, nf, device=dev, dtype=torch.float64)
        ii = torch.arange(nf, device=dev)
        inner[(ii + half)[:, None], (ii + half)[None, :], ii[:, None], ii[None, :]] = 1.0
        corr = smooth @ fine - inner.reshape(ne * ne, nf * nf) @ coarse
        oy = torch.arange(-self.my, self.fbox + self.my, device=dev)
        ox = torch.arange(-self.mx, self.fbox + self.mx, device=dev)
        off = torch.stack(torch.meshgrid(oy, ox, indexing="ij"), 0).reshape(2, -1)  # [2, No*No]
        return corr.contiguous().to(self.dtype), off

    # ------------------------------------------------------------------ sampling
    def _channels(self, m: Tensor, dx: Tensor, dy: Tensor, need_grad: bool, bn: list) -> Tensor:
        """Unconvolved channels at sample offsets dx, dy [B, a, b]: with need_grad [B, Pf', a, b],
        the derivatives of every free parameter but the sky in m order; else [B, 1, a, b], the image."""
        fixed = self.spec.fixed
        comps = []
        for c in range(len(self.spec.components)):
            s = self.spec.comp_slice(c)
            lf, lre, n, e1, e2 = m[:, s].unbind(1)
            b, db = bn[c]
            if need_grad:
                comps.append(self.channel_fn(dx, dy, lf, lre, n, e1, e2, b, db, not fixed[s.start + 2]))
            else:
                comps.append(sersic_with_grad(dx, dy, lf, lre, n, e1, e2, b, db, need_grad=False)[0][:, None])
        if len(comps) == 1:
            return comps[0]
        if not need_grad:
            return sum(comps)
        centre = sum(c[:, :2] for c in comps)
        return torch.cat([centre] + [c[:, 2:] for c in comps], dim=1)

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
        wgt = (wy[:, :, None] * wx[:, None, :]).unsqueeze(1)
        bsz, nch = ch.shape[:2]
        return (ch * wgt).reshape(bsz, nch, ncell, k, ncell, k).sum(dim=(3, 5))

    # ------------------------------------------------------------------ render
    def render(self, m: Tensor, need_grad: bool = True) -> tuple[Tensor, Tensor | None]:
        """Model image and Jacobian at internal parameters m [B, P].

        Returns model [B, H, W] (sky included) and, with need_grad, J [B, Pf', H, W] = d model / d m
        over the free parameters (spec.free order) except the sky, whose derivative is 1
        everywhere (J may be a strided view). dtype/device follow the renderer.
        """
        bsz = m.shape[0]
        ncomp = len(self.spec.components)
        bn = [sersic_b_and_derivative(m[:, self.spec.comp_slice(c)][:, 2]) for c in range(ncomp)]
        x0, y0 = m[:, 0], m[:, 1]
        stack = self._channels(m, self.xs - x0.reshape(-1, 1, 1), self.ys - y0.reshape(-1, 1, 1), need_grad, bn)
        nch = stack.shape[1]
        stack = stack.reshape(bsz, nch, -1)  # [B, C, He*We]
        cx = torch.round(x0.detach()) + self.mx  # ext-grid pixel holding the centre
        cy = torch.round(y0.detach()) + self.my

        def put(s: int, flat: Tensor, vals: Tensor) -> tuple[Tensor, Tensor]:
            bx = torch.clamp(cx - s // 2, 0, self.we - s)
            by = torch.clamp(cy - s // 2, 0, self.he - s)
            if vals is not None:
                idx = (by.long() * self.we + bx.long()).reshape(-1, 1, 1) + flat
                stack.scatter_(2, idx.expand(bsz, nch, s * s), vals.reshape(bsz, nch, s * s))
            return bx, by

        # 1. mid box: pixel integration on a regular sub-grid
        s = self.mid
        bx, by = put(s, self.mid_flat, None)
        lox = bx - self.mx - 0.5 - x0
        loy = by - self.my - 0.5 - y0
        put(s, self.mid_flat, self._integrate(m, bn, need_grad, lox, loy, 1.0, s, MID_OVERSAMPLE, 1.0))
        # 2. fine box: cells of 1/FINE pixel, the cusp cells on a stretched grid
        s, f, nf = self.fbox, FINE, self.nf
        half = f // 2
        ne = nf + 2 * half  # cells with a margin of half a pixel
        fbx, fby = put(s, self.fine_flat, None)
        lox = fbx - self.mx - 0.5 - x0 - half / f
        loy = fby - self.my - 0.5 - y0 - half / f
        cells = self._integrate(m, bn, need_grad, lox, loy, 1.0 / f, ne, FINE_SAMPLES, 1.0)  # [B, C, ne, ne]
        jx = torch.clamp(torch.floor(-lox * f).long() - 1, 0, ne - 3)  # first of the 3 x 3 cusp cells
        jy = torch.clamp(torch.floor(-loy * f).long() - 1, 0, ne - 3)
        cusp = self._integrate(m, bn, need_grad, lox + jx / f, loy + jy / f, 1.0 / f, 3, CUSP_SAMPLES, CUSP_STRETCH)
        a3 = torch.arange(3, device=m.device)
        cidx = ((jy[:, None] + a3[None, :])[:, :, None] * ne + (jx[:, None] + a3[None, :])[:, None, :]).reshape(bsz, 1, 9)
        cells = cells.reshape(bsz, nch, ne * ne).scatter(2, cidx.expand(bsz, nch, 9), cusp.reshape(bsz, nch, 9))
        inner = cells.reshape(bsz, nch, ne, ne)[:, :, half : half + nf, half : half + nf]
        pix = inner.reshape(bsz, nch, s, f, s, f).sum(dim=(3, 5))
        put(s, self.fine_flat, pix)
        stack = stack.reshape(bsz, nch, self.he, self.we)
        if self.psf_fft is not None:
            stack = torch.fft.irfft2(torch.fft.rfft2(stack) * self.psf_fft, s=(self.he, self.we))
            # 4. the fine cells' light at its true sub-pixel position
            corr = (cells.reshape(bsz * nch, ne * ne) @ self.corr).reshape(bsz, nch, -1)  # [B, C, No*No]
            oy = fby.long()[:, None] + self.corr_off[0][None, :]
            ox = fbx.long()[:, None] + self.corr_off[1][None, :]
            inside = (oy >= 0) & (oy < self.he) & (ox >= 0) & (ox < self.we)
            idx = torch.where(inside, oy * self.we + ox, torch.zeros_like(oy))
            corr = corr * inside[:, None, :].to(corr.dtype)
            stack = stack.reshape(bsz, nch, -1)
            stack.scatter_add_(2, idx[:, None, :].expand(bsz, nch, idx.shape[1]), corr)
            stack = stack.reshape(bsz, nch, self.he, self.we)
            stack = stack[:, :, self.my : self.my + self.h, self.mx : self.mx + self.w]
        sky = m[:, 2].reshape(-1, 1, 1)
        if not need_grad:
            return stack[:, 0] + sky, None
        # the model is the sum of the components' log_flux channels (d I / d log F = I)
        model = None
        col = 2
        for c in range(ncomp):
            ch = stack[:, col]
            model = ch if model is None else model + ch
            col += sum(1 for j in range(5) if not self.spec.fixed[self.spec.comp_slice(c).start + j])
        return model + sky, stack
