"""Weights files without torch: where the shipped ensemble lives and how files are checked.

Kept apart from ml.inference so that the web site can load its URLs and answer most pages
without importing torch (several hundred MB and seconds of start-up per process).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

#: The shipped default ensemble.
DEFAULT_WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


class WeightsChecksumError(RuntimeError):
    """A weights file does not have the sha256 it must have."""


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
