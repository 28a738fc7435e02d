"""Function-preserving widening of a trained InclinationNet (pure PyTorch; no Django).

Net2WiderNet (Chen, Goodfellow & Shlens 2016, ICLR): a layer gets more units by copying existing
ones (chosen at random), and the next layer divides each copied unit's outgoing weights by the
number of its copies, so the wider network computes the same function. Training then continues
from the trained network's accuracy instead of from scratch, with room for more features.

Here the copied units are convolution channels (with their BatchNorm parameters and running
statistics) and hidden units of the fully connected layer. The copies' incoming weights get a
little noise, so that training can make them differ (identical copies would stay identical); the
noise changes the outputs slightly (``noise=0`` keeps them equal to rounding).
"""

from __future__ import annotations

import torch
from torch import nn

from ml.nets.inclinet import InclinationNet, stage_lists

#: Noise on the copies' incoming weights, relative to the std of the layer's weights.
WIDEN_NOISE = 0.01


def check_widening(old: dict, stages, hidden: int) -> None:
    """ValueError unless a net of config old can be widened to (stages, hidden): the same stages and
    convolutions per stage, each at least as wide (input channels and stem are taken from old)."""
    before, after = stage_lists(old["stages"]), stage_lists(stages)
    if [len(s) for s in before] != [len(s) for s in after]:
        raise ValueError(f"cannot widen stages {old['stages']} to {stages}: the number of stages or convolutions differs")
    narrower = [(a, b) for sa, sb in zip(before, after) for a, b in zip(sa, sb) if b < a]
    if narrower or hidden < old["hidden"]:
        raise ValueError(f"cannot widen stages {old['stages']} / hidden {old['hidden']} to {stages} / {hidden}: a layer would shrink")


def _mapping(n_old: int, n_new: int, g: torch.Generator) -> torch.Tensor:
    """Unit j of the wider layer copies unit map[j] of the old one (the first n_old map to themselves)."""
    extra = torch.randint(0, n_old, (n_new - n_old,), generator=g)
    return torch.cat([torch.arange(n_old), extra])


def _noisy(w: torch.Tensor, n_old: int, noise: float, g: torch.Generator) -> torch.Tensor:
    """Noise of relative size noise (to the weights' std) on the copies' rows (index >= n_old)."""
    if noise <= 0 or w.shape[0] == n_old:
        return w
    w = w.clone()
    scale = noise * float(w[:n_old].std())
    w[n_old:] += scale * torch.randn(w[n_old:].shape, generator=g, dtype=w.dtype)
    return w


@torch.no_grad()
def widen_inclination_net(net: InclinationNet, stages, hidden: int, noise: float = WIDEN_NOISE, seed: int = 0) -> InclinationNet:
    """A wider InclinationNet that starts as net's function (see the module docstring).

    net must be un-fused (BatchNorm layers present). stages/hidden: the new widths; each layer at
    least as wide as net's, with the same number of stages and convolutions per stage.
    """
    check_widening(net.config, stages, hidden)
    g = torch.Generator().manual_seed(seed)
    cfg = dict(net.config)
    wide = InclinationNet(
        in_channels=cfg["in_channels"], stages=stages, dropout=cfg["dropout"], hidden=hidden, stem_stride=cfg["stem_stride"]
    )
    old_convs = [m for m in net.features if isinstance(m, nn.Conv2d)]
    old_bns = [m for m in net.features if isinstance(m, nn.BatchNorm2d)]
    new_convs = [m for m in wide.features if isinstance(m, nn.Conv2d)]
    new_bns = [m for m in wide.features if isinstance(m, nn.BatchNorm2d)]
    in_map = torch.arange(cfg["in_channels"])
    in_count = torch.ones(cfg["in_channels"])
    for oc, ob, nc, nb in zip(old_convs, old_bns, new_convs, new_bns):
        out_map = _mapping(oc.out_channels, nc.out_channels, g)
        count = torch.bincount(out_map, minlength=oc.out_channels).float()
        w = oc.weight[out_map][:, in_map] / in_count[in_map][None, :, None, None]
        nc.weight.copy_(_noisy(w, oc.out_channels, noise, g))
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(nb, name).copy_(getattr(ob, name)[out_map])
        nb.num_batches_tracked.copy_(ob.num_batches_tracked)
        in_map, in_count = out_map, count
    # flatten of [C, side, side]: input feature c * side^2 + s of fc
    side2 = net.fc.in_features // old_convs[-1].out_channels
    feat_map = (in_map[:, None] * side2 + torch.arange(side2)[None, :]).reshape(-1)
    feat_div = in_count[in_map].repeat_interleave(side2)
    h_map = _mapping(net.fc.out_features, hidden, g)
    h_count = torch.bincount(h_map, minlength=net.fc.out_features).float()
    wide.fc.weight.copy_(_noisy(net.fc.weight[h_map][:, feat_map] / feat_div[None, :], net.fc.out_features, noise, g))
    wide.fc.bias.copy_(net.fc.bias[h_map])
    wide.head.weight.copy_(net.head.weight[:, h_map] / h_count[h_map][None, :])
    wide.head.bias.copy_(net.head.bias)
    return wide
