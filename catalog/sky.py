"""Sky coordinates: HEALPix index and galactic/supergalactic coordinates of ICRS positions.

The catalog indexes positions with the nested HEALPix scheme (Gorski et al. 2005, ApJ 622, 759)
at depth 29 (cells of about 0.4 milliarcsec), stored in a BIGINT column: 12 * 4**29 < 2**63.
Cone searches turn a cone into ranges of that index (see catalog.cone).
"""

from __future__ import annotations

import functools
import math

import numpy as np

HEALPIX_DEPTH = 29
# Depth of the cells whose located galaxies the table catalog_skycell counts (cells of about
# 0.92 deg, 49,152 on the sky; kept by triggers on the galaxy table, migration catalog 0006):
# a 10 deg cone is 85 % whole cells, and a write that moves galaxies all over the sky updates
# at most 49,152 counts (0.4 s; at depth 7 there are 4 times as many).
SKY_CELL_DEPTH = 6
SKY_CELL_SHIFT = 2 * (HEALPIX_DEPTH - SKY_CELL_DEPTH)  # healpix >> SKY_CELL_SHIFT is its cell


class PositionError(ValueError):
    """A position outside RA [0, 360) / Dec [-90, 90] or not a finite number."""


def check_position(ra: float, dec: float) -> tuple[float, float]:
    """(ra, dec) as floats, or PositionError saying what is wrong."""
    try:
        ra_f, dec_f = float(ra), float(dec)
    except (TypeError, ValueError) as exc:
        raise PositionError(f"position ({ra!r}, {dec!r}) is not numeric") from exc
    if not (math.isfinite(ra_f) and math.isfinite(dec_f)):
        raise PositionError(f"position ({ra}, {dec}) is not finite")
    if not 0.0 <= ra_f < 360.0:
        raise PositionError(f"RA {ra_f} is outside [0, 360) deg")
    if not -90.0 <= dec_f <= 90.0:
        raise PositionError(f"Dec {dec_f} is outside [-90, 90] deg")
    return ra_f, dec_f


def healpix_index(ra, dec, depth: int = HEALPIX_DEPTH) -> np.ndarray:
    """Nested HEALPix indices [N] (int64) of ICRS positions in degrees."""
    import astropy.units as u
    from astropy.coordinates import Latitude, Longitude
    from cdshealpix.nested import lonlat_to_healpix

    ra = np.atleast_1d(np.asarray(ra, dtype=np.float64))
    dec = np.atleast_1d(np.asarray(dec, dtype=np.float64))
    return lonlat_to_healpix(Longitude(ra, unit=u.deg), Latitude(dec, unit=u.deg), depth).astype(np.int64)


@functools.cache
def _sky_rotations() -> tuple[np.ndarray, np.ndarray]:
    """The rotation matrices [3, 3] from ICRS to galactic and to supergalactic cartesian
    coordinates: both of astropy's transformations are fixed rotations, so the images of the
    ICRS axes under them are the matrices' columns."""
    import astropy.units as u
    from astropy.coordinates import CartesianRepresentation, Galactic, SkyCoord, Supergalactic

    axes = SkyCoord(CartesianRepresentation(np.eye(3) * u.one), frame="icrs")
    return tuple(axes.transform_to(frame).cartesian.xyz.value for frame in (Galactic(), Supergalactic()))


def derived_coordinates(ra, dec) -> dict[str, np.ndarray]:
    """Galactic (gl, gb) and supergalactic (sgl, sgb) coordinates in degrees of ICRS positions
    (degrees, scalars or arrays): astropy's transformations applied as two matrix products, the
    same values to 1e-9 deg without its per-call frame machinery (bulk imports call this per chunk)."""
    ra, dec = np.radians(np.atleast_1d(np.asarray(ra, dtype=float))), np.radians(np.atleast_1d(np.asarray(dec, dtype=float)))
    xyz = np.stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)])  # [3, N]
    out = {}
    for (lon, lat), rotation in zip((("gl", "gb"), ("sgl", "sgb")), _sky_rotations(), strict=True):
        x, y, z = rotation @ xyz
        degrees = np.degrees(np.arctan2(y, x)) % 360.0
        out[lon] = np.where(degrees >= 360.0, 0.0, degrees)  # -1e-17 % 360 rounds to 360
        out[lat] = np.degrees(np.arctan2(z, np.hypot(x, y)))
    return out


def fill_sky_fields(rows: list[dict]) -> None:
    """Set healpix (and gl/gb/sgl/sgb where missing) on dicts holding ra and dec, in place.

    Rows without a position get healpix None. Vectorised, for bulk writes.
    """
    located = [r for r in rows if r.get("ra") is not None and r.get("dec") is not None]
    for r in rows:
        if r.get("ra") is None or r.get("dec") is None:
            r["healpix"] = None
    if not located:
        return
    ra = np.array([r["ra"] for r in located], dtype=np.float64)
    dec = np.array([r["dec"] for r in located], dtype=np.float64)
    hp = healpix_index(ra, dec).tolist()
    need = [i for i, r in enumerate(located) if any(r.get(k) is None for k in ("gl", "gb", "sgl", "sgb"))]
    derived = derived_coordinates(ra[need], dec[need]) if need else {}
    for i, r in enumerate(located):
        r["healpix"] = hp[i]
    for j, i in enumerate(need):
        for key in ("gl", "gb", "sgl", "sgb"):
            if located[i].get(key) is None:
                located[i][key] = float(derived[key][j])
