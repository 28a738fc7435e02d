"""CSV and VOTable on the API's list endpoints, written by the catalog's export code.

The renderers only announce the formats (content negotiation, ``?format=csv``,
``?format=votable`` or ``?format=fits``, and the OpenAPI schema); a list view answering one of them hands its
filtered queryset to :func:`export_response`, which streams it through catalog.exports, so the
API and the download links can never write two different tables.
"""

from __future__ import annotations

import json
from typing import Any

from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from rest_framework.exceptions import ValidationError
from rest_framework.renderers import BaseRenderer

TABLE_FORMATS = ("csv", "votable", "fits")


class _TableRenderer(BaseRenderer):
    charset = "utf-8"

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: dict | None = None) -> bytes:
        # Views stream tables themselves; anything that still reaches a renderer (an error body)
        # is written as JSON text rather than lost.
        return json.dumps(data, default=str).encode("utf-8")


class CSVRenderer(_TableRenderer):
    """Comma-separated values with a '#' provenance header, one row per galaxy."""

    media_type = "text/csv"
    format = "csv"


class VOTableRenderer(_TableRenderer):
    """IVOA VOTable 1.4 (TABLEDATA), every column with unit, UCD and description."""

    media_type = "application/x-votable+xml"
    format = "votable"


class FITSRenderer(_TableRenderer):
    """FITS binary table, every column with unit and description."""

    media_type = "application/fits"
    format = "fits"


def export_response(
    obj: QuerySet | Any,
    fmt: str,
    *,
    fields: str | None,
    filename: str,
    provenance: dict[str, Any] | None = None,
    release=None,
) -> StreamingHttpResponse:
    """A streamed table of `obj` (a Galaxy queryset or a Release) written by catalog.exports;
    a 400 naming `fields` for a column the table does not have."""
    from catalog.exports import ExportError
    from catalog.exports import export_response as stream_download

    try:
        return stream_download(obj, fmt, fields or None, provenance, filename=filename, release=release)
    except ExportError as exc:
        raise ValidationError({"fields": [str(exc)]}) from None
