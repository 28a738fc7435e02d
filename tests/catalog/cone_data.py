"""Makers of synthetic skies for cone-search tests: uniform points plus crowds at the poles,
across RA 0/360 and around chosen centres (rows written with their HEALPix index)."""

from __future__ import annotations

import numpy as np

from catalog.models import Galaxy
from catalog.sky import healpix_index


def uniform_sky(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    ra = rng.uniform(0, 360, n)
    dec = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    return ra, dec


def around(ra0: float, dec0: float, offsets_deg, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Points at the given angular distances from (ra0, dec0), in random directions."""
    import astropy.units as u
    from astropy.coordinates import SkyCoord

    offsets = np.asarray(offsets_deg, dtype=float)
    pa = rng.uniform(0, 360, offsets.size)
    c = SkyCoord(ra0 * u.deg, dec0 * u.deg).directional_offset_by(pa * u.deg, offsets * u.deg)
    return c.ra.wrap_at(360 * u.deg).deg % 360.0, c.dec.deg


def insert_sky(ra: np.ndarray, dec: np.ndarray, first_pgc: int = 1) -> np.ndarray:
    """Bulk-insert galaxies at (ra, dec); returns their pgc numbers."""
    ra = np.where(ra >= 360.0, 0.0, ra)
    hp = healpix_index(ra, dec).tolist()
    pgcs = np.arange(first_pgc, first_pgc + ra.size)
    Galaxy.objects.bulk_create(
        [
            Galaxy(pgc=int(p), ra=float(a), dec=float(d), healpix=h, vhel=1000.0 + i % 9000)
            for i, (p, a, d, h) in enumerate(zip(pgcs.tolist(), ra.tolist(), dec.tolist(), hp, strict=True))
        ],
        batch_size=2000,
    )
    return pgcs
