import pytest
from django.contrib.auth import get_user_model

from catalog.importers.report import ImportValidationError
from catalog.importers.tables import import_catalog
from catalog.models import Galaxy
from zoo.importers import import_votes
from zoo.models import InclinationVote, Volunteer

pytestmark = pytest.mark.django_db

HEADER = "id,pgc,inc,pgc_std1,pgc_std2,flag,not_sure,face_on,note,user,input_table,checkout_time,checkin_time\n"


@pytest.mark.slow
def test_shared_votes_keep_everything_and_are_idempotent(shared_data):
    import_catalog(shared_data / "edd_cf4_sample.txt")
    report = import_votes(shared_data / "giz_votes.csv")
    assert report.created == 11420 and InclinationVote.objects.count() == 11420
    assert report.extra["volunteers"] == 38
    assert InclinationVote.objects.values("galaxy").distinct().count() == 7528
    # every voted galaxy is kept: the 98 of the table have positions, the others await one
    assert Galaxy.objects.count() == 98 + report.extra["galaxies awaiting position"]
    users = get_user_model().objects.filter(volunteer__imported=True)
    assert users.count() == 38 and not any(u.has_usable_password() for u in users)
    assert InclinationVote.objects.filter(round__gt=0).count() > 0  # repeated measurements kept as rounds
    flagged = InclinationVote.objects.get(giz_id=311)
    assert flagged.rejected and flagged.inc is None and flagged.face_on and flagged.note == "Good job."
    calib = InclinationVote.objects.filter(kind=InclinationVote.Kind.CALIBRATION).count()
    assert calib == 1450  # input_table Input_Guest_test_calib
    again = import_votes(shared_data / "giz_votes.csv")
    assert again.created == 0 and again.extra["already imported"] == 11420
    assert InclinationVote.objects.count() == 11420


def test_votes_for_unknown_galaxies_attach_to_placeholders_filled_later(tmp_path):
    path = tmp_path / "v.csv"
    path.write_text(HEADER + "1,5555,70.5,,,0,0,0,,vol1,Input_Guest,2018-03-03 15:06:36,2018-03-03 15:08:25\n")
    import_votes(path)
    g = Galaxy.objects.get(pgc=5555)
    assert g.ra is None and g.healpix is None
    assert Volunteer.objects.get(pseudonym="vol1").imported
    table = tmp_path / "t.csv"
    table.write_text("pgc,ra,dec\n5555,12.5,-3.25\n")
    import_catalog(table)
    g.refresh_from_db()
    assert g.ra == 12.5 and g.healpix is not None
    assert InclinationVote.objects.get(giz_id=1).galaxy_id == 5555


@pytest.mark.parametrize(
    "row,words",
    [
        ("2,5555,95,,,0,0,0,,vol1,Input_Guest,2018-03-03 15:06:36,2018-03-03 15:08:25", "outside [0, 90]"),
        ("2,5555,abc,,,0,0,0,,vol1,Input_Guest,2018-03-03 15:06:36,2018-03-03 15:08:25", "expected an inclination"),
        ("2,-4,70,,,0,0,0,,vol1,Input_Guest,2018-03-03 15:06:36,2018-03-03 15:08:25", "pgc"),
        ("2,5555,70,,,7,0,0,,vol1,Input_Guest,2018-03-03 15:06:36,2018-03-03 15:08:25", "expected 0 or 1"),
        ("2,5555,70,,,0,0,0,,vol1,Input_Guest,yesterday,2018-03-03 15:08:25", "unreadable time"),
        ("2,5555,70,,,0,0,0,,,Input_Guest,2018-03-03 15:06:36,2018-03-03 15:08:25", "missing volunteer"),
        ("1,5556,70,,,0,0,0,,vol1,Input_Guest,2018-03-03 15:06:36,2018-03-03 15:08:25", "duplicate vote id"),
        ("2,5555,70,,,0,0", "expected 13 fields"),
    ],
)
def test_bad_vote_rows_block_the_table(tmp_path, row, words):
    path = tmp_path / "v.csv"
    path.write_text(HEADER + "1,5555,70.5,,,0,0,0,,vol1,Input_Guest,2018-03-03 15:06:36,2018-03-03 15:08:25\n" + row + "\n")
    with pytest.raises(ImportValidationError) as info:
        import_votes(path)
    assert "line 3" in str(info.value) and words in str(info.value)
    assert InclinationVote.objects.count() == 0 and Galaxy.objects.count() == 0


