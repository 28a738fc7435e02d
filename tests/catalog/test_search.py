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
