"""Viewsets of the API: thin, each parses input, calls one catalog function and answers."""

from __future__ import annotations

from django.contrib.auth import authenticate
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Prefetch, QuerySet
from django.http import Http404
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import exceptions, mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.permissions import AllowAny
from rest_framework.renderers import BrowsableAPIRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from catalog.api import serializers as s
from catalog.api.renderers import TABLE_FORMATS, CSVRenderer, FITSRenderer, VOTableRenderer, export_response
from catalog.api.tokens import issue_token, revoke_token, token_for
from catalog.api.uploads import UploadError, store_uploaded_image
from catalog.columns import DEFAULT_LIST_COLUMNS, all_columns, resolve_columns, with_columns
from catalog.cone import nearest_first
from catalog.conf import conf
from catalog.filters import SORTABLE, GalaxyFilter
from catalog.models import Galaxy, Image, ReleaseRow
from catalog.releases import visible_releases
from catalog.selectors import visible_images
from core.api.errors import ERROR_RESPONSES, ApiError, pgc_param
from core.api.pagination import KeysetPagination
from core.api.permissions import ReadAnyoneWriteMember
from core.api.throttles import UploadThrottle
from core.login_throttle import client_ip, login_blocked

JSON_RENDERERS = [JSONRenderer, BrowsableAPIRenderer]
TABLE_RENDERERS = [CSVRenderer, VOTableRenderer, FITSRenderer]


