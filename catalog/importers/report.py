"""What an import found: problems with their place, and counts of what was written."""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_LISTED = 200
# Problems kept in memory; the rest are only counted, so a file with millions of bad rows
# keeps its report small.
MAX_KEPT = 10_000


@dataclass(frozen=True)
class Problem:
    """One problem of an input, at a line (1-based, header = line 1 for text tables) and column."""

    line: int | None
    column: str | None
    message: str

    def __str__(self) -> str:
        where = []
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.column:
            where.append(f"column {self.column}")
        return f"{', '.join(where)}: {self.message}" if where else self.message


@dataclass
class ImportReport:
    """Outcome of an import: counts, problems, warnings."""

    source: str
    rows_read: int = 0
    created: int = 0
    updated: int = 0
    skipped: int = 0
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)
    more_problems: int = 0  # found beyond the MAX_KEPT kept in `problems`

    @property
    def ok(self) -> bool:
        return not self.problems and not self.more_problems

    @property
    def problem_count(self) -> int:
        return len(self.problems) + self.more_problems

    def room(self) -> int:
        """How many more problems are kept before they are only counted."""
        return max(0, MAX_KEPT - len(self.problems))

    def add(self, line: int | None, column: str | None, message: str) -> None:
        if len(self.problems) < MAX_KEPT:
            self.problems.append(Problem(line, column, message))
        else:
            self.more_problems += 1

    def merge(self, part: ImportReport) -> None:
        """Add the rows read and problems of a part of the same table, as if found here."""
        self.rows_read += part.rows_read
        for problem in part.problems:
            self.add(problem.line, problem.column, problem.message)
        self.more_problems += part.more_problems

    def summary(self) -> str:
        parts = [f"{self.source}: {self.rows_read} rows read, {self.created} created, {self.updated} updated"]
        if self.skipped:
            parts.append(f"{self.skipped} skipped")
        for key, value in self.extra.items():
            parts.append(f"{value} {key}")
        return ", ".join(parts)

    def problem_text(self) -> str:
        lines = [str(p) for p in self.problems[:MAX_LISTED]]
        if self.problem_count > MAX_LISTED:
            lines.append(f"... and {self.problem_count - MAX_LISTED} more problems")
        return "\n".join(lines)

    def as_dict(self) -> dict:
        return {
            "source": self.source,
            "rows_read": self.rows_read,
            "created": self.created,
            "updated": self.updated,
            "skipped": self.skipped,
            "problems": [str(p) for p in self.problems[:MAX_LISTED]],
            "problem_count": self.problem_count,
            "warnings": self.warnings[:MAX_LISTED],
            **self.extra,
        }


class ImportValidationError(ValueError):
    """The input has problems; nothing was written. `report.problems` names each place."""

    def __init__(self, report: ImportReport):
        self.report = report
        count = report.problem_count
        head = f"{report.source}: {count} problem{'s' if count != 1 else ''}, nothing written"
        super().__init__(f"{head}\n{report.problem_text()}")
