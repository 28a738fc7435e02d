import multiprocessing
import os
import signal
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import psutil
import pytest
from astropy.table import Table
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connection, transaction
from django.test import override_settings

from catalog.importers import report as report_module
from catalog.importers import tables
from catalog.importers.report import ImportValidationError
from catalog.importers.tables import import_catalog
from catalog.models import Galaxy, GalaxyName
from catalog.sky import healpix_index
from jobs.models import Job
from tests.catalog.tables import edd_lines, replace_cell, write_csv, write_edd

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.django_db


def test_shared_edd_table_imports_with_zeros_as_null(shared_data):
    report = import_catalog(shared_data / "edd_cf4_sample.txt")
    assert (report.rows_read, report.created, report.updated) == (98, 98, 0)
    assert Galaxy.objects.count() == 98
    g2 = Galaxy.objects.get(pgc=2)
    assert g2.ra == pytest.approx(0.0070) and g2.dec == pytest.approx(47.2745)
    assert g2.u_mag is None and g2.ebv is None  # zeros mean "not measured"
    assert g2.w1_mag == pytest.approx(11.86)
    assert g2.inc == 52 and g2.inc_e == 4 and g2.inc_n == 5 and g2.inc_flg == 0
    assert g2.healpix == int(healpix_index(0.0070, 47.2745)[0])
    assert g2.sdss is False and g2.qa_wise is True
    g4 = Galaxy.objects.get(pgc=4)
    assert g4.type == "Sc" and g4.g_mag == pytest.approx(16.43) and g4.sqlt == 5
    assert Galaxy.objects.filter(dst=True).exists()  # 'D' letters became True
    assert not Galaxy.objects.filter(healpix__isnull=True).exists()


def test_reimport_upserts_by_pgc(shared_data):
    import_catalog(shared_data / "edd_cf4_sample.txt")
    report = import_catalog(shared_data / "edd_cf4_sample.txt")
    assert (report.created, report.updated) == (0, 98)
    assert Galaxy.objects.count() == 98


def _expect_problem(path, fmt=None, *, line=None, column=None, words="", count_before=0):
    with pytest.raises(ImportValidationError) as info:
        import_catalog(path, fmt)
    problems = info.value.report.problems
    assert problems, "a problem must be reported"
    match = [p for p in problems if (line is None or p.line == line) and (column is None or p.column == column)]
    assert match, f"no problem at line {line} column {column}: {problems}"
    assert words.lower() in str(match[0]).lower()
    assert Galaxy.objects.count() == count_before, "nothing may be written"
    return problems


@pytest.mark.parametrize(
    "column,value,words",
    [
        ("Vhel", "fast", "expected a number"),
        ("ra", "360.5", "outside [0, 360)"),
        ("ra", "-1", "outside [0, 360)"),
        ("dec", "95", "outside [-90, 90]"),
        ("d25", "NaN", "NaN"),
        ("ty", "inf", "infinite"),
        ("dst", "X", "flag letter"),
        ("sdss", "2", "expected 0 or 1"),
        ("inc_n", "3.5", "integer"),
    ],
)
def test_bad_cells_are_reported_with_line_and_column(tmp_path, shared_data, column, value, words):
    lines = replace_cell(edd_lines(shared_data, 5), 3, column, value)
    _expect_problem(write_edd(tmp_path, lines), line=4, column=column, words=words)


