"""Network shapes, the 45-90 deg mapping, a few training steps, BN folding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ml.nets import InclinationNet, fuse_for_inference, inclination_loss
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
