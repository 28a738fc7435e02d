"""CSV and VOTable on the API's list endpoints, written by the catalog's export code.

The renderers only announce the formats (content negotiation, ``?format=csv`` or
``?format=votable``, and the OpenAPI schema); a list view answering one of them hands its
filtered queryset to :func:`export_response`, which streams it through catalog.exports, so the
API and the download links can never write two different tables.
"""

from __future__ import annotations

import json
from typing import Any

from django.db.models import QuerySet
from django.http import HttpRequest, StreamingHttpResponse
from rest_framework.exceptions import NotAcceptable
from rest_framework.renderers import BaseRenderer

from catalog.columns import Column

TABLE_FORMATS = ("csv", "votable")


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


def export_response(
    queryset: QuerySet,
    columns: list[Column],
    fmt: str,
    *,
    request: HttpRequest,
    filename: str,
    provenance: dict[str, Any] | None = None,
    release=None,
) -> StreamingHttpResponse:
    """A streamed CSV or VOTable of `queryset` through catalog.exports."""
    try:
        from catalog import exports
    except ImportError:  # the export module is not in this build
        raise NotAcceptable(f"{fmt} tables are not available in this build; ask for JSON") from None
    return exports.stream_table(
        queryset, columns, fmt, request=request, filename=filename, provenance=provenance or {}, release=release
    )
