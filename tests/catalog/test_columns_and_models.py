import numpy as np
import pytest
from django.db import IntegrityError, connection, transaction

from catalog.columns import BY_SOURCE, COLUMNS, resolve_columns
from catalog.models import Galaxy, GalaxyName
from catalog.names import normalise_name, pgc_from_name
from catalog.sky import healpix_index
from tests.factories import GalaxyFactory, UserFactory, VoteFactory
from zoo.models import InclinationVote


def test_registry_covers_every_edd_column(shared_data):
    header = [h.strip() for h in (shared_data / "edd_cf4_sample.txt").read_text().splitlines()[0].split("|")]
    assert len(header) == 140
    assert [h.lower() for h in header] == [c.source.lower() for c in COLUMNS]
    fields = {f.name: f for f in Galaxy._meta.get_fields()}
    for col in COLUMNS:
        assert col.name in fields, col.name
        assert fields[col.name].help_text.startswith(col.description)
        if col.unit:
            assert f"[{col.unit}]" in fields[col.name].help_text
    assert BY_SOURCE["vhel"].unit == "km/s"


def test_resolve_columns_rejects_unknown_names():
    assert [c.name for c in resolve_columns("pgc,RA,Vhel")] == ["pgc", "ra", "vhel"]
    with pytest.raises(ValueError, match="nonsense"):
        resolve_columns("pgc,nonsense")


@pytest.mark.parametrize(
    "a,b", [("NGC 4565", "ngc4565"), ("NGC  4565", "NGC4565"), ("UGC 07772", "ugc 7772"), ("ESO 123-G045", "eso123-g045")]
)
def test_name_normalisation(a, b):
    assert normalise_name(a) == normalise_name(b)


def test_pgc_from_name():
    assert pgc_from_name("PGC 042038") == 42038
    assert pgc_from_name("pgc42038") == 42038
    assert pgc_from_name("42038") == 42038
    assert pgc_from_name("NGC 4565") is None


@pytest.mark.django_db
def test_save_keeps_healpix_and_derived_coordinates_in_sync():
    # PGC 2 of the EDD table: gl 113.9553, gb -14.6992, sgl 341.6440, sgb 20.7388
    g = GalaxyFactory(ra=0.0070, dec=47.2745)
    assert g.healpix == int(healpix_index(0.0070, 47.2745)[0])
    assert (g.gl, g.gb, g.sgl, g.sgb) == pytest.approx((113.9553, -14.6992, 341.6440, 20.7388), abs=2e-3)
    g.ra, g.dec = 10.0, -30.0
    g.save()
    g.refresh_from_db()
    assert g.healpix == int(healpix_index(10.0, -30.0)[0])


@pytest.mark.django_db
def test_queryset_update_of_positions_without_healpix_is_refused():
    GalaxyFactory()
    with pytest.raises(ValueError, match="healpix"):
        Galaxy.objects.update(ra=1.0)


@pytest.mark.django_db
def test_database_refuses_position_without_healpix_and_out_of_range():
    with pytest.raises(IntegrityError), transaction.atomic():
        Galaxy.objects.bulk_create([Galaxy(pgc=1, ra=10.0, dec=10.0)])
    with pytest.raises(IntegrityError), transaction.atomic():
        Galaxy.objects.bulk_create([Galaxy(pgc=2, ra=400.0, dec=10.0, healpix=5)])
    with pytest.raises(ValueError, match="RA"):
        GalaxyFactory(ra=360.0, dec=0.0)
    with pytest.raises(ValueError, match="not finite"):
        GalaxyFactory(ra=10.0, dec=np.nan)
    with pytest.raises(ValueError, match="Dec"):
        GalaxyFactory(ra=10.0, dec=-90.5)


@pytest.mark.django_db
def test_alias_unique_after_normalisation():
    g = GalaxyFactory()
    GalaxyName.objects.create(galaxy=g, name="ngc  4565")
    assert GalaxyName.objects.get(galaxy=g).name == "NGC 4565"
    with pytest.raises(IntegrityError), transaction.atomic():
        GalaxyName.objects.create(galaxy=GalaxyFactory(), name="NGC4565")


@pytest.mark.django_db
def test_votes_are_append_only_even_in_sql():
    vote = VoteFactory()
    vote.inc = 80
    with pytest.raises(ValueError, match="append-only"):
        vote.save()
    with pytest.raises(IntegrityError, match="append-only"), transaction.atomic(), connection.cursor() as cur:
        cur.execute("UPDATE catalog_inclinationvote SET inc = 10 WHERE id = %s", [vote.pk])
    assert InclinationVote.objects.get(pk=vote.pk).inc == 70.0


@pytest.mark.django_db
def test_one_vote_per_volunteer_galaxy_and_round():
    user, galaxy = UserFactory(), GalaxyFactory()
    VoteFactory(user=user, galaxy=galaxy)
    with pytest.raises(IntegrityError), transaction.atomic():
        VoteFactory(user=user, galaxy=galaxy)
    VoteFactory(user=user, galaxy=galaxy, round=1)
    assert InclinationVote.objects.filter(user=user, galaxy=galaxy).count() == 2
