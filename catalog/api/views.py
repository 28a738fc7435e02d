"""Viewsets of the API: thin, each parses input, calls one catalog function and answers."""

from __future__ import annotations

from django.contrib.auth import authenticate
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Count, Prefetch, QuerySet
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import exceptions, mixins, status, viewsets
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.renderers import BrowsableAPIRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from catalog import jobs as jobs_module
from catalog.api import serializers as s
from catalog.api.errors import body_from_detail
from catalog.api.pagination import KeysetPagination
from catalog.api.permissions import IsVolunteer, ReadAnyoneWriteMember
from catalog.api.renderers import TABLE_FORMATS, CSVRenderer, VOTableRenderer, export_response
from catalog.api.tokens import issue_token, revoke_token, token_for
from catalog.api.uploads import UploadError, store_uploaded_image
from catalog.columns import BY_NAME, COLUMNS, DEFAULT_LIST_COLUMNS, DERIVED, resolve_columns
from catalog.filters import SORTABLE, GalaxyFilter
from catalog.models import Galaxy, Image, InclinationVote, Job, Release, ReleaseRow
from catalog.roles import is_curator, is_member
from catalog.voting import RateLimited, VoteError, record_vote

JSON_RENDERERS = [JSONRenderer, BrowsableAPIRenderer]
TABLE_RENDERERS = [CSVRenderer, VOTableRenderer]
ERROR_RESPONSES = {
    400: OpenApiResponse(description="Bad input: JSON with message and the offending field"),
    429: OpenApiResponse(description="Too many requests: JSON error, with Retry-After [s]"),
}


class ApiError(exceptions.APIException):
    """An error with a status and the offending field, in the API's error format."""

    def __init__(self, message: str, *, status_code: int = 400, field: str | None = None, code: str = "invalid"):
        self.status_code = status_code
        super().__init__({field: [message]} if field else {"non_field_errors": [message]}, code)


class TableListMixin:
    """List endpoints that also answer CSV and VOTable (?format=csv|votable or Accept)."""

    table_name = "table"

    def get_renderers(self):
        classes = JSON_RENDERERS + (TABLE_RENDERERS if getattr(self, "action", None) in self.table_actions else [])
        return [cls() for cls in classes]

    table_actions: tuple[str, ...] = ("list",)

    def wants_table(self, request: Request) -> str | None:
        fmt = getattr(request.accepted_renderer, "format", None)
        return fmt if fmt in TABLE_FORMATS else None


# ---------------------------------------------------------------------------------------------
# Galaxies
# ---------------------------------------------------------------------------------------------
class GalaxyFilterBackend(DjangoFilterBackend):
    """The browse page's GalaxyFilter; its errors answer 400 naming the parameter.

    The API also takes the cone centre as ``ra``/``dec`` (aliases of ra_center/dec_center).
    """

    def get_filterset_kwargs(self, request, queryset, view):
        kwargs = super().get_filterset_kwargs(request, queryset, view)
        data = kwargs["data"].copy()
        for alias, name in (("ra", "ra_center"), ("dec", "dec_center")):
            if alias in data and name not in data:
                data[name] = data[alias]
        kwargs["data"] = data
        return kwargs

    def filter_queryset(self, request, queryset, view):
        filterset = self.get_filterset(request, queryset, view)
        if filterset is None:
            return queryset
        if not filterset.is_valid():
            errors = {k: [str(m) for m in v] for k, v in filterset.errors.items()}
            raise exceptions.ValidationError({(k if k != "__all__" else "non_field_errors"): v for k, v in errors.items()})
        try:
            qs = filterset.qs
        except DjangoValidationError as exc:
            raise exceptions.ValidationError({"radius": exc.messages}) from None
        view.cone = filterset.cone
        return qs

    def get_schema_operation_parameters(self, view):
        params = super().get_schema_operation_parameters(view)
        params = [p for p in params if p["name"] != "ordering"]  # described by the paginator
        for alias, name in (("ra", "ra_center"), ("dec", "dec_center")):
            desc = next((p.get("description", "") for p in params if p["name"] == name), "")
            params.append(
                {
                    "name": alias,
                    "required": False,
                    "in": "query",
                    "description": f"{desc} (alias of {name})",
                    "schema": {"type": "number"},
                }
            )
        return params


