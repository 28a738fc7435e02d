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
