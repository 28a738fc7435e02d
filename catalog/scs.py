"""IVOA Simple Cone Search 1.03 (Williams et al. 2008, IVOA Recommendation 2008-02-22).

GET /scs/?RA=&DEC=&SR=[&VERB=] answers a VOTable of the galaxies within SR degrees of (RA, DEC),
nearest first, with exactly one FIELD of each of the UCDs ID_MAIN, POS_EQ_RA_MAIN and
POS_EQ_DEC_MAIN. VERB=1 gives the fewest columns, 2 (default) the usual ones, 3 all of them.
SR=0 answers the metadata (the FIELDs, no rows). Any parameter that is missing, unparsable or
out of range, and SR above GALCAT_SCS_MAX_SR, is answered with a VOTable holding
INFO name="Error" (and HTTP status 400). /scs/<release>/ searches a release's frozen rows.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

from catalog.columns import BY_NAME, COLUMNS, DEFAULT_LIST_COLUMNS
from catalog.cone import galaxies_in_cone
from catalog.conf import conf
from catalog.exports.source import DISTANCE, table_source
from catalog.exports.votable import stream_votable, votable_error

SCS_UCDS = {"pgc": "ID_MAIN", "ra": "POS_EQ_RA_MAIN", "dec": "POS_EQ_DEC_MAIN"}
VERB_COLUMNS = {
    1: ("pgc", "ra", "dec"),
    2: DEFAULT_LIST_COLUMNS,
    3: tuple(c.name for c in COLUMNS),
}


class SCSError(ValueError):
    """A cone-search request that violates the standard; the message goes into INFO name="Error"."""


@dataclass(frozen=True)
class SCSRequest:
    ra: float
    dec: float
    sr: float
    verb: int


def _param(params, name: str) -> str | None:
    for key in params:
        if key.upper() == name:
            value = params.get(key)
            return None if value is None else str(value).strip()
    return None


def _number(params, name: str, required: bool = True) -> float | None:
    raw = _param(params, name)
    if raw is None or raw == "":
        if required:
            raise SCSError(f"{name} is missing: give RA and DEC (ICRS, decimal degrees) and SR (decimal degrees)")
        return None
    try:
        value = float(raw)
    except ValueError:
        raise SCSError(f"{name}={raw!r} is not a decimal number of degrees") from None
    if not math.isfinite(value):
        raise SCSError(f"{name}={raw!r} is not a finite number")
    return value


def parse_scs(params) -> SCSRequest:
    """The request's RA, DEC, SR, VERB, or SCSError saying what is wrong."""
    ra = _number(params, "RA")
    dec = _number(params, "DEC")
    sr = _number(params, "SR")
    if not 0 <= ra <= 360:
        raise SCSError(f"RA={ra:g} is outside [0, 360] degrees")
    if not -90 <= dec <= 90:
        raise SCSError(f"DEC={dec:g} is outside [-90, 90] degrees")
    if sr < 0:
        raise SCSError(f"SR={sr:g} is negative")
    max_sr = float(conf.SCS_MAX_SR)
    if sr > max_sr:
        raise SCSError(f"SR={sr:g} is larger than this service's maximum search radius, {max_sr:g} degrees")
    verb_raw = _param(params, "VERB")
    verb = 2
    if verb_raw not in (None, ""):
        if verb_raw not in ("1", "2", "3"):
            raise SCSError(f"VERB={verb_raw!r} must be 1, 2 or 3")
        verb = int(verb_raw)
    return SCSRequest(ra % 360.0, dec, sr, verb)


def scs_stream(req: SCSRequest, release=None) -> Iterator[bytes]:
    """The VOTable of a valid request over all located galaxies or the rows of `release`."""
    from catalog.models import Galaxy, ReleaseRow

    if release is not None:
        base = ReleaseRow.objects.filter(release=release)
        names = [n for n in VERB_COLUMNS[req.verb] if n in (release.columns or DEFAULT_LIST_COLUMNS) or n in SCS_UCDS]
    else:
        base = Galaxy.objects.located()
        names = list(VERB_COLUMNS[req.verb])
    metadata_only = req.sr == 0
    qs = galaxies_in_cone(req.ra, req.dec, max(req.sr, 1e-9), base)
    source = table_source(qs, release)
    columns = [BY_NAME[n] for n in names] + [DISTANCE]
    source.prepare(columns)
    provenance = {"cone": f"RA={req.ra:g} DEC={req.dec:g} SR={req.sr:g} deg", "VERB": req.verb}
    if release is not None:
        provenance.update({"release": f"{release.name} v{release.version} ({release.slug})", "citation": release.citation})
    return stream_votable(
        source,
        columns,
        provenance,
        ucds=SCS_UCDS,
        table_name="results",
        description=f"{conf.SITE_NAME} cone search (IVOA SCS 1.03)",
        with_rows=not metadata_only,
    )


def scs_error(message: str) -> bytes:
    return votable_error(message)
