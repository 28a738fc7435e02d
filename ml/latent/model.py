"""The shipped latent model: load (sha256-checked), embed, score, project (no Django).

A weights directory holds ``ensemble.json`` (name, task "latent", architecture, network config
and the sha256 of each file, the same manifest as the other ml weights), ``vae.pt`` (state dict)
and ``space.json``: the 2-D map projection and the outlier density, both fitted on the training
distribution, so that scores and maps of a few files need nothing else.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ml.latent.artefacts import artefact_features
from ml.latent.data import latent_inputs
from ml.latent.density import LatentDensity
from ml.latent.vae import ConvVAE, normalise
from ml.weights_files import LATENT_WEIGHTS_DIR, WeightsChecksumError, sha256_file

#: Images per forward pass.
ENCODE_BATCH = 256
VAE_FILE = "vae.pt"
SPACE_FILE = "space.json"


class LatentModel:
    """A trained VAE with its map projection and outlier density.

    Attributes: name, version (first 12 hex digits of the manifest's sha256), sha256 (of
    ensemble.json), dim, channels (1 grey, 3 gri), directory, device, net, manifest.
    """

    def __init__(self, net: ConvVAE, space: dict, manifest: dict, directory: Path, sha256: str, device: torch.device):
        self.net = net.eval().to(device).to(memory_format=torch.channels_last)
        self.device = device
        self.manifest = manifest
        self.directory = directory
        self.sha256 = sha256
        self.name = str(manifest.get("name", "latent-vae"))
        self.version = sha256[:12]
        self.dim = int(net.dim)
        self.channels = int(net.config["channels"])
        proj = space["projection"]
        self._proj_mean = np.asarray(proj["mean"], dtype=np.float32)
        self._proj_axes = np.asarray(proj["components"], dtype=np.float32)
        self.density = LatentDensity(space["density"])

    # -- encoding -------------------------------------------------------------------------
    def preprocess(self, images: list[np.ndarray]) -> np.ndarray:
        """Raw images -> float32 [N, C, 64, 64] inputs (ml.latent.data.latent_inputs, on torch's
        number of threads)."""
        return latent_inputs(images, self.channels, workers=torch.get_num_threads(), display=False)[0]

    @torch.inference_mode()
    def encode_inputs(self, x: np.ndarray, batch: int = ENCODE_BATCH, recon: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """Preprocessed inputs [N, C, 64, 64] -> (embedding [N, D] float32, L2-normalised; mean
        squared reconstruction residual of the latent mean [N], or None without ``recon``)."""
        embs, errs = [], []
        for k in range(0, len(x), batch):
            xb = torch.from_numpy(np.ascontiguousarray(x[k : k + batch], dtype=np.float32)).to(self.device)
            xb = xb.contiguous(memory_format=torch.channels_last)
            mu, _ = self.net.encode(xb)
            embs.append(normalise(mu).float().cpu().numpy())
            if recon:
                r = self.net.decode(mu)
                errs.append(((r - xb) ** 2).flatten(1).mean(1).float().cpu().numpy())
        d = self.dim
        emb = np.concatenate(embs) if embs else np.zeros((0, d), np.float32)
        err = (np.concatenate(errs) if errs else np.zeros(0, np.float32)) if recon else None
        return emb.astype(np.float32), err

    def embed(self, images: list[np.ndarray]) -> np.ndarray:
        """Raw images (HxW or HxWx3, any size) -> L2-normalised embeddings [N, dim] float32."""
        return self.encode_inputs(self.preprocess(images), recon=False)[0]

    def artefact_features(self, images: list[np.ndarray]) -> np.ndarray:
        """Raw images -> the outlier score's artefact features [N, F] (ml.latent.artefacts)."""
        return artefact_features(latent_inputs(images, 1, workers=torch.get_num_threads())[1])

    def encode_all(self, images: list[np.ndarray]) -> dict[str, np.ndarray]:
        """One pass: dict(embedding [N, dim], recon_error [N], artefact [N] (the artefact part of
        the outlier score, from the display values before the percentile scale), outlier [N])."""
        x, grey = latent_inputs(images, self.channels, workers=torch.get_num_threads())
        emb, err = self.encode_inputs(x)
        if grey is None:  # colour inputs: the artefacts are measured on the grey display values
            grey = latent_inputs(images, 1, workers=torch.get_num_threads())[1]
        art = self.density.artefact_part(artefact_features(grey)) if self.density.state.get("artefacts") else np.zeros(len(emb))
        art = art.astype(np.float32)
        return {"embedding": emb, "recon_error": err, "artefact": art, "outlier": self.score_embeddings(emb, err, art)}

    # -- scores and map -------------------------------------------------------------------
    def outlier_score(self, images: list[np.ndarray]) -> np.ndarray:
        """Outlier score [N] (higher = more unusual), against the fitted training distribution."""
        return self.encode_all(images)["outlier"]

    def score_embeddings(self, emb: np.ndarray, recon_error: np.ndarray, artefact: np.ndarray | None = None) -> np.ndarray:
        """The outlier score from embeddings [N, dim], reconstruction errors [N] and the artefact
        part [N] (encode_all's "artefact"; none: the latent parts alone)."""
        if len(emb) == 0:
            return np.zeros(0, np.float32)
        return self.density.score(emb, recon_error, artefact)

    def project2d(self, emb: np.ndarray) -> np.ndarray:
        """Embeddings [N, dim] -> map coordinates [N, 2] (PCA fitted on the training set)."""
        return ((np.asarray(emb, dtype=np.float32) - self._proj_mean) @ self._proj_axes.T).astype(np.float32)

    # -- density state (nightly refit on the catalog's embeddings) ------------------------
    def refit_density(self, emb: np.ndarray, recon_error: np.ndarray, note: str = "") -> None:
        """Refit the outlier density and robust scales on a given set (e.g. all stored embeddings);
        the artefact part, fitted on the training distribution, is kept."""
        old = self.density.state
        self.density = LatentDensity.fit(emb, recon_error, weights=old.get("weights"), note=note or "refit", artefacts=old.get("artefacts"))

    def density_state(self) -> dict:
        """JSON-serialisable state of the outlier density (load_density_state takes it back)."""
        return json.loads(json.dumps(self.density.state))

    def load_density_state(self, state: dict) -> None:
        """Use a stored density state (as density_state returned it)."""
        self.density = LatentDensity(state)


