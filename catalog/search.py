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
# A catalogue designation (NGC 4565, MCG +04-30-006, 2MASX J12362080+2559146), a bare PGC number,
# or a common name of letters and blanks ("Andromeda", "Needle Galaxy", "Bode's Galaxy").
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 .+\-_/'’]*$")
_QUOTES = "\"'“”‘’"
_COMMON_SUFFIX = "GALAXY"
NEAR_MATCH_LIMIT = 8


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
    if len(raw) > 2 and raw[0] in _QUOTES and raw[-1] in _QUOTES:
        raw = raw[1:-1].strip()  # "Needle Galaxy" typed with its quotes
    if not raw:
        raise SearchError("Type a galaxy name (NGC 4565, PGC 42038, 42038) or a position with a radius (189.086 25.988 5 arcmin).")
    if len(raw) > MAX_QUERY_LENGTH:
        raise SearchError(f"The search text is longer than {MAX_QUERY_LENGTH} characters.")
    if raw[0].isalpha():  # positions start with a digit or a sign; M31, UGC 7772, Andromeda are names
        if _parse_radius(raw)[1] is not None:
            raise SearchError(f"A radius was given but {raw!r} is not a position (RA Dec in degrees or sexagesimal).")
        if not _NAME.match(raw):
            raise SearchError(
                f"Cannot read {raw!r} as a galaxy name (e.g. 'NGC 4565', 'M 31', 'Needle Galaxy') or a position "
                "(e.g. '189.086 25.988 5 arcmin', '12:36:20.8 +25:59:15 30 arcsec')."
            )
        return NameQuery(raw, normalise_name(raw), pgc_from_name(raw))
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
    if not (_NAME.match(raw) and re.match(r"^\d+$|^\d[A-Za-z]", raw)):  # 42038, 2MASX J..., 3C 273
        raise SearchError(
            f"Cannot read {raw!r} as a galaxy name (e.g. 'NGC 4565', 'PGC 42038') or a position "
            "(e.g. '189.086 25.988 5 arcmin', '12:36:20.8 +25:59:15 30 arcsec')."
        )
    return NameQuery(raw, normalise_name(raw), pgc_from_name(raw))


def resolve_name(query: NameQuery):
    """The Galaxy a NameQuery designates, or None."""
    from catalog.models import Galaxy, GalaxyName

    keys = [query.normalised]
    if not query.normalised.endswith(_COMMON_SUFFIX) and query.normalised.isalpha():
        keys.append(query.normalised + _COMMON_SUFFIX)  # "Andromeda" is the Andromeda Galaxy
    hits = {n.normalised: n.galaxy for n in GalaxyName.objects.filter(normalised__in=keys).select_related("galaxy")}
    for key in keys:
        if key in hits:
            return hits[key]
    if query.pgc is not None:
        return Galaxy.objects.filter(pgc=query.pgc).first()
    return None


def near_matches(query: NameQuery, limit: int = NEAR_MATCH_LIMIT) -> list[tuple[str, int]]:
    """(name, pgc) of names close to one that was not found, best first: names that start with
    what was typed or contain it, then the same catalogue with the nearest numbers (NGC 4564 and
    NGC 4567 for NGC 4565), then names that differ by a letter or two (difflib on the names of the
    same first letters). Each query reads the unique index on the normalised names."""
    import difflib

    from catalog.models import GalaxyName

    key = query.normalised
    if not key:
        return []
    names = GalaxyName.objects.values_list("name", "galaxy_id", "normalised")
    found: dict[str, tuple[str, int]] = {}

    def add(rows) -> None:
        for name, pgc, norm in rows:
            if len(found) < limit and norm != key:
                found.setdefault(norm, (name, pgc))

    add(names.filter(normalised__startswith=key).order_by("normalised")[:limit])
    if len(key) >= 4 and len(found) < limit:
        add(names.filter(normalised__contains=key).order_by("normalised")[:limit])
    m = re.match(r"^([A-Z]+)(\d+)$", key)
    if m and len(found) < limit:
        prefix, number = m.group(1), int(m.group(2))
        wanted = [f"{prefix}{k}" for k in range(max(0, number - 3), number + 4) if k != number]
        rows = sorted(names.filter(normalised__in=wanted), key=lambda r: abs(int(r[2][len(prefix) :]) - number))
        add(rows)
    if len(found) < limit and len(key) >= 3:
        pool = list(names.filter(normalised__startswith=key[:2])[:5000])
        close = difflib.get_close_matches(key, [r[2] for r in pool], n=limit, cutoff=0.75)
        by_norm = {r[2]: r for r in pool}
        add(by_norm[c] for c in close)
    return list(found.values())
