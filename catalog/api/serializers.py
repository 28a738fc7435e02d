"""Serializers of the API. Galaxy fields come from the column registry (catalog.columns), so
every column's description and unit reach the OpenAPI schema from the one place they live."""

from __future__ import annotations

import copy
import functools
import math
from typing import Any

from django.urls import reverse
from django.utils.module_loading import import_string
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.authtoken.models import Token

from catalog.columns import COLUMNS, DEFAULT_LIST_COLUMNS, DERIVED, Column, derived_columns
from catalog.conf import conf
from catalog.models import Image, Release, ReleaseRow


class FiniteFloatField(serializers.FloatField):
    """A float that answers null for NaN and infinities (JSON has no such numbers)."""

    def to_representation(self, value: Any) -> float | None:
        if value is None:
            return None
        value = float(value)
        return value if math.isfinite(value) else None


def column_field(col: Column) -> serializers.Field:
    """The serializer field of a registry column: description and unit from the registry."""
    common = {"required": False, "allow_null": True, "help_text": col.help_text, "label": col.name}
    if col.kind == "float":
        return FiniteFloatField(**common)
    if col.kind == "int":
        return serializers.IntegerField(**common)
    if col.kind in ("bool", "flag"):
        return serializers.BooleanField(**common)
    return serializers.CharField(**{**common, "allow_blank": True})


def _galaxy_fields() -> dict[str, serializers.Field]:
    fields: dict[str, serializers.Field] = {c.name: column_field(c) for c in COLUMNS + derived_columns()}
    fields["distance"] = FiniteFloatField(
        required=False,
        allow_null=True,
        help_text="Angular distance from the cone centre, in cone searches only [deg]",
    )
    fields["url"] = serializers.SerializerMethodField(help_text="Address of the galaxy in the API")
    return fields


PGC_MAX = 2**31 - 1  # PGC numbers are stored as PostgreSQL integers
GALAXY_COLUMN_NAMES = tuple(c.name for c in COLUMNS)
SELECTABLE_FIELDS = (*GALAXY_COLUMN_NAMES, *(c.name for c in derived_columns()), "distance", "url")


class _GalaxyBase(serializers.Serializer):
    """A galaxy as a flat row of registry columns (read-only)."""

    def get_fields(self) -> dict[str, serializers.Field]:
        """Copies of the declared fields named in context["fields"] (all without it): copying
        all about 50 per request to drop most of them cost more than writing 100 rows."""
        wanted = self.context.get("fields")
        return {n: copy.deepcopy(f) for n, f in self._declared_fields.items() if wanted is None or n in wanted}

    def to_representation(self, instance) -> dict[str, Any]:
        """DRF's loop less its general attribute lookup (dotted sources, SkipField): each field
        here reads one attribute of the row (a missing one is null) or is a method field."""
        if not hasattr(self, "_plan"):
            fields = list(self._readable_fields)
            flat = all(f.source == "*" or "." not in f.source for f in fields)
            self._plan = [(f.field_name, f.source, f) for f in fields] if flat else None
        if self._plan is None:
            return super().to_representation(instance)
        out = {}
        # a values() row (the list endpoint) or a model instance (the detail)
        read = instance.get if isinstance(instance, dict) else functools.partial(getattr, instance)
        for name, source, field in self._plan:
            value = instance if source == "*" else read(source, None)
            out[name] = None if value is None else field.to_representation(value)
        return out

    @extend_schema_field(OpenApiTypes.URI)
    def get_url(self, galaxy) -> str:
        if not hasattr(self, "_url_format"):  # reverse() once per answer, not once per row
            request = self.context.get("request")
            path = reverse("galaxy-detail", kwargs={"pgc": PGC_MAX})
            url = request.build_absolute_uri(path) if request is not None else path
            self._url_format = url.replace(str(PGC_MAX), "{}")
        return self._url_format.format(galaxy["pgc"] if isinstance(galaxy, dict) else galaxy.pgc)


GalaxySerializer = type("GalaxySerializer", (_GalaxyBase,), {"__module__": __name__, **_galaxy_fields()})
GalaxySerializer.__doc__ = "A galaxy: the columns chosen with ?fields= (by default " + ", ".join(DEFAULT_LIST_COLUMNS) + ")."


