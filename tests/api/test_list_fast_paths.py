"""The galaxy list's cheaper paths (issue 14) answer what the plain ones did: GalaxyFilter's
shallow filter copies and once-built form class, the no-filter shortcut, the serializer's field
selection and URL format, and the browse page's cached filter fragment and Python-built rows."""

from __future__ import annotations

import django_filters as df
import pytest
from django.template.loader import render_to_string
from django.test import Client
from django.urls import reverse

from catalog.filters import GalaxyFilter
from catalog.models import Galaxy
from tests.factories import GalaxyFactory, VoteFactory

pytestmark = pytest.mark.django_db


class StockGalaxyFilter(GalaxyFilter):
    """GalaxyFilter built the way django-filter builds any FilterSet (deep copies, a form class
    per instance): the reference the faster construction must agree with."""

    def __init__(self, data=None, queryset=None, *, request=None, prefix=None):
        df.FilterSet.__init__(self, data, queryset, request=request, prefix=prefix)
        self.cone = None
        self.name_match = None

    def get_form_class(self):
        return df.FilterSet.get_form_class(self)


QUERIES = [
    {},
    {"ordering": "-vhel"},
    {"inc_min": "60", "inc_max": "85", "ordering": "inc"},
    {"type": "S", "vhel_max": "3000"},
    {"votes_min": "1"},
    {"votes_min": "2"},
    {"has_images": "false", "b_a_max": "0.5"},
    {"ra_center": "180", "dec_center": "10", "radius": "10"},
    {"q": "180 10 10 deg", "ordering": "-distance"},
    {"include_unlocated": "true"},
    {"include_unlocated": "false"},
]


@pytest.mark.parametrize("data", QUERIES, ids=lambda d: "&".join(f"{k}={v}" for k, v in d.items()) or "none")
def test_filters_give_the_rows_of_a_stock_filterset(edd_galaxies, data):
    some = list(edd_galaxies.order_by("pgc")[:6])
    VoteFactory(galaxy=some[0])
    VoteFactory(galaxy=some[1])
    VoteFactory(galaxy=some[1])
    GalaxyFactory(pgc=999_000_001, ra=None, dec=None)  # unlocated
    fast, stock = GalaxyFilter(data, queryset=Galaxy.objects.all()), StockGalaxyFilter(data, queryset=Galaxy.objects.all())
    assert fast.is_valid() and stock.is_valid(), fast.errors
    rows = list(fast.qs.values_list("pk", flat=True))
    assert rows == list(stock.qs.values_list("pk", flat=True))
    assert data or rows == list(Galaxy.objects.located().order_by("pk").values_list("pk", flat=True))


def test_filter_copies_belong_to_their_filterset_and_forms_to_their_request(db):
    a, b = GalaxyFilter({"votes_min": "1"}), GalaxyFilter({"votes_min": "x"})
    assert a.filters["votes_min"] is not b.filters["votes_min"]
    assert a.filters["votes_min"].parent is a and b.filters["votes_min"].parent is b
    assert a.filters["votes_min"].filter.f is a.filters["votes_min"], "a method filter calls its own filterset"
    assert type(a.form) is type(b.form), "one form class"
    assert a.form.fields["votes_min"] is not b.form.fields["votes_min"], "each form has its own fields"
    assert a.is_valid() and not b.is_valid() and "votes_min" in b.errors and not a.errors
    a.form.fields["type"].label = "changed"
    assert GalaxyFilter({}).form.fields["type"].label != "changed"


def test_no_filter_parameter_is_the_unbound_answer_without_a_form(db):
    fs = GalaxyFilter({"page_size": "100", "fields": "pgc"})
    assert not fs.has_filter_data() and fs.is_valid()
    assert not hasattr(fs, "_form"), "nothing to validate: no form built"
    assert not GalaxyFilter(None).is_valid(), "an unbound filter set is not valid (django-filter's rule)"
    assert GalaxyFilter({"inc_min": ""}).has_filter_data()


def test_api_list_still_refuses_unknown_parameters_and_bad_values(db):
    client = Client()
    GalaxyFactory(pgc=5, ra=10.0, dec=20.0)
    for query, field in (("page_size=100&bogus=1", "bogus"), ("pgc_minimum=3", "pgc_minimum"), ("inc_min=abc", "inc_min")):
        r = client.get("/api/v1/galaxies/?" + query)
        assert r.status_code == 400 and r.json()["field"] == field, (query, r.content)
    body = client.get("/api/v1/galaxies/?page_size=100").json()
    assert [row["pgc"] for row in body["results"]] == [5]


def test_api_rows_keep_their_fields_and_urls(db):
    GalaxyFactory(pgc=7, ra=10.0, dec=20.0, inc=45.0)
    GalaxyFactory(pgc=2147483647, ra=11.0, dec=20.0)
    client = Client()
    rows = client.get("/api/v1/galaxies/?page_size=10&fields=pgc,inc").json()["results"]
    assert [set(r) for r in rows] == [{"pgc", "inc", "url"}] * 2
    assert [r["url"] for r in rows] == [f"http://testserver{reverse('galaxy-detail', kwargs={'pgc': p})}" for p in (7, 2147483647)]
    assert rows[0]["inc"] == 45.0
    full = client.get("/api/v1/galaxies/?page_size=1&fields=all").json()["results"][0]
    assert {"pgc", "ra", "dec", "vhel", "url"} <= set(full) and len(full) > 20


def test_browse_page_rows_and_cached_filter_fields_match_the_template(db):
    GalaxyFactory(pgc=11, ra=10.0, dec=20.0, type="<b>Sc</b>", inc=33.333)
    client = Client()
    html = client.get("/galaxies/").content.decode()
    assert '<td><a href="/galaxies/11/">11</a></td>' in html
    assert "&lt;b&gt;Sc&lt;/b&gt;" in html and "<b>Sc</b>" not in html, "values are escaped"
    # The fragment cached for the page without parameters is what the form renders uncached.
    fs = GalaxyFilter(None)
    fresh = render_to_string("catalog/_filter_fields.html", {"form": fs.form, "all_columns": []}).split("<fieldset")[0]
    assert fresh.strip() in html
    assert client.get("/galaxies/").content.decode() == html
    filtered = client.get("/galaxies/?inc_min=30").content.decode()
    assert 'name="inc_min" value="30"' in filtered, "a bound form is rendered with its values, not from the cache"


def test_rows_are_what_drf_writes(edd_galaxies):
    from rest_framework import serializers as drf

    from catalog.api.serializers import GalaxyDetailSerializer, GalaxySerializer

    rows = list(Galaxy.objects.order_by("pk")[:30])
    rows[0].distance = 0.25
    for fields in (None, {"pgc", "inc", "type", "url"}):
        fast = GalaxySerializer(rows, many=True, context={"fields": fields}).data
        one = GalaxySerializer(context={"fields": fields})
        assert fast == [drf.Serializer.to_representation(one, g) for g in rows]
    detail = GalaxyDetailSerializer(rows[1], context={})
    assert detail.data == drf.Serializer.to_representation(GalaxyDetailSerializer(context={}), rows[1])