def test_missing_columns_and_empty_file(tmp_path):
    path = tmp_path / "v.csv"
    path.write_text("id,pgc\n1,2\n")
    with pytest.raises(ImportValidationError, match="missing column"):
        import_votes(path)
    path.write_text("")
    with pytest.raises(ImportValidationError, match="empty"):
        import_votes(path)


def _vote_row(vote_id: int, user: str = "vol1", note: str = "") -> str:
    return f"{vote_id},5555,70,,,0,0,0,{note},{user},Input_Guest,2018-03-03 15:06:36,2018-03-03 15:08:25\n"


def test_long_names_nul_bytes_and_bad_utf8_are_line_column_problems(tmp_path):
    body = "".join(_vote_row(i) for i in range(1, 1000))
    assert len(body) > 65536
    path = tmp_path / "v.csv"
    path.write_bytes(
        (HEADER + body + _vote_row(1000, user="v" * 81)).encode()
        + _vote_row(1001, note="a\x00b").encode()
        + _vote_row(1002, note="caf\xe9").encode("latin-1")
        + _vote_row(1003, note="ok").encode()
    )
    with pytest.raises(ImportValidationError) as info:
        import_votes(path)
    found = [(p.line, p.column) for p in info.value.report.problems]
    assert found == [(1001, "user"), (1002, "note"), (1003, "note")]
    text = str(info.value)
    assert "longer than 80" in text and "NUL byte" in text and "not UTF-8" in text
    assert InclinationVote.objects.count() == 0 and Galaxy.objects.count() == 0
    report = import_votes(path, partial=True)
    assert report.created == 1000 and report.skipped == 3


def test_rounds_fill_the_free_ones_in_check_in_order(tmp_path):
    first = tmp_path / "first.csv"
    first.write_text(HEADER + _vote_row(1) + _vote_row(2, user="vol2"))
    import_votes(first)
    user = get_user_model().objects.get(username="vol1")
    InclinationVote.objects.create(user=user, galaxy_id=5555, inc=50.0, round=2, source="import")  # rounds 0 and 2 taken
    path = tmp_path / "again.csv"
    rows = [
        "10,5555,60,,,0,0,0,,vol1,Input_Guest,2018-03-05 10:00:00,2018-03-05 10:01:00\n",
        "11,5555,61,,,0,0,0,,vol1,Input_Guest,2018-03-04 10:00:00,2018-03-04 10:01:00\n",
        "12,5555,62,,,0,0,0,,vol1,Input_Guest,,\n",  # no check-in time: first
        "13,5555,63,,,0,0,0,,vol2,Input_Guest,2018-03-04 10:00:00,2018-03-04 10:01:00\n",
    ]
    path.write_text(HEADER + "".join(rows))
    report = import_votes(path)
    assert report.created == 4 and report.extra["already imported"] == 0
    rounds = dict(InclinationVote.objects.filter(giz_id__gte=10).values_list("giz_id", "round"))
    assert rounds == {12: 1, 11: 3, 10: 4, 13: 1}


def test_vote_memory_stays_flat_with_the_file_size(tmp_path, monkeypatch):
    import tracemalloc

    from catalog.importers import tables
    from zoo import importers

    monkeypatch.setattr(importers, "BATCH", 500)
    monkeypatch.setattr(tables, "READ_BLOCK", 16384)  # both files span many blocks

    def peak(name: str, first: int, n: int) -> int:
        path = tmp_path / name
        path.write_text(HEADER + "".join(f"{i},{1000 + i % 300},70,,,0,0,0,,vol{i % 7},Input_Guest,,\n" for i in range(first, first + n)))
        tracemalloc.start()
        try:
            assert import_votes(path).created == n
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    small = peak("small.csv", 1, 2000)
    large = peak("large.csv", 100_000, 16_000)
    assert InclinationVote.objects.count() == 18_000
    # (user, galaxy) pairs repeat: 18,000 votes over 2,100 pairs give rounds up to 8
    assert InclinationVote.objects.filter(round__gt=0).count() > 0
    assert large < 1.5 * small + 500_000, (small, large)