def test_truncated_line_and_wrong_column_count(tmp_path, shared_data):
    lines = edd_lines(shared_data, 5)
    lines[2] = lines[2][: len(lines[2]) // 2]
    lines[4] = lines[4] + "| extra "
    problems = _expect_problem(write_edd(tmp_path, lines), line=3, words="expected 140 columns")
    assert any(p.line == 5 for p in problems)


def test_duplicate_pgc_in_one_file(tmp_path, shared_data):
    lines = edd_lines(shared_data, 4)
    lines.append(lines[2])
    _expect_problem(write_edd(tmp_path, lines), line=6, column="pgc", words="duplicate pgc")


def test_empty_binary_and_headless_files(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    _expect_problem(empty, words="empty")
    garbage = tmp_path / "garbage.txt"
    garbage.write_bytes(bytes(range(256)) * 20)
    _expect_problem(garbage, words="binary")
    latin = tmp_path / "latin.csv"
    latin.write_bytes("pgc,ra,dec\n1,10,10\n2,\xe9,3\n".encode("latin-1"))
    _expect_problem(latin, words="not UTF-8")
    header_only = tmp_path / "h.csv"
    header_only.write_text("pgc,ra,dec\n")
    _expect_problem(header_only, words="no rows")
    nopgc = tmp_path / "nopgc.csv"
    nopgc.write_text("ra,dec\n1,2\n")
    _expect_problem(nopgc, words="no pgc column")


def test_one_bad_row_blocks_all_unless_partial(tmp_path, shared_data):
    lines = replace_cell(edd_lines(shared_data, 10), 5, "dec", "-91")
    path = write_edd(tmp_path, lines)
    _expect_problem(path, line=6, column="dec")
    report = import_catalog(path, partial=True)
    assert report.created == 9 and report.skipped == 1
    assert Galaxy.objects.count() == 9


def test_csv_with_names_fills_placeholder_position(tmp_path):
    Galaxy.objects.bulk_create([Galaxy(pgc=42038)])  # known only by pgc, as votes create them
    path = tmp_path / "t.csv"
    path.write_text("pgc,ra,dec,vhel,name,comment\n42038,189.08658,25.98767,1230,NGC 4565;UGC 7772,nice\n")
    report = import_catalog(path)
    assert report.updated == 1 and report.created == 0
    assert any("comment" in w for w in report.warnings)
    g = Galaxy.objects.get(pgc=42038)
    assert g.healpix is not None and g.gl is not None and g.vhel == 1230
    assert set(GalaxyName.objects.filter(galaxy=g).values_list("normalised", flat=True)) == {"NGC4565", "UGC7772"}


def test_csv_name_already_used_by_other_galaxy_is_refused(tmp_path):
    Galaxy.objects.create(pgc=1, ra=1, dec=1)
    GalaxyName.objects.create(galaxy_id=1, name="NGC 1")
    path = tmp_path / "t.csv"
    path.write_text("pgc,ra,dec,name\n2,2,2,ngc1\n")
    _expect_problem_keep = pytest.raises(ImportValidationError)
    with _expect_problem_keep as info:
        import_catalog(path)
    assert "already belongs to PGC 1" in str(info.value)
    assert not Galaxy.objects.filter(pgc=2).exists()


@pytest.mark.parametrize("fmt,suffix", [("votable", ".xml"), ("fits", ".fits")])
def test_votable_and_fits_tables(tmp_path, fmt, suffix):
    t = Table({"pgc": [10, 11], "ra": [359.99, 0.01], "dec": [-89.5, 89.5], "Vhel": [1000.0, np.nan], "type": ["Sb", "Sc"]})
    t["Vhel"] = np.ma.masked_invalid(t["Vhel"])
    path = tmp_path / f"t{suffix}"
    t.write(path, format="votable" if fmt == "votable" else "fits")
    report = import_catalog(path)
    assert report.created == 2
    assert Galaxy.objects.get(pgc=10).vhel == 1000.0
    assert Galaxy.objects.get(pgc=11).vhel is None
    bad = Table({"pgc": [12], "ra": [10.0], "dec": [95.0]})
    bad_path = tmp_path / f"bad{suffix}"
    bad.write(bad_path, format="votable" if fmt == "votable" else "fits")
    with pytest.raises(ImportValidationError, match="outside"):
        import_catalog(bad_path)
    garbage = tmp_path / f"garbage{suffix}"
    garbage.write_bytes(b"\x00\x01 not a table" * 50)
    with pytest.raises(ImportValidationError, match="cannot read"):
        import_catalog(garbage)
    assert Galaxy.objects.count() == 2


def test_command_fails_with_message_and_records_failed_job(tmp_path, shared_data, capsys):
    lines = replace_cell(edd_lines(shared_data, 3), 2, "ra", "abc")
    path = write_edd(tmp_path, lines)
    with pytest.raises(CommandError, match="line 3, column ra"):
        call_command("import_catalog", str(path), verbosity=0)
    job = Job.objects.get(kind="import_catalog")
    assert job.status == Job.Status.FAILED and "line 3" in job.error
    assert Galaxy.objects.count() == 0
    call_command("import_catalog", str(shared_data / "edd_cf4_sample.txt"), verbosity=0)
    assert Job.objects.filter(kind="import_catalog", status=Job.Status.SUCCEEDED, done=98, total=98).exists()


# ---------------------------------------------------------------------------------------------
# The streaming path: partial updates, positions, names, all-or-nothing, flat memory
# ---------------------------------------------------------------------------------------------
def _no_stage_left() -> bool:
    with connection.cursor() as cur:
        cur.execute("SELECT to_regclass(%s), to_regclass(%s)", [tables.STAGE, tables.STAGE_NAMES])
        return cur.fetchone() == (None, None)


def _positions_consistent() -> None:
    for pgc, ra, dec, hp in Galaxy.objects.values_list("pgc", "ra", "dec", "healpix"):
        assert (ra is None) == (dec is None) == (hp is None), pgc
        if ra is not None:
            assert hp == int(healpix_index(ra, dec)[0]), pgc


def test_reimport_updates_only_the_columns_present(tmp_path):
    first = tmp_path / "a.csv"
    first.write_text("pgc,ra,dec,vhel,d25,type\n1,10,20,1500,1.2,Sb\n2,11,21,1600,1.3,Sc\n")
    import_catalog(first)
    before = Galaxy.objects.get(pgc=1)
    second = tmp_path / "b.csv"
    second.write_text("pgc,d25\n1,2.5\n3,0.7\n")
    report = import_catalog(second)
    assert (report.created, report.updated) == (1, 1)
    g1 = Galaxy.objects.get(pgc=1)
    assert g1.d25 == 2.5 and g1.vhel == 1500 and g1.type == "Sb" and (g1.ra, g1.dec) == (10, 20)
    assert g1.healpix == before.healpix and g1.gl == before.gl
    assert g1.updated > before.updated and g1.created == before.created
    assert Galaxy.objects.get(pgc=2).d25 == 1.3  # not in the second file: untouched
    g3 = Galaxy.objects.get(pgc=3)
    assert g3.d25 == 0.7 and g3.ra is None and g3.healpix is None and g3.type == ""
    _positions_consistent()


def test_reimport_out_of_pgc_order_into_a_bigger_table(tmp_path):
    import_catalog(write_csv(tmp_path / "a.csv", 30))
    path = tmp_path / "b.csv"  # fewer rows than galaxies there (found by primary key), pgc not in order
    path.write_text("pgc,ra,dec,d25\n20,100,10,2.5\n31,101,11,0.5\n5,102,12,3.5\n12,,,4.5\n")
    report = import_catalog(path)
    assert (report.created, report.updated) == (1, 3)
    got = {g.pgc: (g.ra, g.dec, g.d25) for g in Galaxy.objects.filter(pgc__in=[5, 12, 20, 31])}
    assert got == {20: (100, 10, 2.5), 31: (101, 11, 0.5), 5: (102, 12, 3.5), 12: (None, None, 4.5)}
    assert Galaxy.objects.get(pgc=6).d25 == 1.6 and Galaxy.objects.count() == 31
    _positions_consistent()


def test_rows_past_either_end_of_the_pgc_range_and_in_its_gaps(tmp_path):
    """Rows outside the galaxies' pgc range are inserted without a lookup, the rest merged."""
    import_catalog(write_csv(tmp_path / "a.csv", 10, first=11))
    import_catalog(write_csv(tmp_path / "b.csv", 5, first=31))  # pgc 11-20 and 31-35
    path = tmp_path / "c.csv"
    path.write_text("pgc,ra,dec,d25\n3,10.5,-5.25,0.3\n15,20.5,5.5,1.5\n25,30.5,15.75,2.5\n40,40.5,25.5,4.0\n")
    report = import_catalog(path)
    assert (report.created, report.updated) == (3, 1)
    got = {g.pgc: (g.ra, g.dec, g.d25) for g in Galaxy.objects.filter(pgc__in=[3, 15, 25, 40])}
    assert got == {3: (10.5, -5.25, 0.3), 15: (20.5, 5.5, 1.5), 25: (30.5, 15.75, 2.5), 40: (40.5, 25.5, 4.0)}
    assert Galaxy.objects.get(pgc=15).vhel == 1015 and Galaxy.objects.get(pgc=3).vhel is None  # kept / not given
    assert Galaxy.objects.count() == 18 and GalaxyName.objects.filter(galaxy_id=15).exists()
    _positions_consistent()


def test_created_and_updated_counted_without_statistics(tmp_path):
    """The MERGE's created/updated come from PostgreSQL's statistics; with track_counts off
    (an operator's choice) they are counted from the rows instead."""
    import_catalog(write_csv(tmp_path / "a.csv", 30))
    path = tmp_path / "b.csv"
    path.write_text("pgc,d25\n4,2.5\n40,0.5\n29,3.5\n41,4.5\n42,0.1\n")
    with connection.cursor() as cur:
        cur.execute("SET LOCAL track_counts = off")
        report = import_catalog(path)
    assert (report.created, report.updated) == (3, 2)
    assert Galaxy.objects.get(pgc=29).d25 == 3.5 and Galaxy.objects.count() == 33


def test_placeholders_aliases_and_position_constraint(tmp_path):
    Galaxy.objects.bulk_create([Galaxy(pgc=7), Galaxy(pgc=8)])  # placeholders, as votes make them
    GalaxyName.objects.create(galaxy_id=8, name="UGC 8")
    path = tmp_path / "t.csv"
    path.write_text("pgc,ra,dec,gl,names\n7,12.5,-3.25,,NGC 7;ngc0007;Arp 7\n9,359.9,89.9,123.4,IC 9\n8,1,2,,ugc 8\n")
    report = import_catalog(path)
    assert (report.created, report.updated) == (1, 2)
    _positions_consistent()
    g7 = Galaxy.objects.get(pgc=7)
    assert g7.gl is not None and g7.sgb is not None  # derived where missing
    assert Galaxy.objects.get(pgc=9).gl == 123.4  # given: kept
    assert set(GalaxyName.objects.filter(galaxy_id=7).values_list("normalised", flat=True)) == {"NGC7", "ARP7"}
    assert GalaxyName.objects.filter(normalised="UGC8", galaxy_id=8).count() == 1
    moved = tmp_path / "m.csv"
    moved.write_text("pgc,ra,dec\n7,200,10\n")
    import_catalog(moved)
    assert Galaxy.objects.get(pgc=7).healpix == int(healpix_index(200, 10)[0])
    _positions_consistent()
    half = tmp_path / "h.csv"
    half.write_text("pgc,ra,dec\n7,,10\n")
    _expect_problem(half, line=2, column="ra", words="together", count_before=3)
    only_ra = tmp_path / "r.csv"
    only_ra.write_text("pgc,ra\n7,10\n")
    _expect_problem(only_ra, words="ra without dec", count_before=3)
    clash = tmp_path / "c.csv"
    clash.write_text("pgc,name\n20,NGC 77\n21,ngc77\n22,arp 7\n")
    problems = _expect_problem(clash, line=3, column="name", words="also given to pgc 20 on line 2", count_before=3)
    assert any(p.line == 4 and "already belongs to PGC 7" in p.message for p in problems)
    assert Galaxy.objects.get(pgc=7).ra == 200 and not Galaxy.objects.filter(pgc__in=[20, 21, 22]).exists()


def test_duplicates_and_problems_across_chunks_keep_line_numbers(tmp_path, monkeypatch):
    monkeypatch.setattr(tables, "CHUNK_ROWS", 7)
    path = write_csv(tmp_path / "t.csv", 40, bad_rows={3: ("ra", "x"), 25: ("dec", "91")})
    with path.open("a") as f:
        f.write("10,1,1,1,1,TST 10b\n")  # line 42 repeats pgc 10 of line 11
    problems = _expect_problem(path, line=42, column="pgc", words="duplicate pgc 10 (also on 11)")
    assert [(p.line, p.column) for p in problems] == [(4, "ra"), (26, "dec"), (42, "pgc")]
    report = import_catalog(path, partial=True)
    assert (report.created, report.skipped) == (38, 3) and Galaxy.objects.count() == 38
    assert not Galaxy.objects.filter(pgc__in=[3, 25]).exists()
    assert GalaxyName.objects.get(normalised="TST10").galaxy_id == 10 and not GalaxyName.objects.filter(normalised="TST10B").exists()


def test_exception_mid_import_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(tables, "CHUNK_ROWS", 50)
    path = write_csv(tmp_path / "t.csv", 300)
    calls = []

    def progress(done, total):
        calls.append(done)
        if len(calls) == 3:
            raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        import_catalog(path, progress=progress)
    assert Galaxy.objects.count() == 0 and GalaxyName.objects.count() == 0
    assert _no_stage_left()
    report = import_catalog(path)  # and the next import works
    assert report.created == 300 and GalaxyName.objects.count() == 300


def _kill_when(proc: subprocess.Popen, find: Callable[[], list], every: float, never: str) -> list:
    """Kill a process (SIGKILL) as soon as find() returns something, asked every `every` s while
    it runs (at most 120 s); what find() returned. Fails with `never` if it never did."""
    found = []
    try:
        deadline = time.monotonic() + 120
        while not found and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(every)
            found = find()
        assert found, never
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    return found


@pytest.mark.django_db(transaction=True)
def test_killed_import_leaves_nothing(tmp_path):
    path = write_csv(tmp_path / "big.csv", 150_000)
    env = {**os.environ, "GALCAT_DB_NAME": connection.settings_dict["NAME"], "DJANGO_DEBUG": "0"}
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "import_catalog", str(path), "--verbosity", "0"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    writing = "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND query LIKE %s AND pid <> pg_backend_pid()"

    def writers() -> list[int]:
        with connection.cursor() as cur:
            # killed while it writes the galaxies, its rows staged and checked
            cur.execute(writing, [f"INSERT INTO {Galaxy._meta.db_table} %"])
            return [r[0] for r in cur.fetchall()]

    pids = _kill_when(proc, writers, 0.05, "the import never wrote galaxies")
    with connection.cursor() as cur:
        for _ in range(200):  # the server notices the closed connection and rolls back
            cur.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", [pids])
            if cur.fetchone()[0] == 0:
                break
            time.sleep(0.05)
        cur.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", [pids])
        assert cur.fetchone()[0] == 0
    assert Galaxy.objects.count() == 0 and GalaxyName.objects.count() == 0


def _peak_bytes(path: Path) -> int:
    tracemalloc.start()
    try:
        import_catalog(path)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_stays_flat_with_the_file_size(tmp_path, monkeypatch):
    monkeypatch.setattr(tables, "CHUNK_ROWS", 1000)
    monkeypatch.setattr(tables, "READ_BLOCK", 16384)  # both files span many blocks
    small = _peak_bytes(write_csv(tmp_path / "small.csv", 2000))
    large = _peak_bytes(write_csv(tmp_path / "large.csv", 16_000, first=100_000))
    assert Galaxy.objects.count() == 18_000
    # 8x the rows (0.9 MB of file) within 1.5x the peak of the small file (the whole-file path
    # held every row: about 8x)
    assert large < 1.5 * small + 500_000, (small, large)


# ---------------------------------------------------------------------------------------------
# Field lengths, encodings, sizes: reported by line and column, nothing written
# ---------------------------------------------------------------------------------------------
def test_long_name_and_long_text_are_line_column_problems(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text(f"pgc,ra,dec,type,name\n1,1,1,Sb,NGC 1\n2,2,2,Sc,{'X' * 101}\n3,3,3,{'S' * 201},NGC 3\n")
    problems = _expect_problem(path, line=3, column="name", words="longer than 100")
    assert any(p.line == 4 and p.column == "type" and "longer than 200" in p.message for p in problems)
    report = import_catalog(path, partial=True)
    assert report.created == 1 and GalaxyName.objects.count() == 1


def test_nul_byte_and_bad_utf8_past_the_first_64kb(tmp_path):
    head = write_csv(tmp_path / "t.csv", 3000).read_bytes()
    assert len(head) > 65536
    path = tmp_path / "bad.csv"
    path.write_bytes(head + b"5001,1,1,1,1,NGC\x00 5001\n5002,1.5,2,3,4,caf\xe9 5002\n5003,1,1,1,1,NGC 5003\n")
    problems = _expect_problem(path, line=3002, column="name", words="NUL byte")
    assert any(p.line == 3003 and p.column == "name" and "not UTF-8" in p.message and "0xe9" in p.message for p in problems)
    assert len(problems) == 2


def test_mid_file_undecodable_byte_names_its_column(tmp_path):
    path = tmp_path / "latin.txt"
    lines = ["pgc|ra|dec|Vhel"] + [f"{i}|{i}|{i}|{1000 + i}" for i in range(1, 5)]
    path.write_bytes(("\n".join(lines) + "\n").encode().replace(b"|1003", b"|1\xe903"))
    _expect_problem(path, line=4, column="Vhel", words="not UTF-8 text (undecodable byte 0xe9")


def test_table_size_cap(tmp_path):
    path = write_csv(tmp_path / "t.csv", 50)
    with override_settings(GALCAT_TABLE_MAX_BYTES=1000):
        _expect_problem(path, words="more than the limit of 1,000 bytes (GALCAT_TABLE_MAX_BYTES)")
        with pytest.raises(CommandError, match="GALCAT_TABLE_MAX_BYTES"):
            call_command("import_catalog", str(path), verbosity=0)
    assert import_catalog(path).created == 50


def test_many_problems_are_counted_but_kept_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(report_module, "MAX_KEPT", 100)
    path = write_csv(tmp_path / "t.csv", 500, bad_rows={k: ("vhel", "fast") for k in range(1, 301)})
    with pytest.raises(ImportValidationError, match="300 problems, nothing written") as info:
        import_catalog(path)
    assert len(info.value.report.problems) == 100 and info.value.report.problem_count == 300
    assert info.value.report.problems[0].line == 2
    assert import_catalog(path, partial=True).created == 200


# ---------------------------------------------------------------------------------------------
# VOTable: TABLEDATA streamed, BINARY read by astropy
# ---------------------------------------------------------------------------------------------
def _votable(rows: list[list[str]]) -> str:
    fields = (
        '<FIELD name="pgc" datatype="long"/><FIELD name="ra" datatype="double"/><FIELD name="dec" datatype="double"/>'
        '<FIELD name="Vhel" datatype="double"/><FIELD name="inc_n" datatype="int"><VALUES null="-99"/></FIELD>'
    )
    body = "\n".join("<TR>" + "".join(f"<TD>{c}</TD>" for c in row) + "</TR>" for row in rows)
    return (
        '<?xml version="1.0"?>\n<VOTABLE version="1.4" xmlns="http://www.ivoa.net/xml/VOTable/v1.3"><RESOURCE><TABLE>'
        f"{fields}<DATA><TABLEDATA>\n{body}\n</TABLEDATA></DATA></TABLE></RESOURCE></VOTABLE>\n"
    )


def test_votable_tabledata_streams_with_row_numbers_and_nulls(tmp_path, monkeypatch):
    monkeypatch.setattr(tables, "CHUNK_ROWS", 3)  # rows span several chunks
    rows = [[str(p), f"{p}.5", f"-{p}", "1000", "3"] for p in range(10, 18)]
    rows[1][3:] = ["NaN", "-99"]  # VOTable nulls: NaN for floats, the VALUES null for integers
    rows[2][3] = ""
    path = tmp_path / "t.xml"
    path.write_text(_votable(rows))
    assert import_catalog(path).created == 8
    g11, g12 = Galaxy.objects.get(pgc=11), Galaxy.objects.get(pgc=12)
    assert (g11.vhel, g11.inc_n, g12.vhel, g12.inc_n) == (None, None, None, 3)
    assert Galaxy.objects.get(pgc=17).dec == -17
    bad = [list(r) for r in rows]
    bad[5] = bad[5][:3]  # row 6: a missing cell
    bad[6][2] = "95"  # row 7: no such declination
    path.write_text(_votable(bad))
    problems = _expect_problem(path, line=6, words="expected 5 cells, found 3", count_before=8)
    assert [(p.line, p.column) for p in problems] == [(6, None), (7, "dec")]
    path.write_text(_votable(rows)[:-40])  # cut off mid-document
    _expect_problem(path, words="cannot read as VOTABLE", count_before=8)


def test_binary_votable_is_read_whole(tmp_path):
    path = tmp_path / "b.xml"
    Table({"pgc": [1, 2], "ra": [1.0, 2.0], "dec": [3.0, 4.0]}).write(path, format="votable", tabledata_format="binary")
    assert import_catalog(path).created == 2 and Galaxy.objects.get(pgc=2).dec == 4.0


def test_votable_memory_stays_flat_with_the_file_size(tmp_path, monkeypatch):
    monkeypatch.setattr(tables, "CHUNK_ROWS", 1000)

    def votable(name: str, n: int, first: int) -> Path:
        pgc = np.arange(first, first + n)
        path = tmp_path / name
        Table({"pgc": pgc, "ra": (pgc * 0.37) % 360, "dec": (pgc * 0.11) % 180 - 90, "Vhel": 1000.0 + pgc % 9000}).write(
            path, format="votable"
        )
        return path

    small = _peak_bytes(votable("small.xml", 2000, 1))
    large = _peak_bytes(votable("large.xml", 16_000, 100_000))
    assert Galaxy.objects.count() == 18_000
    assert large < 1.5 * small + 500_000, (small, large)


def test_the_fast_name_path_agrees_with_the_name_functions():
    from catalog.names import display_name, normalise_name

    for name in [
        "NGC 4565",
        "ngc0007",
        "UGC07772",
        "A 0",
        "Arp 7",
        "IC 000",
        "M31",
        "MCG +04-30-006",
        "2MASX J1",
        "Needle Galaxy",
        "ngc  7",
    ]:
        assert tables._name_and_key(name) == (display_name(name), normalise_name(name)), name


def test_quotes_crlf_and_blank_lines_keep_line_numbers_across_blocks(tmp_path, monkeypatch):
    monkeypatch.setattr(tables, "CHUNK_ROWS", 7)
    monkeypatch.setattr(tables, "READ_BLOCK", 4096)  # the plain part spans blocks split whole
    lines = write_csv(tmp_path / "t.csv", 400).read_text().splitlines()
    lines[100] = ",,,,,"  # a blank row (line 101) is skipped
    lines.insert(300, '9001,1,1,1,1,"NGC 9001, the\nsecond line"')  # a quoted field holding a newline: lines 301-302
    lines[350] = lines[350].replace(",TST", ',"TST') + '"'  # quotes again, now on one line (line 352)
    lines[390] = "9002,1,1,1"  # line 392 (the quoted newline shifted the lines by one)
    path = tmp_path / "q.csv"
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode())
    problems = _expect_problem(path, line=392, words="expected 6 fields, found 4")
    assert [p.line for p in problems] == [392]
    lines[390] = "9002,1,1,fast,1,TST 9002"
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode())
    _expect_problem(path, line=392, column="vhel", words="expected a number")
    lines[390] = "9002,1,1,1,1,TST 9002"
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode())
    report = import_catalog(path)
    assert report.created == 400  # 400 rows, one blanked, one added
    assert GalaxyName.objects.get(galaxy_id=9001).name == "NGC 9001, the second line"  # the quoted newline read as a blank


