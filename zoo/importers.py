"""Import of Galaxy Inclination Zoo vote tables (the GIZ CSV format of ../shared/data).

Volunteers named in the table become pseudonymous accounts that cannot log in until claimed.
Votes naming galaxies the catalog does not hold yet are kept, attached to a galaxy known only
by its pgc. Re-importing a table adds nothing: votes are identified by their GIZ id.

The table streams: rows are validated one by one and COPYed in batches into a temporary
staging table; duplicate vote ids, placeholders, the volunteers' rounds and the votes are then
done set-wise in SQL, in the one transaction (memory does not grow with the file).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import connection, transaction

from catalog.importers.copy import copy_value, create_placeholder_galaxies_from
from catalog.importers.report import ImportReport, ImportValidationError
from catalog.importers.tables import TableReadError, TextLines, report_cell_problems
from catalog.sample import VOTES_FILE
from core.roles import VOLUNTEER as VOLUNTEER_GROUP
from zoo.models import GIZ_FLAGS, InclinationVote, Volunteer
from zoo.signals import votes_added

REQUIRED = ("id", "pgc", "inc", "flag", "user")
KINDS = {
    "input_guest": InclinationVote.Kind.TARGET,
    "input_guest_test_calib": InclinationVote.Kind.CALIBRATION,
    "example_good_galaxie": InclinationVote.Kind.TUTORIAL_GOOD,
    "example_bad_galaxie": InclinationVote.Kind.TUTORIAL_BAD,
    "": InclinationVote.Kind.TARGET,
}
TIME_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S.%f")
BATCH = 2000
STAGE = "galcat_vote_stage"
STAGE_COLUMNS = (
    [("line", "integer"), ("valid", "boolean"), ("giz_id", "integer"), ("pgc", "integer"), ("std1", "integer"), ("std2", "integer")]
    + [("rejected", "boolean")]
    + [(flag, "boolean") for flag in GIZ_FLAGS]
    + [("inc", "float8"), ("username", "text"), ("kind", "text"), ("checkout_time", "timestamptz"), ("checkin_time", "timestamptz")]
    + [("note", "text")]
)
MAX_INT = 2**31 - 1
MAX_USER = Volunteer._meta.get_field("pseudonym").max_length


def _parse_time(text: str) -> datetime | None:
    text = (text or "").strip()
    if not text:
        return None
    for fmt in TIME_FORMATS:
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    raise ValueError(f"unreadable time {text!r} (expected YYYY-MM-DD HH:MM:SS)")


def _parse_bool(text: str) -> bool:
    t = (text or "").strip().lower()
    if t in ("", "0", "false", "f", "no"):
        return False
    if t in ("1", "true", "t", "yes"):
        return True
    raise ValueError(f"expected 0 or 1, got {text!r}")


def _parse_pgc(text: str, *, required: bool) -> int | None:
    t = (text or "").strip()
    if not t:
        if required:
            raise ValueError("missing pgc")
        return None
    value = int(t)
    if not 0 < value <= MAX_INT:
        raise ValueError(f"pgc must be a positive integer of at most {MAX_INT}, got {value}")
    return value


def read_votes(lines: TextLines, report: ImportReport) -> Iterator[dict]:
    """Vote dicts of a GIZ CSV (read as TextLines), one per row with a vote id, with its line
    and whether it is valid; problems go to the report (duplicate vote ids are found later,
    set-wise)."""
    reader = csv.DictReader(iter(lines))
    try:
        fields = reader.fieldnames or []
    except (TableReadError, csv.Error) as exc:
        report.add(None, None, str(exc))
        return
    missing = [c for c in REQUIRED if c not in fields]
    if missing:
        report.add(1, None, f"missing column(s): {', '.join(missing)}")
        return
    flagged = lines.flagged
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            report.rows_read += 1
            report.add(reader.line_num, None, f"malformed CSV: {exc}")
            continue
        line = reader.line_num
        report.rows_read += 1
        if None in row or any(v is None for v in row.values()):
            report.add(line, None, f"expected {len(fields)} fields")
            continue
        if lines.flagged != flagged:  # a NUL byte or bytes that are not UTF-8 on this row
            flagged = lines.flagged
            if report_cell_problems(report, line, list(row.values()), list(row)):
                continue
        try:
            vote_id = int(row["id"])
            if not 0 < vote_id <= MAX_INT:
                raise ValueError
        except ValueError:
            report.add(line, "id", f"vote id must be a positive integer, got {row['id']!r}")
            continue
        rec = {"line": line, "giz_id": vote_id}
        ok = True
        try:
            rec["pgc"] = _parse_pgc(row["pgc"], required=True)
        except ValueError as exc:
            report.add(line, "pgc", str(exc) if "pgc" in str(exc) else f"expected a pgc number, got {row['pgc']!r}")
            rec["pgc"] = None
            ok = False
        for key in ("pgc_std1", "pgc_std2"):
            try:
                rec["std" + key[-1]] = _parse_pgc(row.get(key, ""), required=False)
            except ValueError:
                report.add(line, key, f"expected a pgc number, got {row.get(key)!r}")
                ok = False
        try:
            rec["rejected"] = _parse_bool(row["flag"])
            for flag in GIZ_FLAGS:
                rec[flag] = _parse_bool(row.get(flag, ""))
        except ValueError as exc:
            report.add(line, "flag", str(exc))
            ok = False
        inc_text = (row["inc"] or "").strip()
        inc = None
        if inc_text:
            try:
                inc = float(inc_text)
            except ValueError:
                report.add(line, "inc", f"expected an inclination in degrees, got {inc_text!r}")
                ok = False
            else:
                if not math.isfinite(inc) or not 0.0 <= inc <= 90.0:
                    report.add(line, "inc", f"inclination {inc_text} outside [0, 90] deg")
                    ok = False
        # A rejected or flagged galaxy carries inc = 0 in GIZ tables: no measurement.
        if ok and rec.get("rejected") and inc == 0.0:
            inc = None
        rec["inc"] = inc
        user = (row["user"] or "").strip()
        if not user:
            report.add(line, "user", "missing volunteer name")
            ok = False
        elif len(user) > MAX_USER:
            report.add(line, "user", f"volunteer name of {len(user)} characters, longer than {MAX_USER}")
            ok = False
        rec["user"] = user
        table = (row.get("input_table") or "").strip().lower()
        if table not in KINDS:
            report.add(line, "input_table", f"unknown input table {row.get('input_table')!r}")
            ok = False
        rec["kind"] = KINDS.get(table, InclinationVote.Kind.TARGET)
        try:
            rec["checkout_time"] = _parse_time(row.get("checkout_time", ""))
            rec["checkin_time"] = _parse_time(row.get("checkin_time", ""))
        except ValueError as exc:
            report.add(line, "checkin_time", str(exc))
            ok = False
        rec["note"] = (row.get("note") or "").strip()
        rec["valid"] = ok
        yield rec


def ensure_imported_volunteers(names: set[str]) -> dict[str, int]:
    """User ids of pseudonymous volunteers, creating accounts that cannot log in."""
    User = get_user_model()
    existing = dict(User.objects.filter(username__in=names).values_list("username", "pk"))
    group, _ = Group.objects.get_or_create(name=VOLUNTEER_GROUP)
    for name in sorted(names - set(existing)):
        user = User(username=name, is_active=True)
        user.set_unusable_password()
        user.save()
        user.groups.add(group)
        Volunteer.objects.get_or_create(user=user, defaults={"pseudonym": name, "imported": True})
        existing[name] = user.pk
    return existing


def import_votes(path: str | Path, *, partial: bool = False, progress=None) -> ImportReport:
    """Validate then store a GIZ vote table; idempotent by vote id. All-or-nothing unless partial."""
    path = Path(path)
    report = ImportReport(source=path.name)
    if not path.exists():
        report.add(None, None, f"no such file: {path}")
        raise ImportValidationError(report)
    lines = TextLines(path)
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {STAGE}")
        cur.execute(f"CREATE TEMP TABLE {STAGE} ({', '.join(f'{c} {t}' for c, t in STAGE_COLUMNS)}) ON COMMIT DROP")
        names = [c for c, _ in STAGE_COLUMNS]
        records = read_votes(lines, report)
        while batch := [next(records, None) for _ in range(BATCH)]:
            batch = [r for r in batch if r is not None]
            if not batch:
                break
            with cur.copy(f"COPY {STAGE} ({', '.join(names)}) FROM STDIN") as copy:
                copy.write("".join("\t".join(copy_value(r.get(c if c != "username" else "user")) for c in names) + "\n" for r in batch))
            if progress:
                done = report.rows_read
                progress(done, max(done, int(done * lines.size / max(lines.bytes_read, 1))))
        _report_duplicates(cur, report)
        report.problems.sort(key=lambda p: p.line or 0)
        if report.rows_read == 0 and not report.problems:
            report.add(None, None, "the table has a header but no rows")
        if report.problems and not partial:
            raise ImportValidationError(report)
        cur.execute(f"SELECT count(*) FROM {STAGE} WHERE valid")
        valid = cur.fetchone()[0]
        report.skipped = report.rows_read - valid
        if not valid:
            raise ImportValidationError(report)
        vote = InclinationVote._meta.db_table
        cur.execute(f"UPDATE {STAGE} s SET valid = false FROM {vote} v WHERE s.valid AND v.giz_id = s.giz_id")
        report.extra["already imported"] = cur.rowcount
        cur.execute(f"SELECT DISTINCT username FROM {STAGE} WHERE valid")
        users = ensure_imported_volunteers({r[0] for r in cur.fetchall()})
        report.extra["galaxies awaiting position"] = create_placeholder_galaxies_from(f"SELECT DISTINCT pgc FROM {STAGE} WHERE valid")
        report.created = _insert_votes(cur)
        report.extra["volunteers"] = len(users)
        if report.created:
            cur.execute(f"SELECT DISTINCT pgc FROM {STAGE} WHERE valid ORDER BY pgc")
            galaxy_ids = [r[0] for r in cur.fetchall()]
            transaction.on_commit(lambda: votes_added.send(sender=InclinationVote, galaxy_ids=galaxy_ids))
        cur.execute(f"DROP TABLE {STAGE}")
    if progress:
        progress(report.created, report.created)
    return report


def _report_duplicates(cur, report: ImportReport) -> None:
    """A vote id given again on a later line: reported there, and that row left out."""
    cur.execute(
        "SELECT line, giz_id, first FROM (SELECT line, giz_id, first_value(line) OVER (PARTITION BY giz_id ORDER BY line) AS first "
        f"FROM {STAGE}) d WHERE line <> first ORDER BY line"
    )
    lines = []
    for line, vote_id, first in cur.fetchall():
        report.add(line, "id", f"duplicate vote id {vote_id} (also on line {first})")
        lines.append(line)
    if lines:
        cur.execute(f"UPDATE {STAGE} SET valid = false WHERE line = ANY(%s)", [lines])


def _insert_votes(cur) -> int:
    """INSERT the valid staged votes; a volunteer who measured a galaxy again did so in a later
    round: each vote takes the smallest round of its (volunteer, galaxy) not yet taken, in the
    order of check-in time (unknown first) and vote id."""
    vote = InclinationVote._meta.db_table
    user = get_user_model()._meta.db_table
    flags = ", ".join(GIZ_FLAGS)
    cur.execute(
        f"WITH fresh AS (SELECT s.*, u.id AS uid, "
        "  row_number() OVER (PARTITION BY u.id, s.pgc ORDER BY s.checkin_time NULLS FIRST, s.giz_id) AS k "
        f"  FROM {STAGE} s JOIN {user} u ON u.username = s.username WHERE s.valid), "
        "groups AS (SELECT uid, pgc, count(*) AS n FROM fresh GROUP BY uid, pgc), "
        "free AS (SELECT g.uid, g.pgc, r, row_number() OVER (PARTITION BY g.uid, g.pgc ORDER BY r) AS k FROM groups g, "
        f"  LATERAL generate_series(0, g.n - 1 + (SELECT count(*) FROM {vote} v WHERE v.user_id = g.uid AND v.galaxy_id = g.pgc)) r "
        f"  WHERE NOT EXISTS (SELECT 1 FROM {vote} v WHERE v.user_id = g.uid AND v.galaxy_id = g.pgc AND v.round = r)) "
        f"INSERT INTO {vote} (user_id, galaxy_id, round, source, created, giz_id, inc, rejected, std1, std2, {flags}, note, kind, "
        "  checkout_time, checkin_time) "
        f"SELECT f.uid, f.pgc, free.r, %s, COALESCE(f.checkin_time, f.checkout_time, now()), f.giz_id, f.inc, f.rejected, f.std1, "
        f"  f.std2, {', '.join('f.' + g for g in GIZ_FLAGS)}, f.note, f.kind, f.checkout_time, f.checkin_time "
        "FROM fresh f JOIN free ON free.uid = f.uid AND free.pgc = f.pgc AND free.k = f.k ORDER BY f.giz_id",
        [InclinationVote.Source.IMPORT],
    )
    return cur.rowcount


def load_sample_votes(folder: Path, say=print) -> dict:
    """GALCAT_SAMPLE_HOOKS entry: the GIZ votes of a sample folder (shared or synthetic)."""
    path = folder / VOTES_FILE
    if not path.exists():
        return {}
    report = import_votes(path)
    say(report.summary())
    return {"votes": report.created}
