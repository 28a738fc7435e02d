"""Version of the fitting engine, stored with every fit (importing it does not import torch).

1.1: the cusp is convolved exactly (points with PSF x pixel instead of pixel sums with the PSF),
pixel integrals by the midpoint rule with its curvature term, neighbour masks only for significant
sources. Fits of 1.0 are refitted by ``manage.py fit`` (it skips only fits of the current version).
"""

ENGINE_VERSION = "1.1"
