import pytest

from catalog.models import GalaxyName
from catalog.search import ConeQuery, NameQuery, SearchError, parse_query, resolve_name
from tests.factories import GalaxyFactory

# NGC 4565 = UGC 7772 = PGC 42038 at 12h36m20.8s +25d59m15s (HyperLEDA)
RA, DEC = 189.0867, 25.9875


@pytest.mark.parametrize(
    "text,key,pgc",
    [
        ("NGC 4565", "NGC4565", None),
        ("ngc4565", "NGC4565", None),
        ("PGC 42038", "PGC42038", 42038),
        ("pgc42038", "PGC42038", 42038),
        ("42038", "42038", 42038),
        ("UGC 7772", "UGC7772", None),
        ("ESO 123-G045", "ESO123-G045", None),
    ],
)
def test_names(text, key, pgc):
    q = parse_query(text)
    assert isinstance(q, NameQuery)
    assert (q.normalised, q.pgc) == (key, pgc)


@pytest.mark.parametrize(
    "text,r_deg",
    [
        ("189.0867 25.9875", 5 / 60),
        ("189.0867, +25.9875 5 arcmin", 5 / 60),
        ("12h36m20.8s +25d59m15s 30 arcsec", 30 / 3600),
        ("12:36:20.8 +25:59:15 0.1 deg", 0.1),
        ("12 36 20.8 +25 59 15, 2'", 2 / 60),
        ('12:36:20.8 +25:59:15 10"', 10 / 3600),
        ("189.0867 25.9875 r=1.5arcmin", 1.5 / 60),
    ],
)
def test_positions(text, r_deg):
    q = parse_query(text)
    assert isinstance(q, ConeQuery)
    assert q.ra == pytest.approx(RA, abs=2e-4)
    assert q.dec == pytest.approx(DEC, abs=2e-4)
    assert q.radius_deg == pytest.approx(r_deg)


@pytest.mark.parametrize(
    "text,msg",
    [
        ("", "Type a galaxy name"),
        ("   ", "Type a galaxy name"),
        ("189.0 95.0", "outside"),
        ("400 10", "RA 400"),
        ("12:36:20.8 +95:00:00", "Cannot read"),
        ("189 25 5 parsecs", "Cannot read"),
        ("189 25 0.5", "two numbers"),
        ("hello world!", "Cannot read"),
        ("189 25 120 deg", "larger than"),
        ("NGC 4565 5 arcmin", "not a position"),
        ("3.5", "one number"),
        ("x" * 300, "longer than"),
    ],
)
def test_unreadable_text_gets_a_clear_message(text, msg):
    with pytest.raises(SearchError, match=msg):
        parse_query(text)


@pytest.mark.django_db
def test_resolve_by_alias_and_pgc():
    g = GalaxyFactory(pgc=42038, ra=RA, dec=DEC)
    GalaxyName.objects.create(galaxy=g, name="NGC 4565")
    GalaxyName.objects.create(galaxy=g, name="UGC 07772")
    for text in ("NGC 4565", "ngc4565", "PGC 42038", "pgc42038", "42038", "UGC 7772"):
        assert resolve_name(parse_query(text)) == g, text
    assert resolve_name(parse_query("NGC 1")) is None


# ---------------------------------------------------------------------------------------------
# OpenNGC names (pyongc's database, the real rows)
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def openngc(db, tmp_path):
    from catalog.importers.tables import import_catalog
    from tests.catalog.openngc_data import openngc_subset

    return import_catalog(openngc_subset(tmp_path), "openngc")


@pytest.mark.parametrize(
    "text", ["M31", "m 31", "Andromeda", "andromeda galaxy", "NGC 224", "UGC 454", "MCG +07-02-016", "PGC 2557", "2557"]
)
def test_openngc_names_resolve(openngc, text):
    g = resolve_name(parse_query(text))
    assert g is not None and g.pgc == 2557, text


@pytest.mark.parametrize("text", ["NGC 4565", "ngc4565", "UGC 7772", "Needle Galaxy", '"Needle Galaxy"', "C 38", "IRAS 12338+2615"])
def test_needle_galaxy_by_every_name(openngc, text):
    g = resolve_name(parse_query(text))
    assert g is not None and g.pgc == 42038, text
    assert g.ra == pytest.approx(RA, abs=1e-3) and g.dec == pytest.approx(DEC, abs=1e-3)
    assert g.d25 == pytest.approx(16.75) and g.b_a == pytest.approx(2.89 / 16.75, abs=1e-3) and g.type == "Sb"


