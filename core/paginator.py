"""A Django Paginator that can be told its count."""

from __future__ import annotations

from django.core.paginator import Paginator
from django.utils.functional import cached_property


class CountedPaginator(Paginator):
    """A Paginator told its count when it is known already (a kept or index-only count), so
    that it does not run object_list.count()."""

    def __init__(self, object_list, per_page: int, count: int | None = None):
        super().__init__(object_list, per_page)
        self._known_count = count

    @cached_property
    def count(self) -> int:
        return super().count if self._known_count is None else self._known_count
