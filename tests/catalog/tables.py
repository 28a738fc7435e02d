"""Makers of small catalog tables for importer tests (derived from the shared EDD table)."""

from __future__ import annotations

from pathlib import Path


def edd_lines(shared_data: Path, n: int | None = None) -> list[str]:
    lines = (shared_data / "edd_cf4_sample.txt").read_text().splitlines()
    return lines if n is None else lines[: n + 1]


def write_edd(tmp_path: Path, lines: list[str], name: str = "table.txt") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def replace_cell(lines: list[str], row: int, column: str, value: str) -> list[str]:
    """Copy of the EDD lines with one cell (data row `row`, 1-based) replaced."""
    header = [h.strip() for h in lines[0].split("|")]
    j = header.index(column)
    out = list(lines)
    cells = out[row].split("|")
    cells[j] = f" {value} "
    out[row] = "|".join(cells)
    return out


def write_csv(path: Path, n: int, *, first: int = 1, bad_rows: dict[int, tuple[str, str]] | None = None) -> Path:
    """A CSV of n synthetic galaxies (pgc first.., ra, dec, vhel, d25, name); bad_rows maps a
    data row (1-based) to (column, text) replacing that cell."""
    header = ["pgc", "ra", "dec", "vhel", "d25", "name"]
    bad_rows = bad_rows or {}
    with path.open("w") as f:
        f.write(",".join(header) + "\n")
        for k in range(n):
            pgc = first + k
            cells = [
                str(pgc),
                f"{(pgc * 0.37) % 360:.5f}",
                f"{((pgc * 0.11) % 180) - 90:.5f}",
                f"{1000 + pgc % 9000}",
                f"{1 + pgc % 7 / 10:.2f}",
                f"TST {pgc}",
            ]
            if k + 1 in bad_rows:
                col, text = bad_rows[k + 1]
                cells[header.index(col)] = text
            f.write(",".join(cells) + "\n")
    return path