def test_openngc_import_counts_and_reimport_is_idempotent(openngc, tmp_path):
    from catalog.importers.tables import import_catalog
    from catalog.models import Galaxy
    from tests.catalog.openngc_data import NAMES

    assert openngc.created == len(NAMES) and not openngc.problems
    n_names = GalaxyName.objects.count()
    again = import_catalog(tmp_path / "ongc.db", "openngc")
    assert (again.created, again.updated) == (0, len(NAMES))
    assert GalaxyName.objects.count() == n_names
    assert Galaxy.objects.located().count() == len(NAMES)


def test_openngc_merges_by_pgc_with_an_existing_galaxy(db, tmp_path):
    """A galaxy that votes or images created (pgc only, no position) gets its position and names."""
    from catalog.importers.tables import import_catalog
    from catalog.models import Galaxy
    from tests.catalog.openngc_data import openngc_subset

    Galaxy.objects.create(pgc=1844)
    import_catalog(openngc_subset(tmp_path), "openngc")
    g = Galaxy.objects.get(pgc=1844)
    assert g.has_position and g.healpix is not None
    assert {"NGC 132", "UGC 301"} <= set(g.names.values_list("name", flat=True))


def test_not_a_database_is_a_clear_problem(db, tmp_path):
    from catalog.importers.report import ImportValidationError
    from catalog.importers.tables import import_catalog

    bad = tmp_path / "ongc.db"
    bad.write_text("pgc,ra\n1,2\n")
    with pytest.raises(ImportValidationError, match="OpenNGC"):
        import_catalog(bad, "openngc")


def test_near_matches_for_a_name_not_found(openngc):
    from catalog.search import near_matches

    q = parse_query("NGC 4566")
    assert resolve_name(q) is None
    names = [n for n, _ in near_matches(q)]
    assert "NGC 4565" in names and "NGC 4567" in names
    assert [n for n, _ in near_matches(parse_query("Needle"))][:1] == ["Needle Galaxy"]
    assert "Andromeda Galaxy" in [n for n, _ in near_matches(parse_query("Andromda Galaxy"))]


def test_search_page_not_found_says_so_and_suggests(openngc, client):
    r = client.get("/galaxies/", {"q": "NGC 4566"})
    body = r.content.decode()
    assert r.status_code == 200
    assert "No galaxy called" in body and 'href="/galaxies/42038/"' in body


@pytest.mark.parametrize("text,pgc", [("M31", 2557), ("Andromeda", 2557), ("NGC 4565", 42038), ("Needle Galaxy", 42038)])
def test_search_box_redirects_to_the_galaxy(openngc, client, text, pgc):
    r = client.get("/galaxies/", {"q": text})
    assert r.status_code == 302 and r["Location"] == f"/galaxies/{pgc}/"


def test_search_box_position_example_finds_the_needle(openngc, client):
    r = client.get("/galaxies/", {"q": "189.086 25.988"})
    assert r.status_code == 200 and 'href="/galaxies/42038/"' in r.content.decode()


@pytest.mark.slow
def test_shared_sample_loads_openngc_so_the_image_galaxies_are_complete(db, shared_data, settings):
    from catalog.models import Galaxy
    from catalog.sample import load_shared_sample

    settings.GALCAT_SAMPLE_HOOKS = []  # votes and standards are tested with the zoo
    counts = load_shared_sample(shared_data, say=lambda _: None)
    assert counts["openngc"] > 10_000 and counts["galaxies"] == 98
    with_images = Galaxy.objects.filter(images__isnull=False).distinct()
    assert with_images.count() == 10
    assert sorted(with_images.filter(healpix__isnull=True).values_list("pgc", flat=True)) == [3738, 5440]  # not in OpenNGC
    for text, pgc in (("NGC 4565", 42038), ("M31", 2557), ("Andromeda", 2557), ("UGC 7772", 42038), ("Needle Galaxy", 42038)):
        assert resolve_name(parse_query(text)).pgc == pgc
    assert Galaxy.objects.get(pgc=2).inc is not None  # EDD's own columns kept (imported after OpenNGC)
