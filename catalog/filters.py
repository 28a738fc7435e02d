"""The one FilterSet of galaxies: the browse page, the downloads and the REST API all use it,
so a filter means the same thing everywhere.

Ranges are `<col>_min` / `<col>_max` (inclusive, in the registry's units); `q` takes what the
search box takes (a name or a position with a radius); `ra`, `dec`, `radius` (deg) give a cone
directly; `ordering` sorts by any registry column (`-col` descending, `distance` for cones).
Galaxies without a position are left out unless `include_unlocated=true`.
"""

from __future__ import annotations

import copy

import django_filters as df
from django import forms
from django.apps import apps
from django.db.models import Count, Exists, F, OuterRef, Q, QuerySet
from django.http import QueryDict

from catalog.columns import BY_NAME, COLUMNS, DERIVED, derived_by_name, derived_columns
from catalog.cone import ConeError, check_cone, galaxies_in_cone
from catalog.models import Galaxy, Image
from catalog.search import ConeQuery, SearchError, parse_query, resolve_name
from catalog.selectors import galaxy_related_model

# "Has a position", written on the indexed healpix column (the galaxy_position_complete constraint
# makes it equal to ra IS NOT NULL): counts of 1M rows then read the index, not the wide table.
LOCATED = Q(healpix__isnull=False)
RANGE_COLUMNS = ("ra", "dec", "vhel", "vls", "d25", "b_a", "pa", "ty", "inc", "inc_e", "ebv", "gb", "sgb")
SORTABLE = tuple(c.name for c in COLUMNS) + tuple(c.name for c in DERIVED) + tuple(c.name for c in derived_columns())


def _sort(ordering: str):
    """Order expression of 'col' or '-col', missing values last either way."""
    name = ordering.lstrip("-")
    extra = derived_by_name()
    expr = extra[name].annotation() if name in extra else F(name)
    return expr.desc(nulls_last=True) if ordering.startswith("-") else expr.asc(nulls_last=True)


def _derived_filter(queryset: QuerySet, name: str, lookup: str, value) -> QuerySet:
    """Rows whose derived column `name` satisfies `lookup` (gte, lte, exact): on its summary copy
    through a join, or in one SQL subquery for a column without a summary."""
    if value in (None, ""):
        return queryset
    alias = f"_filter_{name}_{lookup}"
    return queryset.alias(**{alias: derived_by_name()[name].annotation()}).filter(**{f"{alias}__{lookup}": value})


def _related_exists(app_label: str) -> Q | None:
    """Q: a row of any model of `app_label` refers to the galaxy (directly or through an image).

    The catalog never imports the ml/fitting apps; it finds their relations at run time.
    """
    if not apps.is_installed(app_label):
        return None
    q = None
    for model in apps.get_app_config(app_label).get_models():
        for field in model._meta.fields:
            target = getattr(field, "related_model", None)
            if target is Galaxy:
                sub = Exists(model.objects.filter(**{field.name: OuterRef("pk")}))
            elif target is Image:
                sub = Exists(model.objects.filter(**{f"{field.name}__galaxy": OuterRef("pk")}))
            else:
                continue
            q = Q(sub) if q is None else q | Q(sub)
    return q


def _bool_related(queryset: QuerySet, app_label: str, value: bool | None) -> QuerySet:
    if value is None:
        return queryset
    cond = _related_exists(app_label)
    if cond is None:
        return queryset.none() if value else queryset
    return queryset.filter(cond) if value else queryset.exclude(cond)


class AnyYesNo(forms.NullBooleanSelect):
    """A yes/no/any choice whose "any" is empty, so an untouched filter adds nothing to the URL."""

    def __init__(self, attrs=None):
        super().__init__(attrs)
        self.choices = [("", "any"), ("true", "yes"), ("false", "no")]

    def format_value(self, value) -> list[str]:
        return [{True: "true", False: "false", "true": "true", "false": "false"}.get(value, "")]


