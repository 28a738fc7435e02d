"""Inclination networks (pure PyTorch; no Django)."""

from ml.nets.inclinet import INC_LOW, INC_SPAN, InclinationNet, fuse_for_inference, inclination_loss

__all__ = ["INC_LOW", "INC_SPAN", "InclinationNet", "fuse_for_inference", "inclination_loss"]
