"""Network shapes, the 45-90 deg mapping, a few training steps, BN folding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ml.nets import InclinationNet, fuse_for_inference, inclination_loss
from ml.nets.widen import widen_inclination_net
from ml.preprocess import preprocess
from ml.synth import render_one


def test_shapes_and_range():
    net = InclinationNet().eval()
    x = torch.randn(5, 1, 128, 128) * 10
    out = net(x)
    assert set(out) == {"inc", "logvar", "reject_logit", "z"}
    for v in out.values():
        assert v.shape == (5,)
    assert torch.all(out["inc"] >= 45.0) and torch.all(out["inc"] <= 90.0)


def test_mapping_saturates_at_45_and_90():
    net = InclinationNet().eval()
    with torch.no_grad():
        net.head.weight.zero_()
        net.head.bias.copy_(torch.tensor([50.0, 0.0, 0.0]))
        assert net(torch.zeros(1, 1, 128, 128))["inc"].item() == pytest.approx(90.0)
        net.head.bias.copy_(torch.tensor([-50.0, 0.0, 0.0]))
        assert net(torch.zeros(1, 1, 128, 128))["inc"].item() == pytest.approx(45.0)
        net.head.bias.copy_(torch.tensor([0.0, 0.0, 0.0]))
        assert net(torch.zeros(1, 1, 128, 128))["inc"].item() == pytest.approx(67.5)


def test_fused_network_matches_unfused():
    torch.manual_seed(0)
    net = InclinationNet().eval()
    # non-trivial BN statistics
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    x = torch.randn(3, 1, 128, 128)
    with torch.no_grad():
        a = net(x)["inc"]
        b = fuse_for_inference(net)(x)["inc"]
    assert torch.allclose(a, b, atol=1e-4)


def test_few_training_steps_lower_the_loss():
    torch.manual_seed(1)
    ims, inc, rej = [], [], []
    for k in range(16):
        im, lab = render_one(5, k)
        ims.append(preprocess(im))
        inc.append(67.5 if np.isnan(lab["inc"]) else lab["inc"])
        rej.append(lab["reject"])
    x = torch.from_numpy(np.stack(ims))
    y = torch.tensor(inc, dtype=torch.float32)
    r = torch.tensor(rej, dtype=torch.float32)
    net = InclinationNet(dropout=0.0)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    net.train()
    losses = []
    for _ in range(30):
        loss, parts = inclination_loss(net(x), y, r)
        losses.append(parts["loss"])
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert np.mean(losses[-3:]) < 0.7 * losses[0]


def _trained_looking_net() -> InclinationNet:
    torch.manual_seed(3)
    net = InclinationNet(dropout=0.1).eval()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return net


def test_widened_network_computes_the_same_function():
    net = _trained_looking_net()
    wide = widen_inclination_net(net, [[8], [24], [48], [96, 80], [160]], 192, noise=0.0).eval()
    assert wide.config["stages"] == [[8], [24], [48], [96, 80], [160]] and wide.config["hidden"] == 192
    assert sum(p.numel() for p in wide.parameters()) > 1.5 * sum(p.numel() for p in net.parameters())
    x = torch.randn(4, 1, 128, 128)
    with torch.no_grad():
        a, b = net(x), wide(x)
    for key in ("inc", "logvar", "reject_logit"):
        assert torch.allclose(a[key], b[key], atol=1e-4), key


def test_widening_noise_makes_the_copies_differ_but_keeps_the_outputs_close():
    net = _trained_looking_net()
    wide = widen_inclination_net(net, [[8], [16], [32], [64, 64], [192]], 128, seed=5).eval()
    conv = [m for m in wide.features if isinstance(m, torch.nn.Conv2d)][-1]
    old = [m for m in net.features if isinstance(m, torch.nn.Conv2d)][-1]
    assert torch.equal(conv.weight[:128], old.weight)
    # every copy differs from every original channel
    dist = torch.cdist(conv.weight[128:].flatten(1), old.weight.flatten(1))
    assert dist.min() > 0
    x = torch.randn(4, 1, 128, 128)
    with torch.no_grad():
        assert (net(x)["inc"] - wide(x)["inc"]).abs().max() < 1.0


def test_widening_refuses_to_shrink_or_reshape():
    net = InclinationNet()
    with pytest.raises(ValueError, match="shrink"):
        widen_inclination_net(net, [[8], [16], [16], [64, 64], [128]], 128)
    with pytest.raises(ValueError, match="shrink"):
        widen_inclination_net(net, [[8], [16], [32], [64, 64], [128]], 64)
    with pytest.raises(ValueError, match="number of stages"):
        widen_inclination_net(net, [[8], [16], [32], [64], [128]], 128)
