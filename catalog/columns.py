"""The column registry: one description of every catalog column.

Model fields, forms, admin, API schema and the CSV/VOTable/FITS exports all read units, UCDs
and descriptions from here, so they can never disagree. The columns are those of the
Extragalactic Distance Database's "CF4 initial candidates" table (Kourkchi et al. 2020,
ApJ 902, 145; photometry from Kourkchi et al. 2019, ApJ 884, 82), with lower-case names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from django.db.models import F

BANDS_SDSS = ("u", "g", "r", "i", "z")
BANDS_WISE = ("w1", "w2")


@dataclass(frozen=True)
class Column:
    """One catalog column.

    kind: "int", "float", "str", "bool" (0/1 in tables) or "flag" (a letter when set, blank when not).
    zero_is_null: the EDD table writes 0 for "not measured"; such zeros are stored as NULL.
    """

    name: str
    source: str
    kind: str
    unit: str
    ucd: str
    description: str
    group: str
    zero_is_null: bool = False
    letter: str = ""
    fmt: str = ""

    @property
    def label(self) -> str:
        return f"{self.name} [{self.unit}]" if self.unit else self.name

    @property
    def help_text(self) -> str:
        return f"{self.description} [{self.unit}]" if self.unit else self.description


@dataclass(frozen=True)
class DerivedColumn(Column):
    """A column computed from other apps' rows (consensus, CNN, fits), not stored on the galaxy.

    expression: () -> a Django expression over Galaxy rows (a Subquery on OuterRef("pk")), so a
    whole table of them is one SQL statement, never a query per row.
    stored: the lookup from Galaxy to the column's copy in its app's per-galaxy summary table
    ("consensus_summary__consensus_inc"), kept by that app's writers with
    catalog.summaries.refresh_summary; tables read it through one join. Empty: the column is
    read through `expression` (a correlated subquery per row, slow on filters and sorts of 1M rows).
    """

    expression: Callable[[], Any] | None = None
    stored: str = ""

    def annotation(self, *, join: bool = True) -> Any:
        """What tables read for this column: the summary copy when there is one, else the subquery.

        join: read the copy through a LEFT JOIN (filters, sorts, whole-table downloads: one merge
        join); else through a primary-key lookup per row, which PostgreSQL evaluates after ORDER
        BY ... LIMIT, so a page of 50 costs 50 lookups whatever the table's size."""
        if not self.stored:
            return self.expression()
        if join:
            return F(self.stored)
        from django.db.models import OuterRef, Subquery

        from catalog.models import Galaxy

        summary, field = self.stored.split("__", 1)
        model = Galaxy._meta.get_field(summary).related_model
        return Subquery(model.objects.filter(pk=OuterRef("pk")).values(field)[:1])


def derived(
    name: str, kind: str, unit: str, ucd: str, description: str, group: str, expression, fmt: str = "", summary: str = ""
) -> DerivedColumn:
    """A DerivedColumn (the helper the apps' column modules use); summary: the related name of the
    app's per-galaxy summary model, whose field of the same name holds a copy of the value."""
    stored = f"{summary}__{name}" if summary else ""
    return DerivedColumn(name, name, kind, unit, ucd, description, group, fmt=fmt, expression=expression, stored=stored)


def _c(name, source, kind, unit, ucd, description, group, zero_is_null=False, letter="", fmt=""):
    return Column(name, source, kind, unit, ucd, description, group, zero_is_null, letter, fmt)


_POSITION = [
    _c("pgc", "pgc", "int", "", "meta.id;meta.main", "Principal Galaxies Catalogue number (HyperLEDA)", "position"),
    _c("ra", "ra", "float", "deg", "pos.eq.ra;meta.main", "Right ascension (ICRS, J2000)", "position", fmt=".5f"),
    _c("dec", "dec", "float", "deg", "pos.eq.dec;meta.main", "Declination (ICRS, J2000)", "position", fmt=".5f"),
    _c("gl", "gl", "float", "deg", "pos.galactic.lon", "Galactic longitude", "position", fmt=".4f"),
    _c("gb", "gb", "float", "deg", "pos.galactic.lat", "Galactic latitude", "position", fmt=".4f"),
    _c("sgl", "sgl", "float", "deg", "pos.supergalactic.lon", "Supergalactic longitude", "position", fmt=".4f"),
    _c("sgb", "sgb", "float", "deg", "pos.supergalactic.lat", "Supergalactic latitude", "position", fmt=".4f"),
]

