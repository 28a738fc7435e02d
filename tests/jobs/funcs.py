"""Batch functions for the job tests (imported by tests and, through dotted paths, by workers)."""

from __future__ import annotations

CALLS: list[list[int]] = []


def record(items: list[int]) -> dict:
    """Remembers its batches in-process (sync tests only)."""
    CALLS.append(list(items))
    return {"seen": len(items)}


def nightly_step(progress=None) -> dict:
    if progress:
        progress(3, 3)
    return {"stale": 3}
