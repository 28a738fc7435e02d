"""Keyset ("cursor") pagination that stays fast on millions of rows and any sort column.

The order is (column, primary key), NULLs last in both directions; the cursor is an opaque
token holding the last row's (value, key), so the next page is one indexed range query
whatever its depth. The view names the sortable columns in ``ordering_fields`` and a default
``ordering``; clients choose with ``?ordering=col`` or ``?ordering=-col`` and the page size with
``?page_size=`` (1 to ``max_page_size``).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections import OrderedDict
from typing import Any

from django.core.exceptions import FieldDoesNotExist, ValidationError
from django.db.models import F, Q, QuerySet
from rest_framework.exceptions import ValidationError as ApiValidationError
from rest_framework.pagination import BasePagination
from rest_framework.response import Response
from rest_framework.utils.urls import remove_query_param, replace_query_param

ORDERING_PARAM = "ordering"


def _json_default(value: Any) -> Any:
    """Full-precision JSON for cursor values (DjangoJSONEncoder would cut microseconds)."""
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


BIGINT = 2**63


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a cursor value")


def _plain(value: Any) -> bool:
    """A value a cursor may hold: null, a string without NUL, a finite number within 64 bits."""
    if value is None or isinstance(value, bool):
        return True
    if isinstance(value, str):
        return "\x00" not in value and len(value) <= 200
    if isinstance(value, int):
        return -BIGINT <= value < BIGINT
    if isinstance(value, float):
        return math.isfinite(value)
    return False


def _invalid(field: str, message: str) -> ApiValidationError:
    return ApiValidationError({field: [message]})


def parse_ordering(value: str | None, allowed: tuple[str, ...] | list[str], default: str) -> tuple[str, bool]:
    """(column, descending) from "col" or "-col"; a 400 naming `ordering` for unknown columns."""
    text = (value or default).strip()
    descending = text.startswith("-")
    name = text.lstrip("-+")
    if "," in name:
        raise _invalid(ORDERING_PARAM, "order by one column (the primary key breaks ties)")
    if name not in allowed:
        raise _invalid(ORDERING_PARAM, f"cannot order by {name!r}; choose one of: {', '.join(sorted(allowed))}")
    return name, descending


def _field(row: Any, name: str) -> Any:
    """A column of a page's row: a model instance, or a dict from a values() queryset."""
    return row[name] if isinstance(row, dict) else getattr(row, name)


