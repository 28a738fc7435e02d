"""Weights files without torch: where the shipped ensemble lives and how files are checked.

Kept apart from ml.inference so that the web site can load its URLs and answer most pages
without importing torch (several hundred MB and seconds of start-up per process).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

#: The shipped default ensemble (trained on a 2-core CPU; see its MODEL_CARD.md).
DEFAULT_WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
#: The shipped ensemble of the longer GPU run (see its MODEL_CARD.md and EVALUATION.md).
GPU_WEIGHTS_DIR = Path(__file__).resolve().parent / "weights_gpu"
#: The shipped morphology networks (ml.morph; see their MODEL_CARD.md and EVALUATION.md).
MORPH_WEIGHTS_DIR = DEFAULT_WEIGHTS_DIR / "morph"
#: The shipped latent model (ml.latent's VAE; see its MODEL_CARD.md).
LATENT_WEIGHTS_DIR = DEFAULT_WEIGHTS_DIR / "latent"


def default_weights_dir() -> Path:
    """The ensemble used where none is named: $GALCAT_ML_WEIGHTS (relative to the project root
    unless absolute), else the shipped ml/weights."""
    value = os.environ.get("GALCAT_ML_WEIGHTS", "").strip()
    if not value:
        return DEFAULT_WEIGHTS_DIR
    path = Path(value)
    return path if path.is_absolute() else Path(__file__).resolve().parent.parent / path


class WeightsChecksumError(RuntimeError):
    """A weights file does not have the sha256 it must have."""


def checked_manifest(directory: str | os.PathLike, files: list[str] | None = None) -> dict:
    """directory/ensemble.json, after checking the sha256 of its member files (or of ``files``
    only, each of which it must list). FileNotFoundError without a manifest or a file,
    WeightsChecksumError on a mismatch."""
    directory = Path(directory)
    manifest_path = directory / "ensemble.json"
    if not manifest_path.exists():
        raise FileNotFoundError(f"{manifest_path} not found: train an ensemble first (manage.py train_inclination)")
    manifest = json.loads(manifest_path.read_text())
    listed = {m["file"]: m["sha256"] for m in manifest["members"]}
    for f in files if files is not None else list(listed):
        if f not in listed:
            raise FileNotFoundError(f"{manifest_path} lists no {f}")
        got = sha256_file(directory / f)
        if got != listed[f]:
            raise WeightsChecksumError(f"{directory / f}: sha256 {got} differs from the manifest's {listed[f]}")
    return manifest


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