def test_a_bulk_write_rebuilds_the_same_secondary_indexes(tmp_path, monkeypatch):
    def indexes() -> set[str]:
        with connection.cursor() as cur:
            cur.execute("SELECT indexdef FROM pg_indexes WHERE tablename IN ('catalog_galaxy', 'catalog_galaxyname')")
            found = {r[0] for r in cur.fetchall()}
            cur.execute(
                "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE conrelid IN ('catalog_galaxy'::regclass, 'catalog_galaxyname'::regclass)"
            )
            return found | {" ".join(r) for r in cur.fetchall()}

    before = indexes()
    assert any("healpix" in d for d in before)
    monkeypatch.setattr(tables, "BULK_MIN_ROWS", 5)
    dropped = []
    real = tables._without_secondary_indexes

    def spy(cursor, table, bulk, **kwargs):
        with real(cursor, table, bulk, **kwargs):
            cursor.execute("SELECT count(*) FROM pg_indexes WHERE tablename = %s", [table])
            dropped.append((table, cursor.fetchone()[0]))
            yield

    monkeypatch.setattr(tables, "_without_secondary_indexes", contextmanager(spy))
    assert import_catalog(write_csv(tmp_path / "t.csv", 50)).created == 50
    assert dropped == [("catalog_galaxy", 1), ("catalog_galaxyname", 0)]  # only the galaxies' primary key left meanwhile
    assert indexes() == before
    assert any("FOREIGN KEY (galaxy_id) REFERENCES catalog_galaxy(pgc) DEFERRABLE INITIALLY DEFERRED" in d for d in before)
    assert any(d.endswith("UNIQUE (normalised)") for d in before)
    with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cur:  # the foreign key holds again
        cur.execute("INSERT INTO catalog_galaxyname (galaxy_id, name, normalised) VALUES (999999, 'X 1', 'X1')")
        cur.execute("SET CONSTRAINTS ALL IMMEDIATE")
    with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cur:  # and names are unique again
        cur.execute(
            "INSERT INTO catalog_galaxyname (galaxy_id, name, normalised) SELECT 2, name, normalised FROM catalog_galaxyname LIMIT 1"
        )
    dropped.clear()
    moved = tmp_path / "m.csv"  # 10 of the 50 galaxies, moved: a fifth of the table rebuilds its HEALPix index
    moved.write_text("pgc,ra,dec,vhel\n" + "".join(f"{p},{p + 100.5},{p - 60.25},{p}\n" for p in range(41, 51)))
    report = import_catalog(moved)
    assert (report.created, report.updated) == (0, 10) and dropped == [("catalog_galaxy", 1)]
    assert indexes() == before
    assert Galaxy.objects.get(pgc=45).ra == 145.5 and Galaxy.objects.get(pgc=40).ra == 14.8  # not in the file: kept
    with connection.cursor() as cur:  # the rebuilt index finds the moved galaxies
        cur.execute("SET LOCAL enable_seqscan = off")
        cur.execute("SELECT pgc FROM catalog_galaxy WHERE healpix = %s", [int(healpix_index(145.5, -15.25)[0])])
        assert cur.fetchall() == [(45,)]
    _positions_consistent()
    dropped.clear()
    assert import_catalog(write_csv(tmp_path / "u.csv", 9, first=1000)).created == 9  # 9 < 50 / 5 rows there: kept
    assert dropped == [("catalog_galaxy", 2), ("catalog_galaxyname", 4)]
    _positions_consistent()


