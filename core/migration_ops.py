"""A migration operation that moves models from one app to another without touching their tables.

``MoveModels("catalog", ["job"])`` in a migration of the ``jobs`` app makes the catalog's Job the
jobs app's Job in Django's migration state (same fields, options, indexes and constraints, and its
old table name, ``catalog_job``), and moves the models' content types with them so permissions
and admin log entries follow. No table, column or row changes. The model's Meta must name the old
table (``db_table``), which the state then matches.
"""

from __future__ import annotations

from django.db.migrations.operations.base import Operation

CONTENT_TYPES_SQL = """
UPDATE django_content_type SET app_label = %s
WHERE app_label = %s AND model = ANY(%s)
  AND NOT EXISTS (SELECT 1 FROM django_content_type t WHERE t.app_label = %s AND t.model = django_content_type.model)
"""


class MoveModels(Operation):
    """Move `models` (lower-case names) of app `source` into the app of the migration."""

    reversible = True
    reduces_to_sql = False

    def __init__(self, source: str, models: list[str]):
        self.source = source
        self.models = [m.lower() for m in models]

    def deconstruct(self):
        return (self.__class__.__qualname__, [self.source, self.models], {})

    def _move(self, state, old: str, new: str) -> None:
        for name in self.models:
            moved = state.models[old, name].clone()
            moved.app_label = new
            moved.options.setdefault("db_table", f"{self.source}_{name}")
            state.remove_model(old, name)
            state.add_model(moved)

    def state_forwards(self, app_label, state) -> None:
        self._move(state, self.source, app_label)

    def _move_content_types(self, schema_editor, old: str, new: str) -> None:
        schema_editor.execute(CONTENT_TYPES_SQL, [new, old, self.models, new])

    def database_forwards(self, app_label, schema_editor, from_state, to_state) -> None:
        self._move_content_types(schema_editor, self.source, app_label)

    def database_backwards(self, app_label, schema_editor, from_state, to_state) -> None:
        self._move_content_types(schema_editor, app_label, self.source)

    def describe(self) -> str:
        return f"Move models {', '.join(self.models)} from app {self.source} (state and content types; tables stay)"

    @property
    def migration_name_fragment(self) -> str:
        return f"from_{self.source}"