class KeysetPagination(BasePagination):
    """Cursor pagination on (ordering column, primary key)."""

    page_size = 100
    max_page_size = 1000
    cursor_query_param = "cursor"
    page_size_query_param = "page_size"

    def __init__(self) -> None:
        self.next_cursor: str | None = None
        self.request = None

    # -- parameters --------------------------------------------------------------------------
    def get_page_size(self, request) -> int:
        raw = request.query_params.get(self.page_size_query_param)
        if raw in (None, ""):
            return self.page_size
        try:
            size = int(raw)
        except ValueError:
            raise _invalid(self.page_size_query_param, f"page_size must be an integer, got {raw!r}") from None
        if not 1 <= size <= self.max_page_size:
            raise _invalid(self.page_size_query_param, f"page_size must be within [1, {self.max_page_size}], got {size}")
        return size

    def ordering_for(self, request, view) -> tuple[str, bool]:
        allowed = tuple(getattr(view, "ordering_fields", ()) or ())
        default = getattr(view, "default_ordering", None) or (allowed[0] if allowed else "pk")
        if hasattr(view, "get_default_ordering"):
            default = view.get_default_ordering()
        column, descending = parse_ordering(request.query_params.get(ORDERING_PARAM), allowed or (default.lstrip("-"),), default)
        if hasattr(view, "ordering_column"):
            column = view.ordering_column(column)  # the view maps names (e.g. distance) or refuses them
        return column, descending

    def _decode_cursor(self, raw: str) -> tuple[Any, Any]:
        """(value, key) of a cursor; 400 for anything a 'next' link cannot hold: a missing key,
        non-finite numbers (1e400, NaN), integers beyond 64 bits, nested values."""
        try:
            padded = raw + "=" * (-len(raw) % 4)
            data = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")).decode("utf-8"), parse_constant=_refuse_constant)
            value, key = data["v"], data["k"]
            if key is None or not all(_plain(x) for x in (value, key)):
                raise ValueError("not a cursor")
        except (ValueError, KeyError, TypeError, UnicodeError, binascii.Error):
            raise _invalid(self.cursor_query_param, "invalid cursor: use the 'next' link of the previous page") from None
        return value, key

    @staticmethod
    def _encode_cursor(value: Any, key: Any) -> str:
        text = json.dumps({"v": value, "k": key}, default=_json_default, separators=(",", ":"))
        return base64.urlsafe_b64encode(text.encode("utf-8")).decode("ascii").rstrip("=")

    # -- the query ---------------------------------------------------------------------------
    @staticmethod
    def _python_value(queryset: QuerySet, column: str, value: Any) -> Any:
        if value is None:
            return None
        try:
            field = queryset.model._meta.get_field(column)
        except FieldDoesNotExist:  # an annotation (e.g. distance): a number
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise _invalid("cursor", "invalid cursor: use the 'next' link of the previous page") from None
            return value
        try:
            result = field.to_python(value)
            if not _plain(result) and not hasattr(result, "isoformat"):
                raise ValueError("not a cursor value")
            return result
        except (ValidationError, OverflowError, ValueError, TypeError):
            raise _invalid("cursor", "invalid cursor: use the 'next' link of the previous page") from None

    def paginate_queryset(self, queryset: QuerySet, request, view=None) -> list:
        self.request = request
        size = self.get_page_size(request)
        column, descending = self.ordering_for(request, view)
        pk = queryset.model._meta.pk.attname
        qs = queryset
        if column == "pk" or column == pk:
            order = [f"-{pk}" if descending else pk]
            column = pk
        else:
            expr = F(column)
            order = [expr.desc(nulls_last=True) if descending else expr.asc(nulls_last=True), f"-{pk}" if descending else pk]
        raw = request.query_params.get(self.cursor_query_param)
        value = None
        if raw:
            value, key = self._decode_cursor(raw)
            value = self._python_value(queryset, column, value)
            key = self._python_value(queryset, pk, key)
            after_key = Q(**{f"{pk}__lt" if descending else f"{pk}__gt": key})
            if column == pk:
                qs = qs.filter(after_key)
            elif value is None:
                qs = qs.filter(Q(**{f"{column}__isnull": True}) & after_key)
            else:
                beyond = Q(**{f"{column}__lt" if descending else f"{column}__gt": value})
                tie = Q(**{column: value}) & after_key
                qs = qs.filter(beyond | tie | Q(**{f"{column}__isnull": True}))
        qs = qs.order_by(*order)
        # a view may read the first rows of its ordered query its own faster way (catalog cones)
        read = getattr(view, "first_rows", None) or (lambda q, n, *_: list(q[:n]))
        if column in queryset.query.annotations:
            # keys first, without the select list's other annotations (per-row lookups), then the rows
            keys = read(qs.values_list(pk, flat=True), size + 1, column, descending, value)
            by_key = {_field(r, pk): r for r in queryset.filter(**{f"{pk}__in": keys}).order_by()}
            rows = [by_key[k] for k in keys if k in by_key]
        else:
            rows = read(qs, size + 1, column, descending, value)
        self.next_cursor = None
        if len(rows) > size:
            rows = rows[:size]
            last = rows[-1]
            self.next_cursor = self._encode_cursor(_field(last, column), _field(last, pk))
        return rows

    # -- the answer --------------------------------------------------------------------------
    def get_next_link(self) -> str | None:
        if self.next_cursor is None:
            return None
        url = self.request.build_absolute_uri()
        return replace_query_param(url, self.cursor_query_param, self.next_cursor)

    def get_first_link(self) -> str:
        return remove_query_param(self.request.build_absolute_uri(), self.cursor_query_param)

    def get_paginated_response(self, data) -> Response:
        return Response(OrderedDict([("next", self.get_next_link()), ("first", self.get_first_link()), ("results", data)]))

    def get_paginated_response_schema(self, schema: dict) -> dict:
        return {
            "type": "object",
            "required": ["results"],
            "properties": {
                "next": {"type": "string", "nullable": True, "format": "uri", "description": "Link to the next page; null on the last"},
                "first": {"type": "string", "format": "uri", "description": "Link to the first page"},
                "results": {**schema, "description": "The rows of this page"},
            },
        }

    def get_schema_operation_parameters(self, view) -> list[dict]:
        allowed = sorted(getattr(view, "ordering_fields", ()) or ())
        params = [
            {
                "name": self.cursor_query_param,
                "required": False,
                "in": "query",
                "description": "Opaque position of the page: take it from the previous page's 'next' link",
                "schema": {"type": "string"},
            },
            {
                "name": self.page_size_query_param,
                "required": False,
                "in": "query",
                "description": f"Rows per page, 1 to {self.max_page_size} (default {self.page_size})",
                "schema": {"type": "integer", "minimum": 1, "maximum": self.max_page_size},
            },
        ]
        if allowed:
            params.append(
                {
                    "name": ORDERING_PARAM,
                    "required": False,
                    "in": "query",
                    "description": "Sort column, '-' in front for descending; NULLs come last. One of: " + ", ".join(allowed),
                    "schema": {"type": "string"},
                }
            )
        return params