def test_names_are_written_without_checking_their_foreign_key_again(tmp_path, monkeypatch):
    """The names of an import belong to galaxies it has just written: as a superuser the import
    turns their foreign-key checks off for the write instead of checking each name, or dropping
    and adding the key again in a bulk write, and turns them on after."""
    monkeypatch.setattr(tables, "BULK_MIN_ROWS", 5)
    statements = []

    def record(execute, sql, params, many, context):
        statements.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        assert import_catalog(write_csv(tmp_path / "t.csv", 50)).created == 50
    assert any("DISABLE TRIGGER" in s and "catalog_galaxyname" in s for s in statements)
    assert not any("FOREIGN KEY" in s for s in statements)
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'catalog_galaxyname'::regclass AND tgenabled = 'D'")
        assert cur.fetchone()[0] == 0
    with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cur:
        cur.execute("INSERT INTO catalog_galaxyname (galaxy_id, name, normalised) VALUES (999999, 'X 1', 'X1')")
        cur.execute("SET CONSTRAINTS ALL IMMEDIATE")
    assert GalaxyName.objects.count() == 50 and set(GalaxyName.objects.values_list("galaxy_id", flat=True)) == set(range(1, 51))


def test_blank_lines_without_whitespace_are_skipped_with_line_numbers(tmp_path, monkeypatch):
    monkeypatch.setattr(tables, "READ_BLOCK", 256)  # many blocks, most of them without any whitespace but line ends
    lines = ["pgc,ra,dec,vhel"] + [f"{i},{i % 360}.5,{i % 90}.25,{1000 + i}" for i in range(1, 201)]
    lines[20] = ""  # line 21: empty
    lines[60] = ",,,"  # line 61: only separators
    lines[120] = " ,\t, ,"  # line 121: whitespace and separators
    lines[150] = "150,1.5,2.5,fast"  # line 151
    path = tmp_path / "b.csv"
    path.write_text("\n".join(lines) + "\n")
    problems = _expect_problem(path, line=151, column="vhel", words="expected a number")
    assert [p.line for p in problems] == [151]
    lines[150] = "150,1.5,2.5,1150"
    path.write_text("\n".join(lines))  # no line end after the last row
    report = import_catalog(path)
    assert (report.rows_read, report.created) == (197, 197)
    assert Galaxy.objects.get(pgc=150).vhel == 1150 and Galaxy.objects.get(pgc=200).vhel == 1200
    assert not Galaxy.objects.filter(pgc__in=[20, 60, 120]).exists()