_GLOBAL = [
    _c("vhel", "Vhel", "float", "km/s", "spect.dopplerVeloc.opt;pos.heliocentric", "Heliocentric velocity", "velocity", fmt=".1f"),
    _c("vls", "Vls", "float", "km/s", "spect.dopplerVeloc.opt;pos.lsr", "Velocity in the Local Sheet frame", "velocity", fmt=".1f"),
    _c(
        "d25",
        "d25",
        "float",
        "arcmin",
        "phys.angSize;src",
        "Major-axis diameter at the 25 mag/arcsec^2 B-band isophote",
        "shape",
        True,
        fmt=".2f",
    ),
    _c("b_a", "b_a", "float", "", "phys.size.axisRatio", "Axis ratio b/a (HyperLEDA)", "shape", True, fmt=".2f"),
    _c("pa", "pa", "float", "deg", "pos.posAng", "Position angle of the major axis, east of north", "shape", fmt=".1f"),
    _c("ty", "ty", "float", "", "src.morph.type", "Numerical morphological type T", "shape", fmt=".1f"),
    _c("type", "type", "str", "", "src.morph.type", "Morphological type", "shape"),
    _c("sdss", "sdss", "bool", "", "meta.code", "SDSS imaging available", "quality"),
    _c("alfa100", "alfa100", "bool", "", "meta.code", "Detected in the ALFALFA 100% HI survey", "quality"),
    _c("qa_sdss", "QA_sdss", "bool", "", "meta.code.qual", "SDSS photometry quality-assessed", "quality"),
    _c("qa_wise", "QA_wise", "bool", "", "meta.code.qual", "WISE photometry quality-assessed", "quality"),
    _c("ebv", "ebv", "float", "mag", "phot.color.excess", "Galactic reddening E(B-V)", "extinction", True, fmt=".3f"),
]

# Per-band photometry: (prefix or suffix pattern, unit, ucd, description, fmt)
_PHOT_SPECS = [
    ("{b}_mag", "mag", "phot.mag", "Total (asymptotic) magnitude in {B}", ".2f"),
    ("{b}_Rasy", "arcmin", "phys.angSize", "Radius at which the {B} growth curve reaches its asymptote", ".2f"),
    ("A_{b}", "mag", "phys.absorption.gal", "Galactic extinction in {B}", ".3f"),
]
_SB_SPECS = [
    ("mu0_{b}", "mag/arcsec2", "phot.mag.sb", "Central surface brightness in {B}", ".2f"),
    ("mu50_{b}", "mag/arcsec2", "phot.mag.sb", "Mean surface brightness within the half-light radius in {B}", ".2f"),
    ("mu90_{b}", "mag/arcsec2", "phot.mag.sb", "Surface brightness at the 90% light radius in {B}", ".2f"),
    ("m255_{b}", "mag", "phot.mag", "Magnitude within the 25.5 mag/arcsec^2 isophote in {B}", ".2f"),
    ("disc_mu0_{b}", "mag/arcsec2", "phot.mag.sb", "Central surface brightness of the fitted exponential disk in {B}", ".2f"),
    ("h_{b}", "arcmin", "phys.angSize", "Scale length of the fitted exponential disk in {B}", ".2f"),
    ("R50_{b}", "arcmin", "phys.angSize", "Half-light radius in {B}", ".2f"),
    ("R90_{b}", "arcmin", "phys.angSize", "Radius enclosing 90% of the light in {B}", ".2f"),
    ("R255_{b}", "arcmin", "phys.angSize", "Radius of the 25.5 mag/arcsec^2 isophote in {B}", ".2f"),
    ("C82_{b}", "", "phys.size;arith.ratio", "Concentration index R80/R20 in {B}", ".2f"),
    ("d_m_ext_{b}", "mag", "phot.mag;arith.diff", "Magnitude correction for extrapolation to infinity in {B}", ".4f"),
]


# UCD words of the bands: the IVOA list has no SDSS letters; g and z map to the nearest
# Johnson-Cousins words (as VizieR labels SDSS photometry), W1/W2 (3.4 and 4.6 um) to em.IR.3-4um/4-8um.
_BAND_UCD = {"u": "em.opt.U", "g": "em.opt.B", "r": "em.opt.R", "i": "em.opt.I", "z": "em.opt.I", "w1": "em.IR.3-4um", "w2": "em.IR.4-8um"}


def _band_name(b: str) -> str:
    return f"SDSS {b}" if b in BANDS_SDSS else f"WISE {b.upper()}"


def _band_columns(bands, specs, group_prefix):
    out = []
    for pattern, unit, ucd, desc, fmt in specs:
        for b in bands:
            source = pattern.format(b=b)
            band_ucd = f"{ucd};{_BAND_UCD[b]}"
            out.append(
                _c(source.lower(), source, "float", unit, band_ucd, desc.format(B=_band_name(b)), f"{group_prefix}_{b}", True, fmt=fmt)
            )
    return out


