"""Test data makers of the ml tests: a tiny weights directory in the shipped format."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ml.nets import InclinationNet
from ml.train import ARCHITECTURE, sha256_file


def make_weights(directory: Path, members: int = 2, seed: int = 0) -> Path:
    """Randomly initialised members + ensemble.json (with sha256) + a minimal model card."""
    directory.mkdir(parents=True, exist_ok=True)
    entries = []
    for k in range(members):
        torch.manual_seed(seed * 10 + k)
        net = InclinationNet().eval()
        path = directory / f"member{k}.pt"
        torch.save({"state_dict": net.state_dict(), "config": net.config, "member": k}, path)
        entries.append({"file": path.name, "sha256": sha256_file(path)})
    manifest = {"name": "test-ensemble", "architecture": ARCHITECTURE, "config": InclinationNet().config, "members": entries}
    (directory / "ensemble.json").write_text(json.dumps(manifest))
    card = {"training_data": {"kind": "random init (tests)", "pool_images": 0, "pool_seed": seed, "bag_fraction": 0.8}, "members": []}
    (directory / "model_card.json").write_text(json.dumps(card))
    return directory