@pytest.mark.parametrize(("name", "space"), [("SYN", " "), ("Café", "\u2003")], ids=["ascii", "unicode"])
def test_blank_lines_amid_whitespace_are_skipped_with_line_numbers(tmp_path, name, space):
    lines = ["pgc,ra,dec,name"] + [f"{i},{i % 360}.5,{i % 90}.25,{name} {i}" for i in range(1, 41)]
    lines[10] = " ,\t, , "  # line 11: whitespace and separators
    lines[20] = f"{space},,,"  # line 21: a space (in Unicode text, an em space) and separators
    lines[30] = "30,1.5,fast,X 30"  # line 31
    path = tmp_path / "b.csv"
    path.write_text("\n".join(lines) + "\n")
    problems = _expect_problem(path, line=31, column="dec", words="expected a number")
    assert [p.line for p in problems] == [31]
    lines[30] = "30,1.5,2.5,X 30"
    path.write_text("\n".join(lines))  # no line end after the last row
    assert import_catalog(path).created == 38 and not Galaxy.objects.filter(pgc__in=[10, 20]).exists()


def test_derived_coordinates_agree_with_astropy():
    import astropy.units as u
    from astropy.coordinates import SkyCoord, Supergalactic

    from catalog.sky import derived_coordinates

    rng = np.random.default_rng(5)
    ra = np.concatenate([[0.0, 359.9999999999, 180.0, 0.0, 266.40499, 12.3], rng.uniform(0, 360, 5000)])
    dec = np.concatenate([[90.0, -90.0, 0.0, -1e-12, -28.93617, 89.9999999], np.degrees(np.arcsin(rng.uniform(-1, 1, 5000)))])
    sc = SkyCoord(ra=ra * u.deg, dec=dec * u.deg, frame="icrs")
    gal, sgal = sc.galactic, sc.transform_to(Supergalactic())
    fast = derived_coordinates(ra, dec)
    slow = {"gl": gal.l.deg, "gb": gal.b.deg, "sgl": sgal.sgl.deg, "sgb": sgal.sgb.deg}
    for k in ("gl", "sgl"):
        assert ((fast[k] >= 0) & (fast[k] < 360)).all()
        diff = np.abs(fast[k] - slow[k])
        near_pole = np.abs(fast[k.replace("l", "b")]) > 89.99999  # longitude is undefined at the poles
        assert (np.minimum(diff, 360 - diff)[~near_pole] < 1e-9).all(), k
    for k in ("gb", "sgb"):
        assert np.abs(fast[k] - slow[k]).max() < 1e-9, k