_SDSS_PHOT = _band_columns(BANDS_SDSS, _PHOT_SPECS, "sdss")
_SDSS_SHAPE = [
    _c("sba", "Sba", "float", "", "phys.size.axisRatio", "Axis ratio b/a from SDSS photometry", "sdss_shape", True, fmt=".2f"),
    _c("spa", "Spa", "float", "deg", "pos.posAng", "Position angle from SDSS photometry, east of north", "sdss_shape", True, fmt=".1f"),
]
_SDSS_SB = _band_columns(BANDS_SDSS, _SB_SPECS, "sdss")
_WISE_PHOT = _band_columns(BANDS_WISE, _PHOT_SPECS, "wise")
_WISE_SHAPE = [
    _c("wba", "Wba", "float", "", "phys.size.axisRatio", "Axis ratio b/a from WISE photometry", "wise_shape", True, fmt=".2f"),
    _c("wpa", "Wpa", "float", "deg", "pos.posAng", "Position angle from WISE photometry, east of north", "wise_shape", True, fmt=".1f"),
]
_WISE_SB = _band_columns(BANDS_WISE, _SB_SPECS, "wise")

_QUALITY = [
    _c("sqlt", "Sqlt", "int", "", "meta.code.qual", "Quality of the SDSS photometry (0 = none, 5 = best)", "quality"),
    _c("wqlt", "Wqlt", "int", "", "meta.code.qual", "Quality of the WISE photometry (0 = none, 5 = best)", "quality"),
    _c("dst", "dst", "flag", "", "meta.code", "Disturbed", "quality", letter="D"),
    _c("trl", "trl", "flag", "", "meta.code", "Trailing arm or tidal tail", "quality", letter="T"),
    _c("nsp", "nsp", "flag", "", "meta.code", "Not a spiral", "quality", letter="S"),
    _c("fon", "fon", "flag", "", "meta.code", "Face-on", "quality", letter="F"),
    _c("fnt", "fnt", "flag", "", "meta.code", "Faint", "quality", letter="N"),
    _c("cwd", "cwd", "flag", "", "meta.code", "Crowded field", "quality", letter="C"),
    _c("ovm", "ovm", "flag", "", "meta.code", "Over-masked", "quality", letter="O"),
    _c("fov", "fov", "flag", "", "meta.code", "Larger than the field of view", "quality", letter="V"),
    _c("mlp", "mlp", "flag", "", "meta.code", "Multiple galaxies", "quality", letter="M"),
    _c("bts", "bts", "flag", "", "meta.code", "Bright star nearby", "quality", letter="B"),
    _c("unc", "unc", "flag", "", "meta.code", "Uncertain photometry", "quality", letter="U"),
    _c("note", "note", "str", "", "meta.note", "Photometry note", "quality"),
]

_INCLINATION = [
    _c("inc", "inc", "float", "deg", "src.orbital.inclination", "Published (EDD) inclination", "inclination", True, fmt=".0f"),
    _c(
        "inc_e",
        "inc_e",
        "float",
        "deg",
        "stat.error;src.orbital.inclination",
        "Error of the published inclination",
        "inclination",
        True,
        fmt=".0f",
    ),
    _c("inc_flg", "inc_flg", "int", "", "meta.code", "Inclination flag (0 = accepted, 1 = rejected or unsure)", "inclination"),
    _c("inc_n", "inc_n", "int", "", "meta.number", "Number of inclination measurements", "inclination"),
    _c("inc_note", "inc_note", "str", "", "meta.note", "Inclination note", "inclination"),
]

COLUMNS: tuple[Column, ...] = tuple(
    _POSITION + _GLOBAL + _SDSS_PHOT + _SDSS_SHAPE + _SDSS_SB + _WISE_PHOT + _WISE_SHAPE + _WISE_SB + _QUALITY + _INCLINATION
)
BY_NAME: dict[str, Column] = {c.name: c for c in COLUMNS}
BY_SOURCE: dict[str, Column] = {c.source.lower(): c for c in COLUMNS}

# Columns computed by the catalog itself, not read from tables.
DERIVED: tuple[Column, ...] = (
    _c("healpix", "healpix", "int", "", "pos.healpix", "HEALPix nested index at depth 29 of (ra, dec)", "position"),
)

