import csv
import io

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from catalog.columns import BY_NAME, COLUMNS
from catalog.cone import galaxies_in_cone
from catalog.exports import ExportError, stream_table
from catalog.models import Galaxy
from tests.utils import read_votable, response_body


def _csv_rows(data: bytes) -> tuple[list[str], list[list[str]], list[str]]:
    lines = data.decode().splitlines()
    comments = [ln for ln in lines if ln.startswith("#")]
    reader = list(csv.reader([ln for ln in lines if not ln.startswith("#")]))
    return reader[0], reader[1:], comments


def test_csv_round_trip_of_every_column(edd_galaxies):
    data = b"".join(stream_table(Galaxy.objects.located().order_by("pgc"), "csv", "all", {"query": "everything"}))
    header, rows, comments = _csv_rows(data)
    assert header[: len(COLUMNS)] == [c.name for c in COLUMNS]
    assert len(rows) == 98
    assert "# rows: 98" in comments and "# query: everything" in comments
    assert any(c.startswith("#   vhel [km/s] (spect.dopplerVeloc.opt;pos.heliocentric): Heliocentric velocity") for c in comments)
    by_pgc = {int(r[0]): dict(zip(header, r, strict=True)) for r in rows}
    for g in Galaxy.objects.located():
        row = by_pgc[g.pgc]
        for col in COLUMNS:
            value = getattr(g, col.name)
            text = row[col.name]
            if value is None:
                assert text == "", (g.pgc, col.name)
            elif col.kind == "float":
                assert float(text) == value, (g.pgc, col.name)  # shortest round-trip text: exact
            elif col.kind in ("bool", "flag"):
                assert text == str(int(value))
            elif col.kind == "int":
                assert int(text) == value
            else:
                assert text == value


def test_votable_reads_back_with_units_ucds_descriptions(edd_galaxies):
    data = b"".join(stream_table(Galaxy.objects.located().order_by("pgc"), "votable", "all", {"query": "q=all"}))
    votable = read_votable(data)
    fields = {f.name: f for f in votable.fields}
    for col in COLUMNS:
        f = fields[col.name]
        assert f.ucd == col.ucd
        if col.unit:
            assert f.unit == u.Unit(col.unit, format="cds"), col.name
        else:
            assert f.unit is None
        assert f.description == col.description
    table = votable.to_table()
    assert len(table) == 98
    galaxies = {g.pgc: g for g in Galaxy.objects.located()}
    for row in table:
        g = galaxies[int(row["pgc"])]
        assert row["ra"] == g.ra and row["dec"] == g.dec
        assert ("" if np.ma.is_masked(row["note"]) else row["note"]) == g.note
        if g.vhel is None:
            assert np.ma.is_masked(row["vhel"])
        else:
            assert row["vhel"] == g.vhel
        assert bool(row["fon"]) == g.fon


def test_votable_escapes_xml_and_control_characters(db):
    from tests.factories import GalaxyFactory

    GalaxyFactory(pgc=1, ra=1.0, dec=1.0, note='a <b> & "c" \\ back\tslash\nnew\x01line', type="S<c>")
    data = b"".join(stream_table(Galaxy.objects.all(), "votable", "pgc,type,note", None))
    row = read_votable(data).to_table()[0]
    assert row["type"] == "S<c>"
    assert row["note"] == 'a <b> & "c" \\ back\tslash\nnewline'


