"""Import of Galaxy Inclination Zoo vote tables (the GIZ CSV format of ../shared/data).

Volunteers named in the table become pseudonymous accounts that cannot log in until claimed.
Votes naming galaxies the catalog does not hold yet are kept, attached to a galaxy known only
by its pgc. Re-importing a table adds nothing: votes are identified by their GIZ id.
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import connection, transaction

from catalog.importers.copy import copy_records, create_placeholder_galaxies
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


def read_votes(path: Path, report: ImportReport) -> list[dict]:
    """Validated vote dicts of a GIZ CSV; problems go to the report."""
    lines = TextLines(path)
    reader = csv.DictReader(iter(lines))
    try:
        fields = reader.fieldnames or []
    except (TableReadError, csv.Error) as exc:
        report.add(None, None, str(exc))
        return []
    missing = [c for c in REQUIRED if c not in fields]
    if missing:
        report.add(1, None, f"missing column(s): {', '.join(missing)}")
        return []
    rows = []
    seen: dict[int, int] = {}
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
        if vote_id in seen:
            report.add(line, "id", f"duplicate vote id {vote_id} (also on line {seen[vote_id]})")
            continue
        seen[vote_id] = line
        try:
            rec = {"giz_id": vote_id, "pgc": _parse_pgc(row["pgc"], required=True)}
        except ValueError as exc:
            report.add(line, "pgc", str(exc) if "pgc" in str(exc) else f"expected a pgc number, got {row['pgc']!r}")
            continue
        ok = True
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
        if ok:
            rows.append(rec)
    return rows


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
    rows = read_votes(path, report)
    if report.rows_read == 0 and not report.problems:
        report.add(None, None, "the table has a header but no rows")
    if report.problems and not partial:
        raise ImportValidationError(report)
    report.skipped = report.rows_read - len(rows)
    if not rows:
        raise ImportValidationError(report)

    with transaction.atomic():
        already = set(InclinationVote.objects.filter(giz_id__in=[r["giz_id"] for r in rows]).values_list("giz_id", flat=True))
        fresh = [r for r in rows if r["giz_id"] not in already]
        report.extra["already imported"] = len(rows) - len(fresh)
        users = ensure_imported_volunteers({r["user"] for r in fresh})
        pgcs = {r["pgc"] for r in fresh}
        report.extra["galaxies awaiting position"] = create_placeholder_galaxies(pgcs)

        # A volunteer who measured a galaxy again did so in a later round.
        used_rounds: dict[tuple[int, int], set[int]] = defaultdict(set)
        for uid, pgc, rnd in InclinationVote.objects.filter(user_id__in=users.values(), galaxy_id__in=pgcs).values_list(
            "user_id", "galaxy_id", "round"
        ):
            used_rounds[(uid, pgc)].add(rnd)
        fresh.sort(key=lambda r: (r["checkin_time"] or datetime.min.replace(tzinfo=UTC), r["giz_id"]))
        votes = []
        for r in fresh:
            uid = users[r["user"]]
            taken = used_rounds[(uid, r["pgc"])]
            rnd = 0
            while rnd in taken:
                rnd += 1
            taken.add(rnd)
            fields = {k: v for k, v in r.items() if k not in ("user", "pgc")}
            created = r["checkin_time"] or r["checkout_time"] or datetime.now(UTC)
            votes.append(
                {"user_id": uid, "galaxy_id": r["pgc"], "round": rnd, "source": InclinationVote.Source.IMPORT, "created": created, **fields}
            )
        total = len(votes)
        with connection.cursor() as cur:
            for start in range(0, total, BATCH):
                copy_records(cur, InclinationVote, votes[start : start + BATCH])
                if progress:
                    progress(min(start + BATCH, total), total)
        report.created = total
        report.extra["volunteers"] = len(users)
        if votes:
            galaxy_ids = sorted(pgcs)
            transaction.on_commit(lambda: votes_added.send(sender=InclinationVote, galaxy_ids=galaxy_ids))
    return report


def load_sample_votes(folder: Path, say=print) -> dict:
    """GALCAT_SAMPLE_HOOKS entry: the GIZ votes of a sample folder (shared or synthetic)."""
    path = folder / VOTES_FILE
    if not path.exists():
        return {}
    report = import_votes(path)
    say(report.summary())
    return {"votes": report.created}
