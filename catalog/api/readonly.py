"""Read-only endpoints for the rows other apps store (CNN predictions, profile fits, ...).

ml and fitting depend on catalog, never the reverse: their api_v1 modules call
:func:`readonly_viewset` with their models, and config/api.py registers what they return.
"""

from __future__ import annotations

from typing import Any

from django.db import models
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import serializers, viewsets
from rest_framework.permissions import AllowAny

from catalog.models import Galaxy, Image
from catalog.selectors import visible_images
from core.api.errors import pgc_param
from core.api.pagination import KeysetPagination
from core.roles import is_member


def galaxy_path(model: type[models.Model]) -> str | None:
    """ORM path from `model` to its galaxy: a direct foreign key, or through an image."""
    for field in model._meta.fields:
        if getattr(field, "related_model", None) is Galaxy:
            return field.name
    for field in model._meta.fields:
        if getattr(field, "related_model", None) is Image:
            return f"{field.name}__galaxy"
    return None


def image_field(model: type[models.Model]) -> str | None:
    """Name of `model`'s foreign key to an image, if it has one."""
    return next((f.name for f in model._meta.fields if getattr(f, "related_model", None) is Image), None)


def visible_rows(model: type[models.Model], user) -> models.QuerySet:
    """Rows of `model` that `user` may see: those about an image only when the image is one of
    catalog.selectors.visible_images(user)."""
    qs = model.objects.all()
    image = image_field(model)
    if image is not None and not is_member(user):  # members see every image: no filter to run
        qs = qs.filter(**{f"{image}__in": visible_images(user)})
    return qs


def model_serializer(model: type[models.Model]) -> type[serializers.ModelSerializer]:
    """A read-only ModelSerializer of every field (descriptions from the fields' help_text)."""
    names = [f.name for f in model._meta.fields]
    pk = model._meta.pk.name
    extra = {pk: {"help_text": f"{model._meta.verbose_name.capitalize()} id"}} if not model._meta.pk.help_text else {}
    meta = type("Meta", (), {"model": model, "fields": names, "read_only_fields": names, "extra_kwargs": extra})
    return type(f"{model.__name__}Serializer", (serializers.ModelSerializer,), {"Meta": meta, "__module__": model.__module__})


def readonly_viewset(model: type[models.Model], *, summary: str, ordering_fields: tuple[str, ...] | None = None) -> type:
    """A read-only, cursor-paginated viewset of `model`, filterable by ?pgc= when it refers to a galaxy."""
    serializer = model_serializer(model)
    path = galaxy_path(model)
    fields = {f.name for f in model._meta.fields}
    ordering = ordering_fields or tuple(n for n in ("id", "created") if n in fields) or ("pk",)
    params = [OpenApiParameter("pgc", OpenApiTypes.INT, description="Only rows of this galaxy")] if path else []

    def get_queryset(self):
        qs = visible_rows(model, self.request.user)
        related = [f.name for f in model._meta.fields if f.is_relation and f.many_to_one]
        if related:
            qs = qs.select_related(*related)
        pgc = pgc_param(self.request.query_params) if self.action == "list" else None
        if pgc is not None and path:
            qs = qs.filter(**{path: pgc})
        return qs

    attrs: dict[str, Any] = {
        "__module__": model.__module__,
        "__doc__": summary,
        "permission_classes": [AllowAny],
        "pagination_class": KeysetPagination,
        "serializer_class": serializer,
        "ordering_fields": ordering,
        "default_ordering": ordering[0],
        "lookup_value_regex": r"[0-9]{1,18}",
        "get_queryset": get_queryset,
    }
    cls = type(f"{model.__name__}ViewSet", (viewsets.ReadOnlyModelViewSet,), attrs)
    return extend_schema_view(list=extend_schema(summary=summary, parameters=params), retrieve=extend_schema(summary=f"{summary}: one"))(
        cls
    )


def rows_of_galaxy(model: type[models.Model], galaxy: Galaxy, request=None, limit: int = 50) -> list[dict]:
    """The newest rows of `model` about `galaxy` that the caller may see, serialized (for the
    galaxy detail's extras)."""
    path = galaxy_path(model)
    if path is None:
        return []
    fields = {f.name for f in model._meta.fields}
    order = "-created" if "created" in fields else "-pk"
    rows = visible_rows(model, getattr(request, "user", None)).filter(**{path: galaxy.pk}).order_by(order)[:limit]
    return list(model_serializer(model)(rows, many=True).data)


def app_routes(app_label: str, endpoints: tuple[tuple[str, str, str], ...]) -> list[tuple[str, type, str]]:
    """(prefix, read-only viewset, basename) for each (model name, prefix, summary) of an app."""
    from django.apps import apps

    return [
        (prefix, readonly_viewset(apps.get_model(app_label, name), summary=summary), f"{app_label}-{prefix}")
        for name, prefix, summary in endpoints
    ]