class TableListMixin:
    """List endpoints that also answer CSV, VOTable and FITS (?format=csv|votable|fits or Accept)."""

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

    The API also takes the cone centre as ``ra``/``dec`` (aliases of ra_center/dec_center). A
    parameter that is neither a filter nor one of OTHER_PARAMS or the paginator's answers 400
    naming it (a misspelt ``pgc_min`` must not return every galaxy).
    """

    OTHER_PARAMS = ("ra", "dec", "fields", "format")

    def get_filterset_kwargs(self, request, queryset, view):
        kwargs = super().get_filterset_kwargs(request, queryset, view)
        data = kwargs["data"].copy()
        for alias, name in (("ra", "ra_center"), ("dec", "dec_center")):
            if alias in data and name not in data:
                data[name] = data[alias]
        kwargs["data"] = data
        return kwargs

    def filter_queryset(self, request, queryset, view):
        if getattr(view, "action", None) != "list":
            return queryset  # a galaxy's own address finds it whatever the filters say
        filterset = self.get_filterset(request, queryset, view)
        if filterset is None:
            return queryset
        known = {*filterset.filters, *self.OTHER_PARAMS, *(p["name"] for p in view.paginator.get_schema_operation_parameters(view))}
        for name in request.query_params:
            if name not in known:
                raise ApiError(f"unknown parameter {name!r}: see the filters of GET /api/v1/galaxies/ in the API schema", field=name)
        if not filterset.is_valid():
            errors = {k: [str(m) for m in v] for k, v in filterset.errors.items()}
            raise exceptions.ValidationError({(k if k != "__all__" else "non_field_errors"): v for k, v in errors.items()})
        try:
            qs = filterset.qs
        except DjangoValidationError as exc:
            raise exceptions.ValidationError({"radius": exc.messages}) from None
        view.cone = filterset.cone
        return qs


FIELDS_PARAM = OpenApiParameter(
    "fields",
    OpenApiTypes.STR,
    description=(
        "Comma-separated columns to return (registry names, e.g. pgc,ra,dec,inc); default "
        + ",".join(DEFAULT_LIST_COLUMNS)
        + "; 'all' for every column. 'distance' [deg] is added in cone searches."
    ),
)
FORMAT_PARAM = OpenApiParameter(
    "format", OpenApiTypes.STR, enum=["json", "csv", "votable", "fits"], description="Answer format; tables stream every row"
)


def _selected_columns(request: Request) -> list:
    raw = request.query_params.get("fields")
    if raw and raw.strip().lower() == "all":
        return list(all_columns())
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
            "CSV, VOTable and FITS with `?format=csv|votable|fits` stream every matching row (no pagination)."
        ),
        parameters=[
            FIELDS_PARAM,
            FORMAT_PARAM,
            OpenApiParameter("ra", OpenApiTypes.NUMBER, description="Cone centre right ascension (ICRS) [deg] (alias of ra_center)"),
            OpenApiParameter("dec", OpenApiTypes.NUMBER, description="Cone centre declination (ICRS) [deg] (alias of dec_center)"),
        ],
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
            images = visible_images(self.request.user)
            return Galaxy.objects.prefetch_related("names", Prefetch("images", queryset=images, to_attr="visible_images"))
        return Galaxy.objects.all()

    def get_serializer_class(self):
        return s.GalaxyDetailSerializer if self.action == "retrieve" else s.GalaxySerializer

    def get_default_ordering(self) -> str:
        return "distance" if self.cone is not None else "pgc"

    def ordering_column(self, name: str) -> str:
        if name == "distance":
            if self.cone is None:
                raise ApiError("ordering by distance needs a cone (ra, dec, radius)", field="ordering")
            return "distance_deg"
        return name

    def first_rows(self, queryset: QuerySet, rows: int, column: str, descending: bool, after) -> list:
        """The first rows of a page's ordered query (see KeysetPagination): nearest first in a
        cone, from the smallest cone that holds them (catalog.cone.nearest_first; `after` is
        the distance the cursor starts from)."""
        if self.cone is not None and column == "distance_deg" and not descending:
            return nearest_first(queryset, self.cone.ra, self.cone.dec, self.cone.radius_deg, rows, beyond_deg=after or 0.0)
        return list(queryset[:rows])

    def get_object(self):
        try:
            return super().get_object()
        except (exceptions.NotFound, Http404):
            raise exceptions.NotFound(f"PGC {self.kwargs.get('pgc')} is not in the catalog") from None

    def list(self, request: Request, *args, **kwargs) -> Response:
        qs = self.filter_queryset(self.get_queryset())
        fmt = self.wants_table(request)
        if fmt:
            fields = request.query_params.get("fields")
            return export_response(qs, fmt, fields=fields, filename="galaxies", provenance={"query": request.GET.urlencode()})
        columns = _selected_columns(request)
        names = {c.name for c in columns}
        sort_key = (request.query_params.get("ordering") or "").lstrip("-")
        qs = with_columns(with_columns(qs, [sort_key], join=True), names)  # sorted through a join, shown by lookups
        # Rows as dicts of only the columns shown (and the sort key, for the cursor): building
        # model instances of the 143-column galaxy took about 40 % of the request's CPU.
        selected = {"pgc", *names, *([sort_key] if sort_key in SORTABLE else [])}
        if self.cone is not None:
            selected.add("distance_deg")
        page = self.paginate_queryset(qs.values(*selected))
        fields = names | {"url"} | ({"distance"} if self.cone is not None else set())
        for g in page:
            g["distance"] = g.get("distance_deg")
        data = s.GalaxySerializer(page, many=True, context={**self.get_serializer_context(), "fields": fields}).data
        return self.get_paginated_response(data)


# ---------------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------------
@extend_schema_view(
    list=extend_schema(
        summary="Images",
        parameters=[
            OpenApiParameter("pgc", OpenApiTypes.INT, description="Only images of this galaxy"),
            OpenApiParameter("band", OpenApiTypes.STR, enum=list(Image.Band.values), description="Only this band"),
        ],
    ),
    retrieve=extend_schema(summary="One image"),
    create=extend_schema(
        summary="Upload an image (members)",
        request={"multipart/form-data": s.ImageUploadSerializer},
        responses={201: s.ImageSerializer, 200: s.ImageSerializer, **ERROR_RESPONSES, 403: OpenApiResponse(description="Not a member")},
    ),
)
class ImageViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    """Everyone reads public images; members read all and upload (multipart, field 'file')."""

    permission_classes = [ReadAnyoneWriteMember]
    pagination_class = KeysetPagination
    parser_classes = [MultiPartParser, FormParser]
    serializer_class = s.ImageSerializer
    ordering_fields = ("id", "created", "band")
    default_ordering = "id"
    lookup_value_regex = r"[0-9]{1,18}"

    def get_queryset(self) -> QuerySet:
        qs = visible_images(self.request.user)
        if self.action == "list":
            params = self.request.query_params
            if (pgc := pgc_param(params)) is not None:
                qs = qs.filter(galaxy_id=pgc)
            if params.get("band"):
                if params["band"] not in Image.Band.values:
                    raise ApiError(f"unknown band {params['band']!r}", field="band")
                qs = qs.filter(band=params["band"])
        return qs

    def get_throttles(self):
        return [*super().get_throttles(), *([UploadThrottle()] if self.action == "create" else [])]

    def create(self, request: Request, *args, **kwargs) -> Response:
        form = s.ImageUploadSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = dict(form.validated_data)
        upload = data.pop("file")
        limit = conf.UPLOAD_MAX_BYTES
        if upload.size > limit:  # refuse before reading the bytes into memory
            raise ApiError(f"file of {upload.size} bytes exceeds the upload limit of {limit} bytes", status_code=413, field="file")
        try:
            image, created = store_uploaded_image(upload.read(), upload.name, user=request.user, **data)
        except UploadError as exc:
            raise ApiError(exc.message, status_code=exc.status, field=exc.field) from None
        body = s.ImageSerializer(image, context=self.get_serializer_context()).data
        return Response(body, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


# ---------------------------------------------------------------------------------------------
# Releases
# ---------------------------------------------------------------------------------------------
@extend_schema_view(
    list=extend_schema(summary="Releases (private ones for members)"),
    retrieve=extend_schema(summary="One release"),
)
class ReleaseViewSet(TableListMixin, viewsets.ReadOnlyModelViewSet):
    """Named, versioned catalog tables. Private releases and their rows are for members only."""

    permission_classes = [AllowAny]
    pagination_class = KeysetPagination
    serializer_class = s.ReleaseSerializer
    lookup_field = "slug"
    lookup_value_regex = r"[-a-zA-Z0-9_]{1,80}"
    table_actions = ("rows",)

    @property
    def ordering_fields(self) -> tuple[str, ...]:
        return ("pgc",) if getattr(self, "action", None) == "rows" else ("created", "name", "slug")

    def get_default_ordering(self) -> str:
        return "pgc" if getattr(self, "action", None) == "rows" else "-created"

    def ordering_column(self, name: str) -> str:
        return "galaxy_id" if name == "pgc" else name

    def get_queryset(self) -> QuerySet:
        return visible_releases(self.request.user)

    def get_object(self):
        try:
            return super().get_object()
        except (exceptions.NotFound, Http404):
            raise exceptions.NotFound(f"no release {self.kwargs.get('slug')!r} visible to you") from None

    @extend_schema(
        summary="Rows of a release",
        parameters=[
            OpenApiParameter(
                "fields",
                OpenApiTypes.STR,
                description="Comma-separated columns for CSV/VOTable (default: the release's columns)",
            ),
            FORMAT_PARAM,
        ],
        responses={200: s.ReleaseRowSerializer(many=True), 404: OpenApiResponse(description="No such release visible to you")},
    )
    @action(detail=True, methods=["get"], url_path="rows", serializer_class=s.ReleaseRowSerializer)
    def rows(self, request: Request, slug: str | None = None) -> Response:
        release = self.get_object()
        qs = ReleaseRow.objects.filter(release=release)
        fmt = self.wants_table(request)
        if fmt:
            return export_response(release, fmt, fields=request.query_params.get("fields"), filename=release.slug, release=release)
        page = self.paginate_queryset(qs)
        return self.get_paginated_response(s.ReleaseRowSerializer(page, many=True).data)


# ---------------------------------------------------------------------------------------------
# Jobs
# ---------------------------------------------------------------------------------------------
# Tokens
# ---------------------------------------------------------------------------------------------
class TokenView(APIView):
    """The caller's API token: show, issue (replacing the old one) and revoke.

    POST works signed in (session or token) or with username and password in the body.
    """

    permission_classes = [AllowAny]
    parser_classes = [JSONParser, FormParser, MultiPartParser]
    serializer_class = s.TokenSerializer

    def _user(self, request: Request):
        if request.user and request.user.is_authenticated:
            return request.user
        raise exceptions.NotAuthenticated("sign in, or send username and password")

    @extend_schema(summary="My API token", responses={200: s.TokenSerializer, 404: OpenApiResponse(description="No token issued")})
    def get(self, request: Request) -> Response:
        token = token_for(self._user(request))
        if token is None:
            raise exceptions.NotFound("no token issued: POST to this address to get one")
        return Response(s.TokenSerializer(token).data)

    @extend_schema(
        summary="Issue a new API token (revokes the previous one)",
        request=s.TokenRequestSerializer,
        responses={201: s.TokenSerializer, 400: OpenApiResponse(description="Wrong credentials")},
    )
    def post(self, request: Request) -> Response:
        user = request.user if request.user and request.user.is_authenticated else None
        if user is None:
            form = s.TokenRequestSerializer(data=request.data)
            form.is_valid(raise_exception=True)
            username, password = form.validated_data.get("username"), form.validated_data.get("password")
            if not username:
                raise ApiError("send username and password, or sign in", field="username", status_code=401)
            if not password:
                raise ApiError("send the password", field="password")
            if message := login_blocked(username, client_ip(request._request)):
                raise ApiError(message, field="password", status_code=429)
            user = authenticate(request._request, username=username, password=password)
            if user is None or not user.is_active:
                raise ApiError("unknown user name or wrong password", field="password")
        token = issue_token(user)
        return Response(s.TokenSerializer(token).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Revoke my API token", request=None, responses={204: None, 404: OpenApiResponse(description="No token to revoke")}
    )
    def delete(self, request: Request) -> Response:
        if not revoke_token(self._user(request)):
            raise exceptions.NotFound("no token to revoke")
        return Response(status=status.HTTP_204_NO_CONTENT)
