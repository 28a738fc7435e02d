"""Test data makers of the latent-space tests: a small untrained latent model in the shipped
format (ml.latent: vae.pt, space.json, ensemble.json), fast to load and run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from catalog.sample import render_disk
from ml.latent.data import preprocess_many
from ml.latent.density import LatentDensity, pca_fit
from ml.latent.model import SPACE_FILE, VAE_FILE
from ml.latent.vae import ConvVAE, normalise
from ml.weights_files import sha256_file

#: Images the maker fits the map projection and the density on (the density needs 4 x its 10 components).
FIT_IMAGES = 120


def make_latent_weights(directory: Path, *, name: str = "latent-test", seed: int = 0, dim: int = 16, artefacts: dict | None = None) -> Path:
    """A randomly initialised ConvVAE (width 8) with the map projection and outlier density fitted
    on rendered disks of random inclination (with ``artefacts`` as the outlier score's artefact
    part, ml.latent.artefacts; none by default), its manifest (sha256 of each file) and a model card."""
    directory.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    net = ConvVAE(channels=1, dim=dim, width=8).eval()
    rng = np.random.default_rng(seed)
    images = [render_disk(float(rng.uniform(20, 90)), size=64, seed=int(rng.integers(1 << 30))) for _ in range(FIT_IMAGES)]
    x = torch.from_numpy(preprocess_many(images, 1))
    with torch.no_grad():
        mu, _ = net.encode(x)
        emb = normalise(mu).numpy()
        recon = ((net.decode(mu) - x) ** 2).flatten(1).mean(1).numpy()
    mean, comps, _ = pca_fit(emb.astype(np.float64), 2)
    density = LatentDensity.fit(emb, recon, note="rendered disks (tests)", artefacts=artefacts)
    torch.save({"state_dict": net.state_dict(), "config": net.config}, directory / VAE_FILE)
    space = {"projection": {"mean": mean.tolist(), "components": comps.tolist()}, "density": density.state}
    (directory / SPACE_FILE).write_text(json.dumps(space))
    members = [{"file": f, "sha256": sha256_file(directory / f)} for f in (VAE_FILE, SPACE_FILE)]
    manifest = {
        "name": name,
        "task": "latent",
        "architecture": "ConvVAE width 8 (untrained, tests)",
        "config": net.config,
        "members": members,
    }
    (directory / "ensemble.json").write_text(json.dumps(manifest))
    card = {"architecture": "ConvVAE width 8 (untrained, tests)", "training_data": "none: random initialisation", "metrics": {}}
    (directory / "model_card.json").write_text(json.dumps(card))
    return directory


def latent_weights_for_tests(tmp_path: Path) -> Path:
    """The shipped latent model (ml/weights/latent) when it is there, else a small untrained one."""
    from ml.weights_files import LATENT_WEIGHTS_DIR

    if (LATENT_WEIGHTS_DIR / "ensemble.json").exists():
        return LATENT_WEIGHTS_DIR
    return make_latent_weights(tmp_path / "latent")
