"""Helpers shared by several test modules: users with a role, response bodies, strict VOTables."""

from __future__ import annotations

import io
import os
import warnings

from core.roles import ensure_groups, grant
from tests.factories import UserFactory

# Every UCD word of the column registry is in the IVOA list: no W06 warning is tolerated.
KNOWN_BAD_UCD_WORDS: tuple[str, ...] = ()


def user_with_role(role: str | None, username: str | None = None, **fields):
    """A new user (UserFactory) granted `role` (None: no role); every role group exists after."""
    ensure_groups()
    user = UserFactory(**({"username": username} if username else {}), **fields)
    if role:
        grant(user, role)
    return user


def response_body(response) -> bytes:
    """The whole body of a Django test response, streamed or not."""
    return b"".join(response.streaming_content) if response.streaming else response.content


def read_votable(data: bytes, allow: tuple[str, ...] = ()):
    """Parse strictly: any VOTable warning fails, except W06 for the known registry UCD words
    and the words of `allow`."""
    from astropy.io.votable import parse_single_table
    from astropy.io.votable.exceptions import VOWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = parse_single_table(io.BytesIO(data), verify="warn")
    problems = [str(w.message) for w in caught if issubclass(w.category, VOWarning)]
    problems = [p for p in problems if not ("W06" in p and any(word in p for word in KNOWN_BAD_UCD_WORDS + allow))]
    assert not problems, problems
    return table


# Headless Chromium as the browser tests and bench/jobs_demo.py start it (Debian's package, no
# browser download; the flags keep it off this machine's closed network).
CHROMIUM = os.environ.get("GALCAT_CHROMIUM", "/usr/bin/chromium")
LAUNCH_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
