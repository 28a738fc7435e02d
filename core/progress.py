"""Terminal progress bars for management commands."""

from __future__ import annotations

import sys
from collections.abc import Callable

from tqdm import tqdm


class ProgressBar:
    """A tqdm bar fed with (done, total) callbacks, as the catalog's functions report progress."""

    def __init__(self, desc: str, *, disable: bool | None = None):
        self.bar = tqdm(total=0, desc=desc, unit="row", file=sys.stderr, disable=disable, dynamic_ncols=True)

    def __call__(self, done: int, total: int) -> None:
        if total and self.bar.total != total:
            self.bar.total = total
            self.bar.refresh()
        self.bar.n = done
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()

    def __enter__(self) -> Callable[[int, int], None]:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
