"""Downloads of any query or release as CSV, VOTable or FITS, streamed with constant memory.

`stream_table` is the one entry point (download views, the REST API's renderers, the
export_table command, the IVOA cone search): it yields the bytes of the file. Every column
carries its unit, UCD and description from the column registry; the provenance (query,
release, citation, date, row count) travels in the header.
"""

from __future__ import annotations

from collections.abc import Iterator

from catalog.exports.source import DISTANCE, ExportError, TableSource, table_source

FORMATS = ("csv", "votable", "fits")
CONTENT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "votable": "application/x-votable+xml",
    "fits": "application/fits",
}
EXTENSIONS = {"csv": "csv", "votable": "vot.xml", "fits": "fits"}

__all__ = [
    "CONTENT_TYPES",
    "DISTANCE",
    "EXTENSIONS",
    "FORMATS",
    "ExportError",
    "TableSource",
    "export_response",
    "stream_table",
    "table_source",
]


def stream_table(queryset_or_release, fmt: str, columns=None, provenance: dict | None = None, *, release=None) -> Iterator[bytes]:
    """Bytes of `queryset_or_release` (a Galaxy queryset, a Release, or a ReleaseRow queryset of
    `release`) in format `fmt` (csv, votable, fits), restricted to `columns` (names, comma-separated
    or a list; None for the defaults). Raises ExportError before yielding anything for bad input."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}: choose one of {', '.join(FORMATS)}")
    source = table_source(queryset_or_release, release)
    if source.release is not None:
        r = source.release
        provenance = {"release": f"{r.name} v{r.version} ({r.slug})", "citation": r.citation, **(provenance or {})}
    cols = source.resolve(columns)
    source.prepare(cols)
    if fmt == "csv":
        from catalog.exports.csv import stream_csv

        return stream_csv(source, cols, provenance)
    if fmt == "votable":
        from catalog.exports.votable import stream_votable

        return stream_votable(source, cols, provenance)
    from catalog.exports.fits import stream_fits

    return stream_fits(source, cols, provenance)


def export_response(
    queryset_or_release, fmt: str, columns=None, provenance: dict | None = None, *, filename: str = "galaxies", release=None
):
    """A StreamingHttpResponse downloading `stream_table(...)` as `<filename>.<extension>`.

    Raises ExportError (before any byte is sent) for an unknown format or column."""
    from django.http import StreamingHttpResponse

    body = stream_table(queryset_or_release, fmt, columns, provenance, release=release)
    response = StreamingHttpResponse(body, content_type=CONTENT_TYPES[fmt])
    response["Content-Disposition"] = f'attachment; filename="{filename}.{EXTENSIONS[fmt]}"'
    return response
