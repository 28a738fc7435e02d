"""The per-galaxy summary tables behind the derived columns: after every way the apps write their
rows, the stored copy equals the column's own subquery; columns without a summary still work."""

from __future__ import annotations

import math

import pytest
from django.core.management import call_command
from django.db.models import F

from catalog.columns import DerivedColumn, derived, derived_columns
from catalog.models import Galaxy
from tests.factories import GalaxyFactory, make_image
from tests.utils import response_body

pytestmark = pytest.mark.django_db


def stored_and_computed() -> list[tuple]:
    """(pgc, column, stored value, subquery value) for every galaxy and every stored column."""
    cols = [c for c in derived_columns() if c.stored]
    assert {c.group for c in cols} == {"consensus", "cnn", "fit"}
    out = []
    for c in cols:
        rows = Galaxy.objects.annotate(_a=F(c.stored), _b=c.expression()).values_list("pgc", "_a", "_b")
        out.extend((pgc, c.name, a, b) for pgc, a, b in rows)
    return out


def assert_in_step():
    differ = [
        r
        for r in stored_and_computed()
        if not (r[2] == r[3] or (isinstance(r[2], float) and r[3] is not None and math.isclose(r[2], r[3])))
    ]
    assert not differ, differ[:10]


def stored(pgc: int, name: str):
    col = next(c for c in derived_columns() if c.name == name)
    return Galaxy.objects.filter(pgc=pgc).annotate(v=F(col.stored)).values_list("v", flat=True).get()


def test_summaries_follow_every_writer(django_capture_on_commit_callbacks):
    from fitting.models import FitResult
    from ml.models import ModelVersion, Prediction
    from zoo.consensus import ConsensusRow, get_method, store_consensus
    from zoo.models import ConsensusInclination
    from zoo.voting import override_consensus

    g1, g2, g3 = (GalaxyFactory(pgc=p, ra=10.0 + p, dec=5.0) for p in (201, 202, 203))
    # One row at a time (admin, scripts): post_save receivers.
    ConsensusInclination.objects.create(galaxy=g1, inc=71.5, inc_e=2.5, inc_n=6, flag="A", method="m", version="1")
    old = ModelVersion.objects.create(name="cnn", version="0", architecture="vgg", weights_path="x", sha256="0" * 64, active=True)
    img = make_image(g1, "g")
    Prediction.objects.create(image=img, galaxy=g1, model_version=old, value=70.0, uncertainty=1.0, reject_likelihood=0.1)
    FitResult.objects.create(image=img, model_kind="sersic", engine_version="1", re=12.5, n=1.1, q=0.3, chi2=200.0, dof=100, converged=True)
    assert (stored(201, "consensus_inc"), stored(201, "cnn_inc"), stored(201, "fit_chi2_dof")) == (71.5, 70.0, 2.0)
    assert_in_step()

    # A curator's override (zoo.voting) wins at once.
    from tests.utils import user_with_role

    curator = user_with_role("curator")
    override_consensus(g1, curator, "A", "64", "2", "looked again")
    assert stored(201, "consensus_inc") == 64.0

    # The consensus task replaces a method's rows set-wise: g2 gains one, g1's "m" row goes.
    method = get_method()
    store_consensus([ConsensusRow(pgc=202, inc=55.0, inc_e=3.0, inc_n=4, flag="A", method=method.name, version=method.version)], method)
    ConsensusInclination.objects.filter(method="m").delete()
    call_command("refresh_summaries", verbosity=0)  # a delete by hand: the command catches up
    assert stored(202, "consensus_inc") == 55.0 and stored(201, "consensus_inc") == 64.0  # the override stays
    assert_in_step()

    # A newly active model version: the CNN columns read it.
    new = ModelVersion.objects.create(name="cnn", version="1", architecture="vgg", weights_path="x", sha256="1" * 64)
    Prediction.objects.create(image=img, galaxy=g1, model_version=new, value=80.0, uncertainty=2.0, reject_likelihood=0.2)
    assert stored(201, "cnn_inc") == 70.0
    ModelVersion.objects.filter(pk=old.pk).update(active=False)
    new.active = True
    new.save()
    assert stored(201, "cnn_inc") == 80.0
    assert_in_step()

    # Deleting the image removes its predictions and fits, and their stored copies after the commit.
    with django_capture_on_commit_callbacks(execute=True):
        img.delete()
    assert stored(201, "cnn_inc") is None and stored(201, "fit_re") is None
    assert stored(203, "consensus_inc") is None
    assert_in_step()


def test_bulk_writes_by_sql_are_caught_up_by_the_command():
    from ml.models import ModelVersion, Prediction

    galaxies = [GalaxyFactory(pgc=300 + k, ra=20.0 + k, dec=1.0) for k in range(5)]
    mv = ModelVersion.objects.create(name="cnn", version="1", architecture="vgg", weights_path="x", sha256="2" * 64, active=True)
    for k, g in enumerate(galaxies):
        Prediction.objects.create(image=make_image(g, "r"), galaxy=g, model_version=mv, value=50.0 + k, uncertainty=1, reject_likelihood=0)
    Prediction.objects.update(value=F("value") + 10)  # no signal
    assert stored(302, "cnn_inc") == 52.0
    call_command("refresh_summaries", verbosity=0)
    assert stored(302, "cnn_inc") == 62.0
    assert_in_step()


