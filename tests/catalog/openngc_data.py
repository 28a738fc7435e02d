"""A small OpenNGC database: chosen rows of the real one that pyongc ships, same schema."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from catalog.importers.openngc import bundled_path

# NGC 4565 (Needle Galaxy), M 31 and M 32, the galaxies of the shared SDSS images that OpenNGC
# holds (NGC 132, IC 1586, NGC 4498, IC 3476, NGC 4617, NGC 4826, NGC 5254, NGC 5704), neighbours
# of NGC 4565 in number.
NAMES = (
    "NGC4565", "NGC4564", "NGC4567", "NGC0224", "NGC0221", "NGC0132", "IC1586", "NGC4498", "IC3476",
    "NGC4617", "NGC4826", "NGC5254", "NGC5704",
)  # fmt: skip


def openngc_subset(folder: Path, names: tuple[str, ...] = NAMES) -> Path:
    """Write the OpenNGC rows called `names` (and the Dup rows naming them) to folder/ongc.db."""
    out = folder / "ongc.db"
    with closing(sqlite3.connect(out)) as dst, closing(sqlite3.connect(bundled_path())) as src:
        for (sql,) in src.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND sql IS NOT NULL"):
            dst.execute(sql)
        marks = ",".join("?" * len(names))
        rows = src.execute(f"SELECT * FROM objects WHERE name IN ({marks})", names).fetchall()
        width = len(rows[0])
        dst.executemany(f"INSERT INTO objects VALUES ({','.join('?' * width)})", rows)
        dst.commit()
    return out
