"""What an import found: problems with their place, and counts of what was written."""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_LISTED = 200


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

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, line: int | None, column: str | None, message: str) -> None:
        self.problems.append(Problem(line, column, message))

    def summary(self) -> str:
        parts = [f"{self.source}: {self.rows_read} rows read, {self.created} created, {self.updated} updated"]
        if self.skipped:
            parts.append(f"{self.skipped} skipped")
        for key, value in self.extra.items():
            parts.append(f"{value} {key}")
        return ", ".join(parts)

    def problem_text(self) -> str:
        lines = [str(p) for p in self.problems[:MAX_LISTED]]
        if len(self.problems) > MAX_LISTED:
            lines.append(f"... and {len(self.problems) - MAX_LISTED} more problems")
        return "\n".join(lines)

    def as_dict(self) -> dict:
        return {
            "source": self.source,
            "rows_read": self.rows_read,
            "created": self.created,
            "updated": self.updated,
            "skipped": self.skipped,
            "problems": [str(p) for p in self.problems[:MAX_LISTED]],
            "problem_count": len(self.problems),
            "warnings": self.warnings[:MAX_LISTED],
            **self.extra,
        }


class ImportValidationError(ValueError):
    """The input has problems; nothing was written. `report.problems` names each place."""

    def __init__(self, report: ImportReport):
        self.report = report
        count = len(report.problems)
        head = f"{report.source}: {count} problem{'s' if count != 1 else ''}, nothing written"
        super().__init__(f"{head}\n{report.problem_text()}")
