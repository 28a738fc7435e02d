import io

import pytest
from astropy.io.votable import parse

from catalog.models import Galaxy
from catalog.releases import make_release
from tests.utils import read_votable as _read_votable
from tests.utils import response_body

# SCS 1.03 requires these UCD1 words, which astropy checks against the UCD1+ list.
SCS_UCD1 = ("ID_MAIN", "POS_EQ_RA_MAIN", "POS_EQ_DEC_MAIN")


def read_votable(data: bytes):
    return _read_votable(data, allow=SCS_UCD1)


def _error_of(data: bytes) -> str:
    vot = parse(io.BytesIO(data))
    infos = [i for r in vot.resources for i in r.infos if i.name == "Error"]
    assert len(infos) == 1
    return infos[0].value


def test_scs_answers_a_votable_with_the_three_required_ucds(client, edd_galaxies):
    r = client.get("/scs/", {"RA": "0.007", "DEC": "47.2745", "SR": "3"})
    assert r.status_code == 200 and r["Content-Type"].startswith("text/xml")
    vot = read_votable(response_body(r))
    ucds = [f.ucd for f in vot.fields]
    for required in ("ID_MAIN", "POS_EQ_RA_MAIN", "POS_EQ_DEC_MAIN"):
        assert ucds.count(required) == 1
    t = vot.to_table()
    assert t["pgc"][0] == 2 and t["distance"][0] == 0.0
    assert list(t["distance"]) == sorted(t["distance"])
    assert all(d <= 3 for d in t["distance"])


def test_verb_changes_the_columns_and_sr0_gives_metadata(client, edd_galaxies):
    names = {}
    for verb in (1, 2, 3):
        vot = read_votable(response_body(client.get("/scs/", {"RA": 0.007, "DEC": 47.2745, "SR": 1, "VERB": verb})))
        names[verb] = [f.name for f in vot.fields]
    assert names[1] == ["pgc", "ra", "dec", "distance"]
    assert len(names[1]) < len(names[2]) < len(names[3]) == 141
    meta = read_votable(response_body(client.get("/scs/", {"RA": 0.007, "DEC": 47.2745, "SR": 0})))
    assert len(meta.fields) > 3 and len(meta.to_table()) == 0


@pytest.mark.parametrize(
    "params,msg",
    [
        ({"RA": "abc", "DEC": 10, "SR": 1}, "RA='abc' is not a decimal number"),
        ({"RA": 10, "DEC": 95, "SR": 1}, "DEC=95 is outside"),
        ({"RA": 10, "DEC": 10, "SR": -1}, "SR=-1 is negative"),
        ({"RA": 10, "DEC": 10, "SR": 45}, "maximum search radius"),
        ({"RA": 10, "SR": 1}, "DEC is missing"),
        ({"RA": 10, "DEC": 10, "SR": 1, "VERB": 7}, "VERB"),
        ({"RA": 10, "DEC": 10, "SR": "nan"}, "finite"),
    ],
)
def test_bad_requests_answer_an_error_votable(client, db, params, msg):
    r = client.get("/scs/", params)
    assert r.status_code == 400
    assert msg in _error_of(response_body(r))


def test_scs_on_a_published_release_searches_its_frozen_rows(client, edd_galaxies):
    make_release("SCS", "1", query={"inc_min": "80"}, columns="pgc,ra,dec,inc", publish=True)
    t = read_votable(response_body(client.get("/scs/scs-v1/", {"RA": 0.007, "DEC": 47.2745, "SR": 10, "VERB": 3}))).to_table()
    assert len(t) > 0 and all(v >= 80 for v in t["inc"])
    assert t.colnames == ["pgc", "ra", "dec", "inc", "distance"]
    assert set(t["pgc"]) <= set(Galaxy.objects.filter(inc__gte=80).values_list("pgc", flat=True))


@pytest.mark.slow
def test_pyvo_reads_the_live_service(live_server, edd_galaxies):
    import pyvo

    service = pyvo.dal.SCSService(f"{live_server.url}/scs/")
    result = service.search(pos=(0.007, 47.2745), radius=3.0)
    table = result.to_table()
    assert len(table) > 0 and int(table["pgc"][0]) == 2
    assert result.fieldname_with_ucd("ID_MAIN") == "pgc"
    assert result.fieldname_with_ucd("POS_EQ_RA_MAIN") == "ra"
    with pytest.raises(pyvo.dal.DALQueryError, match="maximum search radius"):
        service.search(pos=(0.007, 47.2745), radius=40.0)
