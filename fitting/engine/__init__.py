"""Profile-fitting engine: pure PyTorch, batch first, no Django.

Entry point :func:`fit`; building blocks in profiles (Sérsic, b_n), model (rendering, PSF,
sub-pixel integration, analytic Jacobian), lm (batched Levenberg-Marquardt, bounds, covariance)
and init (sky, segmentation, moments).
"""

from .fit import ENGINE_VERSION, BatchFit, auto_batch_size, default_device, fit
from .lm import physical_names
from .model import model_spec

__all__ = ["ENGINE_VERSION", "BatchFit", "auto_batch_size", "default_device", "fit", "model_spec", "physical_names"]