class GalaxyFilter(df.FilterSet):
    """Filters over a Galaxy queryset (see the module docstring)."""

    q = df.CharFilter(method="filter_q", label="Name or position", help_text="A galaxy name, or 'RA Dec [radius unit]'")
    ra_center = df.NumberFilter(method="filter_noop", label="Cone RA [deg]", help_text="Cone centre right ascension (ICRS) [deg]")
    dec_center = df.NumberFilter(method="filter_noop", label="Cone Dec [deg]", help_text="Cone centre declination (ICRS) [deg]")
    radius = df.NumberFilter(method="filter_noop", label="Cone radius [deg]", help_text="Cone radius [deg], with ra_center and dec_center")
    inc_flg = df.NumberFilter(field_name="inc_flg", label="Inclination flag", help_text="0 = accepted, 1 = rejected or unsure")
    type = df.CharFilter(field_name="type", lookup_expr="istartswith", label="Type starts with", help_text="Morphological type, e.g. Sc")
    has_images = df.BooleanFilter(widget=AnyYesNo, method="filter_has_images", label="Has images", help_text="At least one image stored")
    votes_min = df.NumberFilter(method="filter_votes_min", label="Votes at least", help_text="Least number of inclination votes")
    has_cnn = df.BooleanFilter(widget=AnyYesNo, method="filter_has_cnn", label="Has CNN inclination", help_text="A CNN prediction exists")
    has_fit = df.BooleanFilter(widget=AnyYesNo, method="filter_has_fit", label="Has profile fit", help_text="A profile fit exists")
    include_unlocated = df.BooleanFilter(
        widget=AnyYesNo, method="filter_noop", label="Include unlocated", help_text="Also galaxies known only by pgc (no position)"
    )
    ordering = df.CharFilter(method="filter_noop", label="Sort by", help_text="A column name, '-name' for descending, or distance")

    class Meta:
        model = Galaxy
        fields: list[str] = []

    def __init__(self, data=None, queryset=None, *, request=None, prefix=None):
        # django-filter's own __init__ deep-copies every declared filter (about 60 here), which
        # took 23 ms of a 61 ms API list request. A filter holds no per-request state but its
        # parent and model (its form field belongs to the form class, built once: get_form_class),
        # so a shallow copy of each is enough; a method filter is re-bound to its copy.
        self.is_bound = data is not None
        self.data = data or QueryDict()
        self.queryset = Galaxy.objects.all() if queryset is None else queryset
        self.request = request
        self.form_prefix = prefix
        self.filters = {}
        for name, base in self.base_filters.items():
            f = copy.copy(base)
            f.model, f.parent = self.queryset.model, self
            if base.method is not None:
                f.method = base.method
            self.filters[name] = f
        self.cone: ConeQuery | None = None
        self.name_match = None

    def get_form_class(self) -> type[forms.Form]:
        """The form class of the filters, made once per FilterSet class (each form instance still
        gets its own copies of the fields)."""
        cls = type(self)
        if "_form_class" not in cls.__dict__:
            cls._form_class = super().get_form_class()
        return cls._form_class

    def has_filter_data(self) -> bool:
        """Whether any filter parameter is given: without one every filter is a no-op, and the
        answer is that of an unbound filter set (no form is built to find that out)."""
        prefix = f"{self.form_prefix}-" if self.form_prefix else ""
        return self.is_bound and any(prefix + name in self.data for name in self.filters)

    # Range filters for the useful numeric columns, declared from the registry.
    for _name in RANGE_COLUMNS:
        _col = BY_NAME[_name]
        _unit = f" [{_col.unit}]" if _col.unit else ""
        locals()[f"{_name}_min"] = df.NumberFilter(
            field_name=_name, lookup_expr="gte", label=f"{_name} from{_unit}", help_text=f"{_col.description}, at least{_unit}"
        )
        locals()[f"{_name}_max"] = df.NumberFilter(
            field_name=_name, lookup_expr="lte", label=f"{_name} to{_unit}", help_text=f"{_col.description}, at most{_unit}"
        )
    del _name, _col, _unit

    # Ranges of the numeric derived columns (consensus, CNN, fit) and equality of the text ones.
    _col = _unit = None
    for _col in derived_columns():
        _unit = f" [{_col.unit}]" if _col.unit else ""
        if _col.kind in ("float", "int"):
            locals()[f"{_col.name}_min"] = df.NumberFilter(
                field_name=_col.name,
                method="filter_derived_gte",
                label=f"{_col.name} from{_unit}",
                help_text=f"{_col.description}, at least{_unit}",
            )
            locals()[f"{_col.name}_max"] = df.NumberFilter(
                field_name=_col.name,
                method="filter_derived_lte",
                label=f"{_col.name} to{_unit}",
                help_text=f"{_col.description}, at most{_unit}",
            )
        else:
            locals()[_col.name] = df.CharFilter(
                field_name=_col.name, method="filter_derived_exact", label=_col.name, help_text=_col.description
            )
    del _col, _unit

    def filter_derived_gte(self, queryset, name, value):
        return _derived_filter(queryset, name, "gte", value)

    def filter_derived_lte(self, queryset, name, value):
        return _derived_filter(queryset, name, "lte", value)

    def filter_derived_exact(self, queryset, name, value):
        return _derived_filter(queryset, name, "exact", (value or "").strip())

    def filter_noop(self, queryset, name, value):
        return queryset

    def filter_q(self, queryset, name, value):
        return queryset  # applied in filter_queryset, after the other filters

    def filter_has_images(self, queryset, name, value):
        if value is None:
            return queryset
        cond = Exists(Image.objects.filter(galaxy=OuterRef("pk")))
        return queryset.filter(cond) if value else queryset.exclude(cond)

    def filter_votes_min(self, queryset, name, value):
        if value is None:
            return queryset
        n = int(value)
        if n <= 0:
            return queryset
        votes = galaxy_related_model("votes")
        if votes is None:
            return queryset.none()
        if n == 1:
            return queryset.filter(Exists(votes.objects.filter(galaxy=OuterRef("pk"))))
        counts = votes.objects.values("galaxy").annotate(n=Count("id")).filter(n__gte=n).values("galaxy")
        return queryset.filter(pk__in=counts)

    def filter_has_cnn(self, queryset, name, value):
        return _bool_related(queryset, "ml", value)

    def filter_has_fit(self, queryset, name, value):
        return _bool_related(queryset, "fitting", value)

    def _validate_extra(self) -> None:
        data = self.form.cleaned_data
        ordering = (data.get("ordering") or "").strip()
        if ordering:
            key = ordering.lstrip("-")
            if key not in SORTABLE and key != "distance":
                self.form.add_error("ordering", f"unknown sort column {key!r}")
        cone = [data.get("ra_center"), data.get("dec_center"), data.get("radius")]
        if any(v is not None for v in cone) and not all(v is not None for v in cone):
            self.form.add_error("radius", "a cone needs ra_center, dec_center and radius together")
        elif all(v is not None for v in cone):
            try:
                ra, dec, r = check_cone(float(cone[0]), float(cone[1]), float(cone[2]))
            except ConeError as exc:
                self.form.add_error("radius", str(exc))
            else:
                self.cone = ConeQuery("", ra, dec, r)
        text = (data.get("q") or "").strip()
        if text:
            try:
                parsed = parse_query(text)
            except SearchError as exc:
                self.form.add_error("q", str(exc))
            else:
                if isinstance(parsed, ConeQuery):
                    if self.cone is not None:
                        self.form.add_error("q", "give the cone either as text or as ra_center/dec_center/radius, not both")
                    self.cone = parsed
                else:
                    self.name_match = resolve_name(parsed)
                    self._name_query = parsed

    def is_valid(self) -> bool:
        if not self.is_bound:
            return False
        if not self.has_filter_data():
            return True  # every filter a no-op: nothing to check
        if not self.form.is_valid():
            return False
        if not getattr(self, "_extra_checked", False):
            self._extra_checked = True
            self._validate_extra()
        return not self.form.errors

    @property
    def errors(self):
        return self.form.errors

    # Parameters that do not narrow a cone's rows: its own, the sort, and the unlocated galaxies
    # (never in a cone).
    CONE_ONLY_KEYS = frozenset({"q", "ra_center", "dec_center", "radius", "ordering", "include_unlocated"})

    def _given(self) -> set[str]:
        """Names of the filters given a value (of a valid filter set)."""
        return {name for name, value in self.form.cleaned_data.items() if value not in (None, "")}

    def only_cone(self) -> bool:
        """Whether a valid cone is the only filter of the rows (then catalog.cone.cone_count
        counts them)."""
        return self.cone is not None and self.is_valid() and self._given() <= self.CONE_ONLY_KEYS

    def unfiltered(self) -> bool:
        """Whether the rows are all the located galaxies, in any order (then
        catalog.selectors.located_count counts them)."""
        if not self.has_filter_data():
            return True
        if not self.is_valid():
            return False
        given = self._given() - {"ordering"}
        return not given or (given == {"include_unlocated"} and not self.form.cleaned_data["include_unlocated"])

    def filter_queryset(self, queryset: QuerySet) -> QuerySet:
        data = self.form.cleaned_data
        if not data.get("include_unlocated"):
            queryset = queryset.filter(LOCATED)
        queryset = super().filter_queryset(queryset)
        if getattr(self, "_name_query", None) is not None:
            queryset = queryset.filter(pk=self.name_match.pk) if self.name_match is not None else queryset.none()
        ordering = (data.get("ordering") or "").strip()
        if self.cone is not None:
            try:
                queryset = galaxies_in_cone(self.cone.ra, self.cone.dec, self.cone.radius_deg, queryset)
            except ConeError as exc:
                raise forms.ValidationError(str(exc)) from None
            if ordering and ordering.lstrip("-") != "distance":
                queryset = queryset.order_by(_sort(ordering), "pk")
            elif ordering == "-distance":
                queryset = queryset.order_by("-distance_deg", "pk")
        elif ordering and ordering.lstrip("-") != "distance":
            queryset = queryset.order_by(_sort(ordering), "pk") if ordering.lstrip("-") != "pgc" else queryset.order_by(ordering)
        else:
            queryset = queryset.order_by("pk")
        return queryset

    @property
    def qs(self) -> QuerySet:
        if not hasattr(self, "_qs"):
            if not self.has_filter_data():
                self._qs = self.queryset.filter(LOCATED).order_by("pk")
                return self._qs
            if not self.is_valid():
                raise forms.ValidationError(self._error_text())
            self._qs = self.filter_queryset(self.queryset.all())
        return self._qs

    def _error_text(self) -> str:
        return "; ".join(f"{k}: {' '.join(str(m) for m in v)}" if k != "__all__" else " ".join(v) for k, v in self.form.errors.items())

    def error_text(self) -> str:
        """All form errors in one line."""
        return self._error_text()
