"""Outlier scores and nearest neighbours of plain image files (no Django, no database)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ml.latent.model import LatentModel
from ml.preprocess import load_image_file


def nearest(emb: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """For L2-normalised emb [N, D]: indices [N, k'] of the k' = min(k, N - 1) nearest other rows
    by cosine distance and those distances [N, k'] (1 - cosine similarity; 0 for identical)."""
    k = min(k, len(emb) - 1)
    if k <= 0:
        return np.zeros((len(emb), 0), int), np.zeros((len(emb), 0))
    sim = emb.astype(np.float64) @ emb.astype(np.float64).T
    np.fill_diagonal(sim, -np.inf)
    idx = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    dist = np.clip(1.0 - np.take_along_axis(sim, idx, 1), 0.0, 2.0)
    return idx, dist


def score_files(files: list[str], model: LatentModel, neighbours: int = 0) -> tuple[list[str], list[list]]:
    """CSV header and rows: file, outlier_score and, with neighbours K, neighbour_j and
    distance_j (cosine distance) for j = 1..K (empty where fewer other files exist).
    ValueError naming the file that cannot be read."""
    k = neighbours
    images = []
    for f in files:
        try:
            images.append(load_image_file(f))
        except ValueError as exc:
            raise ValueError(f"{f}: {exc}") from exc
    out = model.encode_all(images)
    header = ["file", "outlier_score"]
    for j in range(1, k + 1):
        header += [f"neighbour_{j}", f"distance_{j}"]
    idx, dist = nearest(out["embedding"], k) if k else (None, None)
    rows = []
    for i, f in enumerate(files):
        row: list = [f, f"{float(out['outlier'][i]):.4f}"]
        for j in range(k):
            if idx is not None and j < idx.shape[1]:
                row += [str(Path(files[idx[i, j]])), f"{float(dist[i, j]):.6f}"]
            else:
                row += ["", ""]
        rows.append(row)
    return header, rows