def count_images() -> list[DerivedColumn]:
    """A derived column without a summary table: read through its subquery."""
    from django.db.models import Count, IntegerField, OuterRef, Subquery

    from catalog.models import Image

    def expression():
        rows = Image.objects.filter(galaxy=OuterRef("pk")).order_by().values("galaxy").annotate(n=Count("pk")).values("n")
        return Subquery(rows[:1], output_field=IntegerField())

    return [derived("n_images_test", "int", "", "meta.number", "Images of the galaxy", "cnn", expression)]


def test_a_column_without_a_summary_still_works(settings, client):
    settings.GALCAT_DERIVED_COLUMNS = [*settings.GALCAT_DERIVED_COLUMNS, "tests.catalog.test_summaries.count_images"]
    g = GalaxyFactory(pgc=401, ra=30.0, dec=2.0)
    make_image(g, "g")
    make_image(g, "r")
    col = next(c for c in derived_columns() if c.name == "n_images_test")
    assert not col.stored
    r = client.get("/galaxies/download.csv", {"columns": "pgc,n_images_test,consensus_inc"})
    assert r.status_code == 200
    assert response_body(r).decode().strip().splitlines()[-1] == "401,2,"


@pytest.mark.parametrize("ordering", ["consensus_inc", "-consensus_inc"])
def test_pages_sorted_by_a_summary_column_keep_their_order(client, ordering):
    """Browse and API pages sorted by a derived column fetch keys first (rows_by_keys): the same
    rows in the same order as one sorted query, nulls last, ties by pgc, across page boundaries."""
    from django.urls import reverse

    from zoo.models import ConsensusInclination

    values = {501: 40.0, 502: 70.0, 503: None, 504: 40.0, 505: 55.0, 506: None, 507: 70.0}
    for pgc, inc in values.items():
        g = GalaxyFactory(pgc=pgc, ra=20.0 + pgc / 100, dec=1.0)
        if pgc != 506:  # 506: no consensus row at all; 503: a row without a value
            ConsensusInclination.objects.create(galaxy=g, inc=inc, inc_e=1.0, inc_n=3, flag="A", method="m", version="1")
    GalaxyFactory(pgc=508, ra=None, dec=None)  # unlocated: left out
    desc = ordering.startswith("-")
    with_value = sorted((p for p, v in values.items() if v is not None), key=lambda p: (-values[p], p) if desc else (values[p], p))
    nulls = sorted((p for p, v in values.items() if v is None), reverse=False)
    expected = with_value + nulls

    shown = []
    for number in (1, 2, 3):
        r = client.get("/galaxies/", {"ordering": ordering, "per_page": 3, "page": number, "col": ["pgc", "consensus_inc"]})
        assert r.status_code == 200 and r.context["count"] == 7
        shown += [[v for c, v in row] for row in r.context["rows"]]
    assert shown == [[p, values[p]] for p in expected]

    # The API breaks ties by pgc in the sort's direction; nulls last either way.
    api_expected = sorted(with_value, key=lambda p: (-values[p], -p)) + sorted(nulls, reverse=True) if desc else expected
    url, got = reverse("galaxy-list"), []
    params = {"ordering": ordering, "page_size": 2, "fields": "pgc,consensus_inc,vhel"}
    while url:
        body = client.get(url, params).json()
        got += [(row["pgc"], row["consensus_inc"]) for row in body["results"]]
        url, params = body["next"], None
    assert got == [(p, values[p]) for p in api_expected]


def test_columns_count_public_images_only_and_follow_a_change_of_visibility(django_capture_on_commit_callbacks):
    from fitting.models import FitResult
    from ml.models import ModelVersion, Prediction

    g = GalaxyFactory(pgc=401, ra=40.0, dec=5.0)
    version = ModelVersion.objects.create(name="cnn", version="0", architecture="vgg", weights_path="x", sha256="0" * 64, active=True)
    public, private = make_image(g, "g"), make_image(g, "r")
    with django_capture_on_commit_callbacks(execute=True):
        private.is_public = False
        private.save(update_fields=["is_public"])
    for image, value in ((public, 70.0), (private, 80.0)):
        Prediction.objects.create(image=image, galaxy=g, model_version=version, value=value, uncertainty=1.0, reject_likelihood=0.1)
    FitResult.objects.create(image=private, model_kind="sersic", engine_version="1", re=12.5, n=1.1, q=0.3, chi2=2.0, dof=1, converged=True)
    assert (stored(401, "cnn_inc"), stored(401, "fit_re")) == (70.0, None)
    with django_capture_on_commit_callbacks(execute=True):
        private.is_public = True
        private.save(update_fields=["is_public"])
    assert (stored(401, "cnn_inc"), stored(401, "fit_re")) == (75.0, 12.5)
    with django_capture_on_commit_callbacks(execute=True):
        private.delete()
    assert (stored(401, "cnn_inc"), stored(401, "fit_re")) == (70.0, None)
    assert_in_step()
