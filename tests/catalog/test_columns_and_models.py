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


# ---------------------------------------------------------------------------------------------
# Derived columns: consensus, CNN, axis ratio and fit values as catalog columns
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def derived_rows(db):
    """Three located galaxies: 1 with consensus, CNN (two images) and a fit; 2 with a rejected
    consensus and a curator override; 3 with nothing derived."""
    from fitting.models import FitResult
    from ml.models import ModelVersion, Prediction
    from tests.factories import make_image
    from zoo.models import ConsensusInclination, ConsensusOverride

    g1, g2, g3 = (GalaxyFactory(pgc=p, ra=10.0 + p, dec=5.0) for p in (101, 102, 103))
    ConsensusInclination.objects.create(galaxy=g1, inc=71.5, inc_e=2.5, inc_n=6, flag="A", method="m", version="1")
    ConsensusInclination.objects.create(galaxy=g2, inc=None, inc_e=None, inc_n=4, flag="J", method="m", version="1")
    ConsensusOverride.objects.create(galaxy=g2, curator=UserFactory(), inc=60.0, inc_e=3.0, flag="A", reason="looked")
    old = ModelVersion.objects.create(name="cnn", version="0", architecture="vgg", weights_path="x", sha256="0" * 64)
    mv = ModelVersion.objects.create(name="cnn", version="1", architecture="vgg", weights_path="x", sha256="1" * 64, active=True)
    img_g, img_r = make_image(g1, "g"), make_image(g1, "r")
    for img, value, std, rej, base in ((img_g, 70.0, 1.0, 0.1, 66.0), (img_r, 74.0, 3.0, 0.3, 68.0)):
        Prediction.objects.create(
            image=img, galaxy=g1, model_version=mv, value=value, uncertainty=std, reject_likelihood=rej, axis_ratio_inc=base
        )
    Prediction.objects.create(image=img_g, galaxy=g1, model_version=old, value=10.0, uncertainty=1.0, reject_likelihood=0.9)
    FitResult.objects.create(
        image=img_g, model_kind="sersic", engine_version="1", re=12.5, re_err=0.4, n=1.1, n_err=0.05, q=0.31, q_err=0.01,
        theta=3.0, chi2=200.0, dof=100, converged=True,
    )  # fmt: skip
    return g1, g2, g3


DERIVED_NAMES = "pgc,consensus_inc,consensus_inc_e,consensus_inc_n,consensus_flag,cnn_inc,cnn_inc_std,cnn_reject,axis_ratio_inc,fit_model,fit_re,fit_re_e,fit_n,fit_q,fit_q_e,fit_chi2_dof"  # noqa: E501


def test_derived_columns_in_the_api_with_their_values(derived_rows, client):
    rows = client.get("/api/v1/galaxies/", {"fields": DERIVED_NAMES}).json()["results"]
    by_pgc = {r["pgc"]: r for r in rows}
    r1, r2, r3 = by_pgc[101], by_pgc[102], by_pgc[103]
    assert (r1["consensus_inc"], r1["consensus_inc_e"], r1["consensus_inc_n"], r1["consensus_flag"]) == (71.5, 2.5, 6, "A")
    assert r1["cnn_inc"] == pytest.approx(72.0) and r1["cnn_inc_std"] == pytest.approx(2.0)  # active model only
    assert r1["cnn_reject"] == pytest.approx(0.2) and r1["axis_ratio_inc"] == pytest.approx(67.0)
    assert (r1["fit_model"], r1["fit_re"], r1["fit_q_e"], r1["fit_chi2_dof"]) == ("sersic", 12.5, 0.01, 2.0)
    assert (r2["consensus_inc"], r2["consensus_flag"], r2["consensus_inc_n"]) == (60.0, "A", 4)  # the override wins
    assert all(r3[k] is None for k in DERIVED_NAMES.split(",")[1:] if k != "consensus_flag")
    every = client.get("/api/v1/galaxies/", {"fields": "all"}).json()["results"][0]
    assert {"consensus_inc", "cnn_inc", "fit_n_e", "axis_ratio_inc"} <= set(every)


def test_derived_filters_and_sorting(derived_rows, client):
    def pgcs(**params):
        r = client.get("/api/v1/galaxies/", {"fields": "pgc", **params})
        assert r.status_code == 200, r.content
        return [g["pgc"] for g in r.json()["results"]]

    assert pgcs(consensus_inc_min=65) == [101]
    assert pgcs(consensus_inc_max=65) == [102]
    assert pgcs(cnn_inc_min=71, cnn_inc_max=73) == [101]
    assert pgcs(consensus_flag="A") == [101, 102]
    assert pgcs(fit_q_max=0.5) == [101]
    assert pgcs(ordering="-consensus_inc") == [101, 102, 103]
    assert client.get("/api/v1/galaxies/", {"consensus_inc_min": "x"}).status_code == 400


def test_derived_columns_on_the_browse_page(derived_rows, client):
    r = client.get("/galaxies/", {"col": ["pgc", "consensus_inc", "cnn_inc"], "consensus_inc_min": 70})
    body = r.content.decode()
    assert r.status_code == 200 and "consensus_inc [deg]" in body and "71.5" in body and "72.0" in body
    assert 'href="/galaxies/102/"' not in body
    assert 'value="fit_re"' in client.get("/galaxies/").content.decode()  # in the column chooser


def test_votable_download_of_derived_columns_parses_with_units(derived_rows, client):
    from tests.utils import read_votable, response_body

    r = client.get("/galaxies/download.votable", {"columns": DERIVED_NAMES, "ordering": "pgc"})
    assert r.status_code == 200
    table = read_votable(response_body(r), allow=("stat.fit.chi2", "src.morph.param")).to_table()
    assert str(table["consensus_inc"].unit) == "deg" and str(table["fit_re"].unit) == "pix"
    assert table["consensus_inc"][0] == 71.5 and table["cnn_inc"][0] == pytest.approx(72.0)
    assert list(table["consensus_flag"][:2]) == ["A", "A"]
    csv = response_body(client.get("/galaxies/download.csv", {"columns": "all"})).decode()
    assert "#   consensus_inc [deg] (src.orbital.inclination)" in csv and "fit_chi2_dof" in csv.splitlines()[-4]


def test_release_freezes_derived_values(derived_rows):
    from catalog.exports import stream_table
    from catalog.releases import make_release
    from ml.models import Prediction
    from tests.utils import read_votable

    release = make_release("Derived", "1", columns="pgc,consensus_inc,cnn_inc,fit_n", publish=True)
    Prediction.objects.update(value=50.0)  # later changes do not reach the frozen rows
    table = read_votable(b"".join(stream_table(release, "votable"))).to_table()
    assert list(table["pgc"]) == [101, 102, 103]
    assert table["cnn_inc"][0] == pytest.approx(72.0) and str(table["cnn_inc"].unit) == "deg"
    assert table["fit_n"][0] == pytest.approx(1.1) and table["consensus_inc"][1] == 60.0


def test_unknown_column_still_named(db, client):
    r = client.get("/galaxies/download.csv", {"columns": "consensus_inc,nope"})
    assert r.status_code == 400 and "nope" in r.content.decode() and "consensus_inc" not in r.content.decode()
