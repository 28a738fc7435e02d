"""Each app reads its GALCAT_ settings through one accessor: ``conf.NAME`` is
``settings.GALCAT_NAME``. Every default is set once, in config/settings.py (from the environment);
the accessor adds none, so a setting missing there fails loudly instead of falling back to a
second, drifting default. Reads are live, so ``override_settings`` in tests applies."""

from __future__ import annotations

from typing import Any

from django.conf import settings

PREFIX = "GALCAT_"


class AppSettings:
    """The GALCAT_ settings one app reads (names without the prefix)."""

    def __init__(self, app: str, *names: str):
        self._app = app
        self._names = frozenset(names)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name not in self._names:
            raise AttributeError(f"{PREFIX}{name} is not a setting of the {self._app} app")
        return getattr(settings, PREFIX + name)


# The project-wide plumbing's own settings (core.api.throttles).
conf = AppSettings("core", "API_THROTTLE_ANON", "API_THROTTLE_USER", "API_THROTTLE_INFERENCE", "API_THROTTLE_UPLOAD")