def test_text_flags_booleans_and_nulls_survive_the_binary_stage(tmp_path, shared_data):
    lines = edd_lines(shared_data, 3)
    lines = replace_cell(lines, 1, "ty", "")  # an empty numeric cell is NULL
    lines = replace_cell(lines, 2, "type", "Sb\\c\ttab")  # backslash and tab are data, not COPY escapes
    import_catalog(write_edd(tmp_path, lines))
    g1, g2 = Galaxy.objects.get(pgc=int(lines[1].split("|")[0])), Galaxy.objects.get(pgc=int(lines[2].split("|")[0]))
    assert g1.ty is None and g2.type == "Sb\\c\ttab"
    header = [h.strip() for h in lines[0].split("|")]
    flags = [c.name for c in map(tables.column, header) if c.kind in ("flag", "bool")]
    assert flags and all(getattr(g1, f) in (True, False, None) for f in flags)
    assert Galaxy.objects.filter(sdss__isnull=False).count() == 3


def test_partial_import_writes_no_names_of_rows_left_out(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("pgc,ra,dec,name\n1,10,10,A 1\n2,20,20,A 2\n1,30,30,A 3\n3,400,10,A 4\n4,40,40,A 2\n5,50,50,A 5\n")
    report = import_catalog(path, partial=True)
    assert (report.created, report.skipped) == (3, 3)
    assert [(p.line, p.column) for p in report.problems] == [(4, "pgc"), (5, "ra"), (6, "name")]
    assert sorted(Galaxy.objects.values_list("pgc", flat=True)) == [1, 2, 5]
    assert sorted(GalaxyName.objects.values_list("galaxy_id", "name")) == [(1, "A 1"), (2, "A 2"), (5, "A 5")]
    assert Galaxy.objects.get(pgc=1).ra == 10


def test_simple_name_columns_read_in_one_pass_agree_with_the_name_path():
    cells = ["NGC 4565", " ugc07772 ", "A 0", "IC 000", "M31", "Arp 0070", "pgc1"]
    names, keys = tables._simple_names(cells)
    assert list(zip(names, keys)) == [tables._name_and_key(c.strip()) for c in cells]
    shown = ["NGC 4565", "UGC 7772", "M 31", "ESO 10"]  # as displayed already
    assert list(zip(*tables._simple_names(shown))) == [tables._name_and_key(c) for c in shown]
    for odd in (["NGC 1", ""], ["NGC 1", "NGC 2; M 3"], ["NGC 1", "MCG +04-30-006"], ["NGC 1", None], ["A\nB 1"], ["X" * 300 + " 1"], []):
        assert tables._simple_names(odd) is None, odd


# ---------------------------------------------------------------------------------------------
# Big text tables: split and validated in other processes
# ---------------------------------------------------------------------------------------------
def _mixed_table(tmp_path: Path) -> Path:
    """A CSV whose problems, blank lines and repeated pgc fall in many blocks, with quotes (the
    csv module's rows) from line 352 on."""
    lines = (
        write_csv(tmp_path / "t.csv", 400, bad_rows={3: ("ra", "x"), 120: ("dec", "91"), 333: ("vhel", "fast")}).read_text().splitlines()
    )
    lines[50] = ",,,,,"  # line 51 blank
    lines[200] = "9002,1,1,1"  # line 201 truncated
    lines[250] = lines[20].replace("TST 20", "TST 20b")  # line 251 repeats pgc 20 of line 21
    lines[351] = lines[351].replace(",TST", ',"TST') + '"'
    lines[380] = "9003,1,1,1,1,TST 1"  # line 381: name of pgc 1
    path = tmp_path / "mixed.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def _problems_of(path: Path) -> list[tuple]:
    with pytest.raises(ImportValidationError) as info:
        import_catalog(path)
    return [(p.line, p.column, p.message) for p in info.value.report.problems]


def _record_pid(preparer, splitter, parent, *, pids: Path) -> None:
    with pids.open("a") as f:
        f.write(f"{os.getpid()}\n")
    _use_worker(preparer, splitter, parent)


_use_worker = tables._use_worker


def test_a_table_validated_in_other_processes_reads_as_it_does_here(tmp_path, monkeypatch):
    monkeypatch.setattr(tables, "READ_BLOCK", 2048)  # many blocks
    monkeypatch.setattr(tables, "CHUNK_ROWS", 50)
    path = _mixed_table(tmp_path)
    here = _problems_of(path)
    assert [p[0] for p in here] == [4, 121, 201, 251, 334, 381]
    pids = tmp_path / "pids"
    monkeypatch.setattr(tables, "PREPARE_MIN_BYTES", 0)
    monkeypatch.setattr(tables, "_use_worker", lambda preparer, splitter, parent: _record_pid(preparer, splitter, parent, pids=pids))
    assert tables._prepare_processes(path.stat().st_size) >= 2  # this machine has two CPUs or more
    assert _problems_of(path) == here
    report = import_catalog(path, partial=True)
    assert {int(p) for p in pids.read_text().split()} - {os.getpid()}, "no other process validated a block"
    assert (report.rows_read, report.created, report.skipped) == (399, 393, 6)
    assert Galaxy.objects.count() == 393 and GalaxyName.objects.count() == 393
    assert not Galaxy.objects.filter(pgc__in=[3, 120, 333, 9002, 9003]).exists()
    assert GalaxyName.objects.get(normalised="TST352").galaxy_id == 352  # a quoted name, past the csv switch


def _die(piece):
    os._exit(3)


def test_a_validating_process_that_dies_fails_the_import_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(tables, "READ_BLOCK", 2048)
    monkeypatch.setattr(tables, "PREPARE_MIN_BYTES", 0)
    monkeypatch.setattr(tables, "_prepare_piece", _die)
    with pytest.raises(BrokenProcessPool):
        import_catalog(write_csv(tmp_path / "t.csv", 400))
    assert not Galaxy.objects.exists() and not GalaxyName.objects.exists()


def test_a_first_block_of_the_header_alone_keeps_line_numbers(tmp_path, monkeypatch):
    path = write_csv(tmp_path / "t.csv", 20, bad_rows={2: ("ra", "x")})
    header = path.read_text().split("\n")[0]
    monkeypatch.setattr(tables, "READ_BLOCK", len(header) + 3)  # the first block ends inside line 2
    _expect_problem(path, line=3, column="ra", words="expected a number")


def _processes_in_daemon(size: int, out) -> None:
    out.put(tables._prepare_processes(size))


def test_a_big_table_is_validated_here_in_a_daemonic_process_and_a_small_one_always():
    context = multiprocessing.get_context("fork")
    out = context.Queue()
    daemon = context.Process(target=_processes_in_daemon, args=(tables.PREPARE_MIN_BYTES, out), daemon=True)
    daemon.start()
    daemon.join(30)
    assert out.get(timeout=5) == 0  # a django-q worker is daemonic and may not have children
    assert tables._prepare_processes(tables.PREPARE_MIN_BYTES - 1) == 0
    cpus = len(os.sched_getaffinity(0))
    assert tables._prepare_processes(tables.PREPARE_MIN_BYTES) == (min(tables.PREPARE_PROCESSES, cpus) if cpus > 1 else 0)


def _forks_of(parent: psutil.Process) -> list[psutil.Process]:
    """The children of a process that it forked (the same command line), not the programs it runs."""
    try:
        command = parent.cmdline()
        return [c for c in parent.children() if c.cmdline() == command]
    except psutil.Error:
        return []


@pytest.mark.django_db(transaction=True)
def test_a_killed_import_takes_its_validating_processes_with_it(tmp_path):
    path = write_csv(tmp_path / "big.csv", 300_000)
    script = "import sys, django; django.setup()\nfrom catalog.importers import tables\ntables.PREPARE_MIN_BYTES = 0\ntables.import_catalog(sys.argv[1])\n"
    env = {
        **os.environ,
        "GALCAT_DB_NAME": connection.settings_dict["NAME"],
        "DJANGO_DEBUG": "0",
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(path)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    parent = psutil.Process(proc.pid)
    children = _kill_when(proc, lambda: _forks_of(parent), 0.01, "the import never started its validating processes")

    def alive() -> list:
        out = []
        for child in children:
            try:
                if child.status() != psutil.STATUS_ZOMBIE:
                    out.append(child)
            except psutil.NoSuchProcess:
                continue
        return out

    deadline = time.monotonic() + 10
    while alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(), "validating processes outlived the import"


def test_a_table_validated_in_other_processes_keeps_the_same_problems_when_there_are_too_many(tmp_path, monkeypatch):
    monkeypatch.setattr(tables, "READ_BLOCK", 2048)
    monkeypatch.setattr(tables, "CHUNK_ROWS", 50)
    monkeypatch.setattr(report_module, "MAX_KEPT", 4)
    path = _mixed_table(tmp_path)
    lines = path.read_text().splitlines()
    lines[390] = "9004,1,1"  # line 391: short, found by the reader (the csv module's rows) ahead of the blocks before it
    path.write_text("\n".join(lines) + "\n")
    here = _problems_of(path)
    assert [p[0] for p in here] == [4, 121, 201, 334]  # the first four found, in line order
    monkeypatch.setattr(tables, "PREPARE_MIN_BYTES", 0)
    assert _problems_of(path) == here