GROUP_TITLES = {
    "consensus": "Volunteer consensus",
    "cnn": "CNN (active model)",
    "fit": "Profile fit (latest)",
    "position": "Position",
    "velocity": "Velocity",
    "shape": "Size, shape and type",
    "extinction": "Extinction",
    "quality": "Quality flags",
    "inclination": "Inclination (EDD)",
    "sdss_shape": "SDSS shape",
    "wise_shape": "WISE shape",
    **{f"sdss_{b}": f"SDSS {b} photometry" for b in BANDS_SDSS},
    **{f"wise_{b}": f"WISE {b.upper()} photometry" for b in BANDS_WISE},
}

# Columns shown by default in lists and downloads.
DEFAULT_LIST_COLUMNS = ("pgc", "ra", "dec", "vhel", "d25", "b_a", "pa", "type", "inc", "inc_e", "inc_flg")


_derived_cache: dict[tuple[str, ...], tuple[DerivedColumn, ...]] = {}


def derived_columns() -> tuple[DerivedColumn, ...]:
    """The derived columns the installed apps contribute: GALCAT_DERIVED_COLUMNS lists dotted
    paths of callables returning DerivedColumns (zoo: consensus, ml: CNN and axis ratio, fitting:
    the latest fit), loaded once per value of the setting. The catalog imports none of those apps."""
    from django.utils.module_loading import import_string

    from catalog.conf import conf

    paths = tuple(conf.DERIVED_COLUMNS)
    if paths not in _derived_cache:
        cols: list[DerivedColumn] = []
        for path in paths:
            cols.extend(import_string(path)())
        clash = [c.name for c in cols if c.name in BY_NAME or [d.name for d in cols].count(c.name) > 1]
        if clash:
            raise ValueError(f"derived column names clash with other columns: {', '.join(sorted(set(clash)))}")
        _derived_cache[paths] = tuple(cols)
    return _derived_cache[paths]


def all_columns() -> tuple[Column, ...]:
    """Every column a table can have: the stored registry columns, then the derived ones."""
    return COLUMNS + derived_columns()


def derived_by_name() -> dict[str, DerivedColumn]:
    return {c.name: c for c in derived_columns()}


def column(name: str) -> Column:
    """The column called `name` (registry name, EDD header or derived column, any case); KeyError if unknown."""
    key = name.strip()
    if key in BY_NAME:
        return BY_NAME[key]
    if key.lower() in BY_SOURCE:
        return BY_SOURCE[key.lower()]
    extra = derived_by_name()
    if key.lower() in extra:
        return extra[key.lower()]
    raise KeyError(f"unknown column {name!r}")


def resolve_columns(names: list[str] | str | None, default: tuple[str, ...] = DEFAULT_LIST_COLUMNS) -> list[Column]:
    """Columns for a comma-separated list or list of names ('all': every column, the derived ones
    included); ValueError naming unknown ones."""
    if names is None or names == "" or names == []:
        return [column(n) for n in default]
    if isinstance(names, str):
        names = [n for n in names.split(",") if n.strip()]
    if len(names) == 1 and names[0].strip().lower() == "all":
        return list(all_columns())
    out: list[Column] = []
    unknown = []
    for n in names:
        try:
            c = column(n)
        except KeyError:
            unknown.append(n)
            continue
        if c not in out:
            out.append(c)
    if unknown:
        raise ValueError(f"unknown column(s): {', '.join(unknown)}")
    return out


def with_columns(queryset, columns: Iterable[Column | str], *, join: bool = False):
    """`queryset` (of galaxies) with the derived columns among `columns` annotated under their names.
    join: read summary copies through joins (whole tables), not per-row lookups (pages); see
    DerivedColumn.annotation."""
    extra = derived_by_name()
    wanted = {}
    for c in columns:
        name = c.name if isinstance(c, Column) else str(c)
        if name in extra and name not in queryset.query.annotations:
            wanted[name] = extra[name].annotation(join=join)
    return queryset.annotate(**wanted) if wanted else queryset


def rows_by_keys(queryset, sliced) -> list:
    """The rows of `queryset` (annotated, e.g. with with_columns) whose primary keys `sliced`
    lists, in that order (dicts: `queryset` is a values() queryset).

    Pages sorted by a derived column fetch their keys first with `sliced` = the ordered, filtered
    queryset's values_list("pk", flat=True)[a:b]: without the page's per-row lookups in its select
    list PostgreSQL sorts the join of the summary table in parallel with a bounded top-N sort; then
    this loads the page's few rows with their columns."""
    pks = list(sliced)
    pk = queryset.model._meta.pk.attname
    by_pk = {g[pk]: g for g in queryset.filter(pk__in=pks).order_by()}
    return [by_pk[pk] for pk in pks if pk in by_pk]
