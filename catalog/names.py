"""Galaxy names: normalisation for lookup and resolution of what people type.

"NGC 4565", "ngc4565" and "NGC  4565" are one name; "PGC 042038", "pgc42038" and "42038" are
all PGC 42038.
"""

from __future__ import annotations

import re

_SPACES = re.compile(r"[\s_]+")
_PREFIX_NUMBER = re.compile(r"^([A-Z]+)0*(\d+)$")
_PGC = re.compile(r"^(?:PGC|LEDA)?0*(\d+)$")


def normalise_name(name: str) -> str:
    """Canonical lookup key of a galaxy name: upper case, no blanks, no leading zeros after a
    catalogue prefix ("UGC 07772" -> "UGC7772")."""
    key = _SPACES.sub("", str(name)).upper()
    m = _PREFIX_NUMBER.match(key)
    if m:
        key = f"{m.group(1)}{int(m.group(2))}"
    return key


def display_name(name: str) -> str:
    """Tidy display form: single spaces, catalogue prefix separated from its number."""
    text = " ".join(str(name).split())
    m = re.match(r"^([A-Za-z]+)\s*0*(\d+)$", text)
    if m:
        return f"{m.group(1).upper()} {int(m.group(2))}"
    return text


def pgc_from_name(name: str) -> int | None:
    """The PGC number when `name` is a PGC/LEDA designation or a bare number, else None."""
    m = _PGC.match(normalise_name(name))
    return int(m.group(1)) if m else None
