import numpy as np
import pytest
from astropy.table import Table
from django.core.management import CommandError, call_command

from catalog.importers.report import ImportValidationError
from catalog.importers.tables import import_catalog
from catalog.models import Galaxy, GalaxyName
from catalog.sky import healpix_index
from jobs.models import Job
from tests.catalog.tables import edd_lines, replace_cell, write_edd

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


def _expect_problem(path, fmt=None, *, line=None, column=None, words=""):
    with pytest.raises(ImportValidationError) as info:
        import_catalog(path, fmt)
    problems = info.value.report.problems
    assert problems, "a problem must be reported"
    match = [p for p in problems if (line is None or p.line == line) and (column is None or p.column == column)]
    assert match, f"no problem at line {line} column {column}: {problems}"
    assert words.lower() in str(match[0]).lower()
    assert Galaxy.objects.count() == 0, "nothing may be written"
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