def test_fits_reads_back_with_units_ucds_and_nulls(edd_galaxies):
    qs = Galaxy.objects.located().order_by("pgc")
    data = b"".join(stream_table(qs, "fits", "pgc,ra,dec,vhel,d25,type,note,fon,inc_flg,inc_n", {"release": "test"}))
    assert len(data) % 2880 == 0
    with fits.open(io.BytesIO(data)) as hdul:
        hdul.verify("exception")
        assert any("release: test" in str(c) for c in hdul[0].header["COMMENT"])
        h = hdul[1].header
        assert h["NAXIS2"] == 98
        assert h["TUNIT4"] == "km/s" and h["TUCD4"] == BY_NAME["vhel"].ucd
        assert h["TCOMM5"].startswith("Major-axis diameter")
    table = Table.read(io.BytesIO(data), hdu=1)
    galaxies = {g.pgc: g for g in qs}
    assert sorted(table["pgc"].tolist()) == sorted(galaxies)
    for row in table:
        g = galaxies[int(row["pgc"])]
        assert row["ra"] == g.ra and row["dec"] == g.dec
        assert np.isnan(row["d25"]) if g.d25 is None else row["d25"] == g.d25
        assert ("" if np.ma.is_masked(row["type"]) else row["type"]) == g.type  # astropy masks empty strings
        assert bool(row["fon"]) == g.fon


def test_cone_export_carries_distance(edd_galaxies):
    g = Galaxy.objects.located().first()
    data = b"".join(stream_table(galaxies_in_cone(g.ra, g.dec, 5.0), "csv", None, None))
    header, rows, _ = _csv_rows(data)
    assert header[-1] == "distance"
    assert float(rows[0][-1]) == 0.0 and int(rows[0][0]) == g.pgc
    assert [float(r[-1]) for r in rows] == sorted(float(r[-1]) for r in rows)


def test_bad_export_requests_fail_before_any_byte(db):
    with pytest.raises(ExportError, match="unknown column"):
        stream_table(Galaxy.objects.all(), "csv", "pgc,nonsense", None)
    with pytest.raises(ExportError, match="unknown format"):
        stream_table(Galaxy.objects.all(), "xlsx", None, None)
    with pytest.raises(ExportError, match="distance"):
        stream_table(Galaxy.objects.all(), "csv", "pgc,distance", None)


def test_download_views_stream_filtered_results(client, edd_galaxies):
    r = client.get("/galaxies/download.csv", {"inc_min": 80, "columns": "pgc,inc"})
    assert r.status_code == 200 and r.streaming
    assert r["Content-Type"].startswith("text/csv")
    header, rows, comments = _csv_rows(response_body(r))
    assert header == ["pgc", "inc"]
    assert rows and all(float(x[1]) >= 80 for x in rows)
    assert len(rows) == Galaxy.objects.filter(inc__gte=80).count()
    assert any("inc_min=80" in c for c in comments)
    r = client.get("/galaxies/download.votable", {"q": "0.007 47.2745 3 deg"})
    t = read_votable(response_body(r)).to_table()
    assert t["pgc"][0] == 2 and "distance" in t.colnames
    r = client.get("/galaxies/download.fits", {"col": ["pgc", "vhel"]})
    assert Table.read(io.BytesIO(response_body(r))).colnames == ["pgc", "vhel"]


@pytest.mark.parametrize(
    "url,msg",
    [
        ("/galaxies/download.csv?columns=pgc,nonsense", "unknown column"),
        ("/galaxies/download.csv?inc_min=abc", "inc_min"),
        ("/galaxies/download.votable?q=hello+world!", "Cannot read"),
        ("/galaxies/download.fits?ra_center=10&dec_center=95&radius=1", "Dec"),
    ],
)
def test_bad_download_requests_answer_400(client, db, url, msg):
    r = client.get(url)
    assert r.status_code == 400
    assert msg in r.content.decode()


def test_unlocated_galaxies_are_left_out_unless_asked(client, db):
    from tests.factories import GalaxyFactory

    GalaxyFactory(pgc=1, ra=1.0, dec=1.0)
    Galaxy.objects.create(pgc=2)
    _, rows, _ = _csv_rows(response_body(client.get("/galaxies/download.csv?columns=pgc")))
    assert rows == [["1"]]
    _, rows, _ = _csv_rows(response_body(client.get("/galaxies/download.csv?columns=pgc&include_unlocated=true")))
    assert rows == [["1"], ["2"]]