FIELDS_PARAM = OpenApiParameter(
    "fields",
    OpenApiTypes.STR,
    description=(
        "Comma-separated columns to return (registry names, e.g. pgc,ra,dec,inc); default "
        + ",".join(DEFAULT_LIST_COLUMNS)
        + "; 'all' for every column. 'distance' [deg] is added in cone searches."
    ),
)
FORMAT_PARAM = OpenApiParameter("format", OpenApiTypes.STR, enum=["json", "csv", "votable"], description="Answer format")


def _selected_columns(request: Request) -> list:
    raw = request.query_params.get("fields")
    if raw and raw.strip().lower() == "all":
        return list(COLUMNS)
    names = [n.strip() for n in (raw or "").split(",") if n.strip() and n.strip() not in ("distance", "url")]
    if raw and not names:
        names = list(DEFAULT_LIST_COLUMNS)
    try:
        return resolve_columns(names or None)
    except ValueError as exc:
        raise ApiError(str(exc), field="fields") from None


@extend_schema_view(
    list=extend_schema(
        summary="Search galaxies",
        description=(
            "Galaxies filtered with the browse page's filters (ranges `<col>_min`/`<col>_max` in the column's unit, "
            "`q` name or position, cone `ra`/`dec`/`radius` in deg), sorted by `ordering`, paginated by cursor. "
            "CSV and VOTable with `?format=csv|votable` stream every matching row (no pagination)."
        ),
        parameters=[FIELDS_PARAM, FORMAT_PARAM],
        responses={200: s.GalaxySerializer(many=True), **ERROR_RESPONSES},
    ),
    retrieve=extend_schema(
        summary="One galaxy",
        description="Every column, aliases, images, consensus inclination, CNN predictions and profile fits.",
        responses={200: s.GalaxyDetailSerializer, 404: OpenApiResponse(description="No such galaxy")},
    ),
)
class GalaxyViewSet(TableListMixin, viewsets.ReadOnlyModelViewSet):
    permission_classes = [AllowAny]
    pagination_class = KeysetPagination
    filter_backends = [GalaxyFilterBackend]
    filterset_class = GalaxyFilter
    lookup_field = "pgc"
    lookup_value_regex = r"[0-9]{1,10}"
    ordering_fields = (*SORTABLE, "distance")
    table_name = "galaxies"
    cone = None

    def get_queryset(self) -> QuerySet:
        if self.action == "retrieve":
            images = Image.objects.all() if is_member(self.request.user) else Image.objects.filter(is_public=True)
            return Galaxy.objects.prefetch_related("names", Prefetch("images", queryset=images, to_attr="visible_images")).annotate(
                vote_count=Count("votes", distinct=True)
            )
        return Galaxy.objects.all()

    def get_serializer_class(self):
        return s.GalaxyDetailSerializer if self.action == "retrieve" else s.GalaxySerializer

    def get_default_ordering(self) -> str:
        return "distance" if self.cone is not None else "pgc"

    def get_object(self):
        try:
            return super().get_object()
        except exceptions.NotFound:
            raise exceptions.NotFound(f"PGC {self.kwargs.get('pgc')} is not in the catalog") from None

    def list(self, request: Request, *args, **kwargs) -> Response:
        columns = _selected_columns(request)
        qs = self.filter_queryset(self.get_queryset())
        fmt = self.wants_table(request)
        if fmt:
            return export_response(
                qs, columns, fmt, request=request, filename=f"galaxies.{'xml' if fmt == 'votable' else fmt}",
                provenance={"query": request.GET.urlencode()},
            )
        names = {c.name for c in columns}
        qs = qs.only(*(n for n in names if n != "pgc"))
        page = self.paginate_queryset(qs)
        fields = names | {"url"} | ({"distance"} if self.cone is not None else set())
        for g in page:
            g.distance = getattr(g, "distance_deg", None)
        data = s.GalaxySerializer(page, many=True, context={**self.get_serializer_context(), "fields": fields}).data
        return self.get_paginated_response(data)
