"""What people type into the search box: a galaxy name or a position with a radius.

Names: "NGC 4565", "ngc4565", "PGC 42038", "pgc42038", "42038", "UGC 7772", "ESO 123-G045".
Positions (ICRS): degrees "189.086 25.988" or "189.086, +25.988"; sexagesimal
"12h36m20.8s +25d59m15s", "12:36:20.8 +25:59:15" or "12 36 20.8 +25 59 15" (RA in hours),
optionally followed by a radius with its unit: "5 arcmin", "0.1 deg", "30 arcsec", "5'", '30"'.
Parsing of positions and units is astropy's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from catalog.cone import MAX_RADIUS_DEG
from catalog.names import normalise_name, pgc_from_name

DEFAULT_RADIUS_DEG = 5.0 / 60  # 5 arcmin when no radius is typed
MIN_SEARCH_RADIUS_DEG = 1.0 / 3600 / 100  # 0.01 arcsec
MAX_QUERY_LENGTH = 200

_UNITS = {
    "arcsec": "arcsec",
    "arcsecs": "arcsec",
    "arcsecond": "arcsec",
    "arcseconds": "arcsec",
    "asec": "arcsec",
    '"': "arcsec",
    "″": "arcsec",
    "arcmin": "arcmin",
    "arcmins": "arcmin",
    "arcminute": "arcmin",
    "arcminutes": "arcmin",
    "amin": "arcmin",
    "'": "arcmin",
    "′": "arcmin",
    "deg": "deg",
    "degs": "deg",
    "degree": "deg",
    "degrees": "deg",
    "°": "deg",
}
_UNIT_ALT = "|".join(sorted((re.escape(k) for k in _UNITS), key=len, reverse=True))
# A radius at the end: separated from the position by blanks or a comma, "r=" allowed.
_RADIUS = re.compile(
    rf"(?:^|[\s,;]+)(?:r\s*=\s*|radius\s*=?\s*)?(?P<value>[+-]?\d+(?:\.\d*)?|[+-]?\.\d+)\s*(?P<unit>{_UNIT_ALT})\s*$", re.I
)
_POSITION_CHARS = re.compile(r"^[\d\s.,:;+\-hmsdHMSD°′″'\"]+$")
_NUMBER = re.compile(r"\d+(?:\.\d*)?|\.\d+")
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9 .+\-_/]*\d[A-Za-z0-9 .+\-_/]*$|^\d+$")


class SearchError(ValueError):
    """Text that is neither a galaxy name nor a position; the message says what to type."""


@dataclass(frozen=True)
class NameQuery:
    """A galaxy name: `normalised` is the lookup key, `pgc` set for PGC/LEDA names and bare numbers."""

    text: str
    normalised: str
    pgc: int | None


@dataclass(frozen=True)
class ConeQuery:
    """A cone: ICRS centre and radius in degrees."""

    text: str
    ra: float
    dec: float
    radius_deg: float


def _parse_radius(text: str) -> tuple[str, float | None]:
    """(text without its trailing radius, radius in degrees or None)."""
    import astropy.units as u

    m = _RADIUS.search(text)
    if not m:
        return text, None
    value = float(m.group("value"))
    unit = _UNITS[m.group("unit").lower()] if m.group("unit").lower() in _UNITS else _UNITS[m.group("unit")]
    radius = (value * u.Unit(unit)).to_value(u.deg)
    return text[: m.start()].strip(" ,;"), radius


def _parse_position(text: str) -> tuple[float, float]:
    import astropy.units as u
    from astropy.coordinates import SkyCoord

    cleaned = text.replace(",", " ").replace(";", " ").strip()
    parts = cleaned.split()
    sexagesimal = any(ch in cleaned.lower() for ch in "hms:'\"°′″") or len(parts) == 6 or re.search(r"\dd", cleaned.lower())
    try:
        if not sexagesimal:
            if len(parts) != 2:
                raise SearchError(
                    f"A position in degrees is two numbers, RA and Dec (e.g. '189.086 25.988'); got {len(parts)} number(s) in {text!r}."
                )
            ra, dec = float(parts[0]), float(parts[1])
            if not -90 <= dec <= 90:
                raise SearchError(f"Dec {dec:g} is outside [-90, 90] deg.")
            if not 0 <= ra < 360:
                raise SearchError(f"RA {ra:g} is outside [0, 360) deg.")
            return ra, dec
        if len(parts) == 6:
            cleaned = f"{':'.join(parts[:3])} {':'.join(parts[3:])}"
        coord = SkyCoord(cleaned, unit=(u.hourangle, u.deg), frame="icrs")
    except SearchError:
        raise
    except Exception as exc:  # astropy raises several kinds for unparsable angles
        reason = str(exc).split("\n")[0]
        raise SearchError(
            f"Cannot read {text!r} as a position: {reason}. Use degrees ('189.086 25.988') or "
            "sexagesimal with RA in hours ('12h36m20.8s +25d59m15s' or '12:36:20.8 +25:59:15')."
        ) from None
    return float(coord.ra.wrap_at(360 * u.deg).deg) % 360.0, float(coord.dec.deg)


def parse_query(text: str, default_radius_deg: float = DEFAULT_RADIUS_DEG) -> NameQuery | ConeQuery:
    """A NameQuery or ConeQuery for what was typed, or SearchError with a clear message."""
    raw = (text or "").strip()
    if not raw:
        raise SearchError("Type a galaxy name (NGC 4565, PGC 42038, 42038) or a position with a radius (189.086 25.988 5 arcmin).")
    if len(raw) > MAX_QUERY_LENGTH:
        raise SearchError(f"The search text is longer than {MAX_QUERY_LENGTH} characters.")
    rest, radius = _parse_radius(raw)
    looks_like_position = bool(_POSITION_CHARS.match(rest)) and len(_NUMBER.findall(rest)) >= 2
    if looks_like_position:
        ra, dec = _parse_position(rest)
        r = default_radius_deg if radius is None else radius
        if not r > 0:
            raise SearchError(f"The radius must be positive; got {r:g} deg.")
        if r > MAX_RADIUS_DEG:
            raise SearchError(f"The radius {r:g} deg is larger than the largest cone searched ({MAX_RADIUS_DEG:g} deg).")
        return ConeQuery(raw, ra, dec, max(r, MIN_SEARCH_RADIUS_DEG))
    if radius is not None:
        raise SearchError(f"A radius was given but {rest!r} is not a position (RA Dec in degrees or sexagesimal).")
    if _POSITION_CHARS.match(raw) and len(_NUMBER.findall(raw)) == 1 and not re.fullmatch(r"\d+", raw.strip()):
        raise SearchError(f"{raw!r} is one number: a position needs RA and Dec, a PGC number is a whole number.")
    if not _NAME.match(raw):
        raise SearchError(
            f"Cannot read {raw!r} as a galaxy name (e.g. 'NGC 4565', 'PGC 42038') or a position "
            "(e.g. '189.086 25.988 5 arcmin', '12:36:20.8 +25:59:15 30 arcsec')."
        )
    return NameQuery(raw, normalise_name(raw), pgc_from_name(raw))


def resolve_name(query: NameQuery):
    """The Galaxy a NameQuery designates, or None."""
    from catalog.models import Galaxy, GalaxyName

    hit = GalaxyName.objects.filter(normalised=query.normalised).select_related("galaxy").first()
    if hit is not None:
        return hit.galaxy
    if query.pgc is not None:
        return Galaxy.objects.filter(pgc=query.pgc).first()
    return None