class ImageSerializer(serializers.ModelSerializer):
    """An image of a galaxy in one band."""

    id = serializers.IntegerField(read_only=True, help_text="Image id")
    pgc = serializers.IntegerField(source="galaxy_id", read_only=True, help_text="PGC number of the galaxy shown")
    url = serializers.SerializerMethodField(help_text="Address of the image file")

    class Meta:
        model = Image
        fields = (
            "id",
            "pgc",
            "survey",
            "band",
            "format",
            "width",
            "height",
            "channels",
            "pixel_scale",
            "orientation",
            "inverted",
            "wcs",
            "sha256",
            "original_name",
            "is_public",
            "created",
            "url",
        )
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.URI)
    def get_url(self, image: Image) -> str:
        url = image.file.url if image.file else ""
        request = self.context.get("request")
        return request.build_absolute_uri(url) if request is not None and url else url


class ImageUploadSerializer(serializers.Serializer):
    """A multipart upload of one image file (PNG, JPEG, GIF or FITS)."""

    pgc = serializers.IntegerField(min_value=1, max_value=PGC_MAX, help_text="PGC number of the galaxy shown (must be in the catalog)")
    band = serializers.ChoiceField(choices=Image.Band.choices, help_text="Photometric band, or gri for a colour composite")
    file = serializers.FileField(help_text="The image file: PNG, JPEG, GIF or FITS")
    survey = serializers.CharField(max_length=40, default="SDSS", help_text="Survey the pixels come from")
    pixel_scale = serializers.FloatField(
        required=False, allow_null=True, min_value=0.0001, max_value=3600, help_text="Angular size of a pixel [arcsec/pixel]"
    )
    orientation = serializers.ChoiceField(
        choices=Image.Orientation.choices, default=Image.Orientation.UNKNOWN, help_text="How the image is oriented on the sky"
    )
    inverted = serializers.BooleanField(
        required=False, allow_null=True, default=None, help_text="Galaxy dark on a light background (guessed from the pixels when omitted)"
    )
    is_public = serializers.BooleanField(default=True, help_text="Visible to everyone (otherwise to members only)")


class GalaxyDetailSerializer(GalaxySerializer):
    """A galaxy with every column, its aliases, images, consensus inclination, CNN predictions
    and profile fits (the last three from the apps that make them, when they exist)."""

    distance = None  # only list rows of cone searches carry a distance
    healpix = serializers.IntegerField(read_only=True, allow_null=True, help_text=DERIVED[0].help_text)
    created = serializers.DateTimeField(read_only=True, help_text="When the row was created [UTC]")
    updated = serializers.DateTimeField(read_only=True, help_text="When the row last changed [UTC]")
    aliases = serializers.SerializerMethodField(help_text="Other names of the galaxy (NGC 4565, UGC 7772, ...)")
    images = serializers.SerializerMethodField(help_text="Images of the galaxy visible to the caller")
    vote_count = serializers.SerializerMethodField(help_text="Number of volunteer inclination votes")
    consensus = serializers.SerializerMethodField(
        help_text="Consensus inclination from volunteer votes (inc [deg], inc_e [deg], inc_n, flag A/F/J, method); null until computed"
    )
    predictions = serializers.SerializerMethodField(help_text="CNN inclination predictions of the galaxy and its images (inc in [deg])")
    fits = serializers.SerializerMethodField(help_text="Profile fits of the galaxy's images (Re in [arcsec] or [pixel] as stated)")
    morphology = serializers.SerializerMethodField(
        help_text="Morphology network posteriors of the galaxy's images (active version): median, mode, std, 1/2/3-sigma intervals [fitted pixel]"
    )

    def _extras(self, galaxy) -> dict[str, Any]:
        cache = self.context.setdefault("_extras", {})
        if galaxy.pk not in cache:
            merged: dict[str, Any] = {}
            for fn in galaxy_extra_providers():
                merged.update(fn(galaxy, self.context.get("request")) or {})
            cache[galaxy.pk] = merged
        return cache[galaxy.pk]

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_aliases(self, galaxy) -> list[str]:
        return [n.name for n in galaxy.names.all()]

    @extend_schema_field(ImageSerializer(many=True))
    def get_images(self, galaxy) -> list[dict]:
        images = getattr(galaxy, "visible_images", None)
        if images is None:
            images = list(galaxy.images.filter(is_public=True))
        return ImageSerializer(images, many=True, context=self.context).data

    @extend_schema_field(OpenApiTypes.INT)
    def get_vote_count(self, galaxy) -> int:
        return self._extras(galaxy).get("vote_count", 0)

    @extend_schema_field({"type": "object", "nullable": True, "additionalProperties": True})
    def get_consensus(self, galaxy) -> dict | None:
        return self._extras(galaxy).get("consensus")

    @extend_schema_field({"type": "array", "items": {"type": "object", "additionalProperties": True}})
    def get_predictions(self, galaxy) -> list:
        return self._extras(galaxy).get("predictions", [])

    @extend_schema_field({"type": "array", "items": {"type": "object", "additionalProperties": True}})
    def get_fits(self, galaxy) -> list:
        return self._extras(galaxy).get("fits", [])

    @extend_schema_field({"type": "array", "items": {"type": "object", "additionalProperties": True}})
    def get_morphology(self, galaxy) -> list:
        return self._extras(galaxy).get("morphology", [])


