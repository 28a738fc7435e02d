"""Image embeddings and outlier scores: a convolutional VAE on the CNN's preprocessing (pure
PyTorch and numpy; no Django). ``load_latent()`` gives the shipped, sha256-checked model."""

from ml.latent.model import LatentModel, load_latent

__all__ = ["LatentModel", "load_latent"]
