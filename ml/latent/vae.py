"""Convolutional variational autoencoder of 64x64 galaxy inputs (pure PyTorch; no Django).

A beta-VAE (Kingma & Welling 2014, arXiv:1312.6114; Higgins et al. 2017, ICLR): the encoder maps
x [B, C, 64, 64] to the mean and log-variance of a diagonal Gaussian q(z|x) of ``dim``
dimensions, the decoder maps z back to the image; the loss is the Gaussian reconstruction term
with a fixed pixel scale ``sigma_pix`` plus ``beta`` times KL(q(z|x) || N(0, I)). As in
Galaxy_VAE, the latent dimension is the hyperparameter that the sweep of evaluate_latent chooses.

An optional supervised contrastive term (Khosla et al. 2020, arXiv:2004.11362) on the
L2-normalised means pulls together images of the same class and similar inclination, so that
cosine neighbours share them (the retrieval targets); ``contrastive = 0`` gives the plain VAE.
An optional domain head behind a gradient reversal (Ganin & Lempitsky 2015, ICML) aligns
synthetic and real images in the latent space (survey adaptation).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

#: Pixel noise scale of the Gaussian likelihood, in units of the preprocessed image (whose
#: robust peak is 1): about the sky noise of a typical preprocessed cutout.
SIGMA_PIX = 0.1


def _block(cin: int, cout: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1), nn.LeakyReLU(0.1, inplace=True)]


class ConvVAE(nn.Module):
    """x [B, C, 64, 64] -> (mu [B, D], logvar [B, D]); decode(z [B, D]) -> [B, C, 64, 64].

    Encoder: four stride-2 stages (64 -> 4 px) of widths w, 2w, 4w, 8w, each but the last
    followed by a stride-1 3x3 convolution, then a linear layer. The decoder mirrors it with
    nearest-neighbour upsampling. ``light``: no stride-1 convolution at 32 px in the encoder and
    a decoder with one convolution per scale (two at 16 px) and none at 64 px but the output
    layer: about 40 % of the multiply-adds, for training on a shared CPU.
    """

    def __init__(self, channels: int = 1, dim: int = 32, width: int = 16, light: bool = False):
        super().__init__()
        self.config = dict(channels=channels, dim=dim, width=width, light=light)
        w = width
        self.encoder = nn.Sequential(
            *_block(channels, w, 2),
            *([] if light else _block(w, w, 1)),
            *_block(w, 2 * w, 2),
            *_block(2 * w, 2 * w, 1),
            *_block(2 * w, 4 * w, 2),
            *_block(4 * w, 4 * w, 1),
            *_block(4 * w, 8 * w, 2),
        )
        self.to_stats = nn.Linear(8 * w * 16, 2 * dim)
        self.from_z = nn.Linear(dim, 8 * w * 16)
        up = nn.Upsample(scale_factor=2, mode="nearest")
        if light:
            layers = [up, *_block(8 * w, 4 * w, 1), up, *_block(4 * w, 2 * w, 1), *_block(2 * w, 2 * w, 1), up, *_block(2 * w, w, 1), up]
        else:
            layers = [up, *_block(8 * w, 4 * w, 1), *_block(4 * w, 4 * w, 1), up, *_block(4 * w, 2 * w, 1), *_block(2 * w, 2 * w, 1)]
            layers += [up, *_block(2 * w, w, 1), *_block(w, w, 1), up, *_block(w, w, 1)]
        self.decoder = nn.Sequential(nn.LeakyReLU(0.1), *layers, nn.Conv2d(w, channels, 3, padding=1))
        self.dim = dim
        self.width = width

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B, C, 64, 64] -> mu, logvar [B, D]."""
        h = self.encoder(x).flatten(1)
        mu, logvar = self.to_stats(h).chunk(2, dim=1)
        return mu, logvar.clamp(-12.0, 8.0)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z [B, D] -> reconstruction [B, C, 64, 64]."""
        h = self.from_z(z).view(z.shape[0], 8 * self.width, 4, 4)
        return self.decoder(h)

    def forward(self, x: torch.Tensor, sample: bool = True) -> dict[str, torch.Tensor]:
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if sample else mu
        return {"mu": mu, "logvar": logvar, "recon": self.decode(z)}


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per image [B] (nats)."""
    return 0.5 * (mu * mu + logvar.exp() - 1.0 - logvar).sum(1)


def recon_sse(recon: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Sum of squared residuals per image [B]."""
    return ((recon - x) ** 2).flatten(1).sum(1)


def supcon_loss(emb: torch.Tensor, positive: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Supervised contrastive loss (Khosla et al. 2020) of L2-normalised emb [B, D] with a
    boolean positive-pair mask [B, B] (the diagonal is ignored); anchors without positives
    do not count."""
    sim = emb @ emb.T / temperature
    eye = torch.eye(len(emb), dtype=torch.bool, device=emb.device)
    sim = sim.masked_fill(eye, -1e9)
    logp = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    pos = positive & ~eye
    npos = pos.sum(1)
    has = npos > 0
    if not bool(has.any()):
        return emb.sum() * 0.0
    per = (logp * pos).sum(1)[has] / npos[has]
    return -per.mean()


def positive_pairs(cls: torch.Tensor, kind: torch.Tensor, inc: torch.Tensor, inc_window: float) -> torch.Tensor:
    """[B, B] mask of pairs that should be neighbours: same ml.synth kind and, where both have an
    inclination (disks and face-on disks), inclinations within ``inc_window`` deg."""
    same = (kind[:, None] == kind[None, :]) & (cls[:, None] == cls[None, :])
    has = ~torch.isnan(inc)
    d = (inc[:, None] - inc[None, :]).abs()
    close = torch.where(has[:, None] & has[None, :], d <= inc_window, torch.ones_like(same))
    return same & close


class GradReverse(torch.autograd.Function):
    """Identity forward, -lambda * gradient backward (Ganin & Lempitsky 2015)."""

    @staticmethod
    def forward(ctx, x, lam):  # noqa: ANN001 - autograd signature
        ctx.lam = lam
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):  # noqa: ANN001
        return -ctx.lam * g, None


class DomainHead(nn.Module):
    """Synthetic-vs-real logit from a normalised embedding [B, D], behind a gradient reversal."""

    def __init__(self, dim: int, hidden: int = 64):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, emb: torch.Tensor, lam: float = 1.0) -> torch.Tensor:
        return self.net(GradReverse.apply(emb, lam)).squeeze(1)


def vae_loss(
    out: dict[str, torch.Tensor], x: torch.Tensor, beta: float, sigma_pix: float = SIGMA_PIX
) -> tuple[torch.Tensor, dict[str, float]]:
    """Negative ELBO per image (mean over the batch; nats) and its parts."""
    sse = recon_sse(out["recon"], x)
    kl = kl_divergence(out["mu"], out["logvar"])
    npix = x[0].numel()
    nll = 0.5 * sse / sigma_pix**2 + 0.5 * npix * math.log(2 * math.pi * sigma_pix**2)
    loss = (0.5 * sse / sigma_pix**2).mean() + beta * kl.mean()
    return loss, {"nll": float(nll.detach().mean()), "mse": float(sse.detach().mean() / npix), "kl": float(kl.detach().mean())}


def normalise(mu: torch.Tensor) -> torch.Tensor:
    """L2-normalised embedding of latent means [B, D]."""
    return F.normalize(mu, dim=1)