_PROVIDERS: dict[tuple[str, ...], list] = {}


def galaxy_extra_providers() -> list:
    """The callables of GALCAT_GALAXY_API_EXTRAS (dotted paths), loaded once.

    Each is called as fn(galaxy, request) and returns a dict merged into the galaxy detail
    (keys vote_count, consensus, predictions, fits, morphology): apps that catalog must not import contribute this way.
    """
    paths = tuple(conf.GALAXY_API_EXTRAS)
    if paths not in _PROVIDERS:
        _PROVIDERS[paths] = [import_string(p) for p in paths]
    return _PROVIDERS[paths]


class ReleaseSerializer(serializers.ModelSerializer):
    """A named, versioned catalog table."""

    url = serializers.SerializerMethodField(help_text="Address of the release in the API")
    rows_url = serializers.SerializerMethodField(help_text="Address of the release's rows in the API")

    class Meta:
        model = Release
        fields = (
            "slug",
            "name",
            "version",
            "description",
            "citation",
            "query",
            "columns",
            "status",
            "is_public",
            "row_count",
            "created",
            "published_at",
            "url",
            "rows_url",
        )
        read_only_fields = fields

    def _abs(self, path: str) -> str:
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request is not None else path

    @extend_schema_field(OpenApiTypes.URI)
    def get_url(self, release: Release) -> str:
        return self._abs(reverse("release-detail", kwargs={"slug": release.slug}))

    @extend_schema_field(OpenApiTypes.URI)
    def get_rows_url(self, release: Release) -> str:
        return self._abs(reverse("release-rows", kwargs={"slug": release.slug}))


class ReleaseRowSerializer(serializers.ModelSerializer):
    """One frozen row of a release."""

    pgc = serializers.IntegerField(source="galaxy_id", read_only=True, help_text="PGC number of the galaxy")
    ra = FiniteFloatField(read_only=True, allow_null=True, help_text="Right ascension at freezing time [deg]")
    dec = FiniteFloatField(read_only=True, allow_null=True, help_text="Declination at freezing time [deg]")

    class Meta:
        model = ReleaseRow
        fields = ("pgc", "ra", "dec", "values")
        read_only_fields = fields


class TokenSerializer(serializers.ModelSerializer):
    """The API token of the signed-in user: send it as 'Authorization: Token <key>'."""

    key = serializers.CharField(read_only=True, help_text="The token; send it in the header 'Authorization: Token <key>'")
    created = serializers.DateTimeField(read_only=True, help_text="When the token was issued [UTC]")
    username = serializers.CharField(source="user.username", read_only=True, help_text="The user the token authenticates")

    class Meta:
        model = Token
        fields = ("key", "created", "username")


class TokenRequestSerializer(serializers.Serializer):
    """Credentials for a new token when not already signed in (scripts)."""

    username = serializers.CharField(required=False, help_text="User name (omit when signed in or sending a token)")
    password = serializers.CharField(
        required=False, style={"input_type": "password"}, trim_whitespace=False, help_text="Password (omit when signed in)"
    )
