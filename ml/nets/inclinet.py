"""VGG-like inclination network (pure PyTorch; no Django).

In the spirit of Inclinet (Kourkchi et al. 2020, ApJ 902, 145): stacks of 3x3 convolutions and
2x2 max-pooling on a 128x128 cutout. Three heads:

- ``inc``: inclination mapped into [45, 90] deg by 45 + 45 * sigmoid(z);
- ``logvar``: predicted log-variance (deg^2) of that inclination, trained with the Gaussian
  negative log-likelihood as GaMPEN does (Ghosh et al. 2022, ApJ 935, 138);
- ``reject_logit``: accept/reject logit (face-on, star, merger, artefact ... = 1), trained with
  binary cross-entropy.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

#: Regression range (deg): Inclinet's networks predict 45-90 deg; face-on disks are rejected.
INC_LOW, INC_SPAN = 45.0, 45.0
#: Soft bound of the predicted log-variance (deg^2).
LOGVAR_MAX = 8.0


#: Channels of the convolution stages (each stage ends with 2x2 max-pooling: 128 -> 4 px);
#: a stage given as a tuple has two 3x3 convolutions.
DEFAULT_STAGES: tuple = (8, 16, 32, (64, 64), 128)


def stage_lists(stages) -> list[list[int]]:
    """Stages as lists of channels, one list per stage (an int stands for a one-convolution stage)."""
    return [[int(c) for c in s] if isinstance(s, (list, tuple)) else [int(s)] for s in stages]


class InclinationNet(nn.Module):
    """VGG-like CNN: x [B, C, 128, 128] -> dict of [B] tensors (inc deg, logvar, reject_logit).

    ``stages`` gives the channels of each conv stage; ``dropout`` is used in training and,
    optionally, at inference (Monte-Carlo dropout, Gal & Ghahramani 2016, ICML).
    """

    def __init__(
        self,
        in_channels: int = 1,
        stages: tuple | list = DEFAULT_STAGES,
        dropout: float = 0.2,
        hidden: int = 128,
        stem_stride: int = 2,
    ):
        super().__init__()
        stages = stage_lists(stages)
        self.config = dict(in_channels=in_channels, stages=stages, dropout=dropout, hidden=hidden, stem_stride=stem_stride)
        layers: list[nn.Module] = []
        cin = in_channels
        for k, st in enumerate(stages):
            for j, cout in enumerate(st):
                # the first stage may halve the resolution with a strided 3x3 convolution instead of
                # convolving at 128x128 and max-pooling (same output size, ~3x cheaper on a CPU)
                stride = stem_stride if (k == 0 and j == 0) else 1
                layers += [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
                cin = cout
            if not (k == 0 and stem_stride == 2):
                layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        side = 128 // 2 ** len(stages)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(cin * side * side, hidden)
        self.head = nn.Linear(hidden, 3)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.features(x)
        h = torch.flatten(h, 1)
        h = self.dropout(F.relu(self.fc(self.dropout(h))))
        out = self.head(h)
        z, logvar, rej = out[:, 0], out[:, 1], out[:, 2]
        inc = INC_LOW + INC_SPAN * torch.sigmoid(z)
        # soft bound of the log-variance (|log var| < 8, i.e. sigma within 0.02-55 deg) that keeps a gradient
        logvar = LOGVAR_MAX * torch.tanh(logvar / LOGVAR_MAX)
        return {"inc": inc, "logvar": logvar, "reject_logit": rej, "z": z}


def fuse_for_inference(model: InclinationNet) -> InclinationNet:
    """Fold every BatchNorm into the preceding convolution (eval mode only); returns the model."""
    model.eval()
    feats = list(model.features)
    out: list[nn.Module] = []
    k = 0
    while k < len(feats):
        m = feats[k]
        if isinstance(m, nn.Conv2d) and k + 1 < len(feats) and isinstance(feats[k + 1], nn.BatchNorm2d):
            bn = feats[k + 1]
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            conv = nn.Conv2d(m.in_channels, m.out_channels, 3, stride=m.stride, padding=1, bias=True)
            with torch.no_grad():
                conv.weight.copy_(m.weight * scale[:, None, None, None])
                conv.bias.copy_(bn.bias - bn.running_mean * scale)
            out.append(conv)
            k += 2
        else:
            out.append(m)
            k += 1
    model.features = nn.Sequential(*out).to(next(model.parameters()).device)
    return model


#: Scale (deg) that makes the regression loss comparable to the BCE of the reject head.
LOSS_SCALE_DEG = 5.0
#: Logit bound beyond which a penalty pulls the regression logit back (sigmoid(6) = 0.9975).
Z_MAX = 6.0


def inclination_loss(
    out: dict[str, torch.Tensor],
    inc: torch.Tensor,
    reject: torch.Tensor,
    reject_weight: float = 1.0,
    scale_deg: float = LOSS_SCALE_DEG,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Loss of one batch. inc [B] deg (ignored where reject), reject [B] in {0, 1}.

    - mean: squared error / scale_deg^2 on accepted images (a smaller scale weighs the
      regression more against the reject head);
    - log-variance: Gaussian negative log-likelihood 0.5 (log var + (y - mu)^2 / var) with the
      mean held fixed (stop-gradient), as GaMPEN trains its variance (Ghosh et al. 2022) but
      without letting a large predicted variance starve the mean (cf. beta-NLL, Seitzer et al.
      2022, ICLR); its optimum is var = E(y - mu)^2;
    - reject: binary cross-entropy on all images.
    """
    acc = reject < 0.5
    bce = F.binary_cross_entropy_with_logits(out["reject_logit"], reject.float())
    if acc.any():
        mu, lv, y = out["inc"][acc], out["logvar"][acc], inc[acc]
        se = (y - mu) ** 2
        mse = se.mean()
        nll = 0.5 * (lv + se.detach() * torch.exp(-lv)).mean()
        # keep the logit out of the flat tails of the sigmoid, where no gradient would bring it
        # back (|z| = 6 is 45.1 or 89.9 deg)
        tail = (F.relu(out["z"].abs() - Z_MAX) ** 2).mean() if "z" in out else torch.zeros((), device=inc.device)
        reg = mse / scale_deg**2 + 0.1 * nll + tail
    else:
        reg = nll = mse = torch.zeros((), device=inc.device)
    loss = reg + reject_weight * bce
    return loss, {k: float(v.detach()) for k, v in (("loss", loss), ("nll", nll), ("bce", bce), ("mse", mse))}