def read_manifest(directory: Path) -> tuple[dict, str]:
    path = directory / "ensemble.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: train a latent model first (manage.py train_latent)")
    return json.loads(path.read_text()), sha256_file(path)


def load_latent(
    directory: str | Path | None = None, device: str | None = None, expected_sha256: dict[str, str] | None = None
) -> LatentModel:
    """Load the latent model of a weights directory (default ml/weights/latent).

    Every file listed in ensemble.json must have its sha256 (or the one expected_sha256 gives
    for its name, e.g. from a ModelVersion row): WeightsChecksumError otherwise,
    FileNotFoundError when a file is missing. device: cpu or cuda (default cuda when present).
    """
    directory = Path(directory) if directory is not None else LATENT_WEIGHTS_DIR
    manifest, sha = read_manifest(directory)
    for m in manifest["members"]:
        path = directory / m["file"]
        if not path.exists():
            raise FileNotFoundError(f"{path} not found (listed in {directory / 'ensemble.json'})")
        want = (expected_sha256 or {}).get(m["file"], m["sha256"])
        got = sha256_file(path)
        if got != want:
            raise WeightsChecksumError(f"refusing to load {path}: sha256 {got} does not match the expected {want}")
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    state = torch.load(directory / VAE_FILE, map_location=dev, weights_only=True)
    net = ConvVAE(**state["config"])
    net.load_state_dict(state["state_dict"])
    space = json.loads((directory / SPACE_FILE).read_text())
    return LatentModel(net, space, manifest, directory, sha, dev)
