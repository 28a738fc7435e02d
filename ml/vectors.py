"""pgvector in the catalog's PostgreSQL: the extension check of the migration, the per-version HNSW
index over the embeddings, and the search-time recall knob.

The embedded PostgreSQL 16 (pgserver) ships pgvector 0.6.2. An external server needs the extension
installed by its operator; the migration then creates it. HNSW indexes need pgvector 0.5.0 or newer.
"""

from __future__ import annotations

from django.contrib.postgres.operations import CreateExtension
from django.core.exceptions import ImproperlyConfigured

#: HNSW indexes came with pgvector 0.5.0.
PGVECTOR_MIN_VERSION = (0, 5, 0)

INSTALL_HELP = (
    "Install pgvector (0.5.0 or newer) on the database server, then run `manage.py migrate` again: "
    "on Debian/Ubuntu with the PostgreSQL project's apt repository `apt-get install postgresql-<major>-pgvector`, "
    "with Homebrew `brew install pgvector`, else build it from source (`make && make install` in a pgvector "
    "checkout, with pg_config of that server on PATH). A role that may create extensions must then run "
    "`CREATE EXTENSION vector;` in the catalog's database, or the migration does it. "
    "The embedded server of `make run` (scripts/pg.py) already ships pgvector."
)


class PgvectorMissing(ImproperlyConfigured):
    """The database server cannot provide the pgvector extension (or only an old one)."""


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split(".") if p.isdigit())


def require_pgvector(cursor) -> str:
    """The pgvector version the server offers (installed, else available), after checking
    pg_available_extensions; PgvectorMissing with how to install it when it offers none or one
    older than 0.5.0."""
    cursor.execute("SELECT default_version, installed_version FROM pg_available_extensions WHERE name = 'vector'")
    row = cursor.fetchone()
    cursor.execute("SELECT version()")
    server = cursor.fetchone()[0]
    if row is None:
        raise PgvectorMissing(
            f"The PostgreSQL server ({server}) has no pgvector extension ('vector' is not in pg_available_extensions). {INSTALL_HELP}"
        )
    version = row[1] or row[0]
    if _version(version) < PGVECTOR_MIN_VERSION:
        raise PgvectorMissing(f"The PostgreSQL server ({server}) has pgvector {version}; HNSW indexes need 0.5.0 or newer. {INSTALL_HELP}")
    return version


class CreateVectorExtension(CreateExtension):
    """CREATE EXTENSION vector, after require_pgvector: a server without pgvector fails the
    migration with how to install it, not with "could not open extension control file"."""

    def __init__(self) -> None:
        super().__init__("vector")

    def deconstruct(self):
        return (self.__class__.__qualname__, [], {})

    def database_forwards(self, app_label, schema_editor, from_state, to_state) -> None:
        if schema_editor.connection.vendor == "postgresql":
            with schema_editor.connection.cursor() as cur:
                require_pgvector(cur)
        super().database_forwards(app_label, schema_editor, from_state, to_state)


def hnsw_index_name(model_version_id: int) -> str:
    return f"ml_embedding_hnsw_v{int(model_version_id)}"


def ensure_hnsw_index(model_version_id: int, dim: int, *, m: int, ef_construction: int, table: str = "ml_imageembedding") -> str:
    """The HNSW index (cosine distance) over one latent version's embeddings: a partial index on
    ``embedding::vector(dim)`` WHERE model_version_id = the version, so versions of different
    dimensions share the table. Created when missing; returns its name."""
    from django.db import connection

    name = hnsw_index_name(model_version_id) if table == "ml_imageembedding" else f"{table}_hnsw_v{int(model_version_id)}"
    with connection.cursor() as cur:
        # Rows written earlier in this transaction leave deferred foreign-key checks pending, which
        # CREATE INDEX refuses: run them now, and defer again after (Django's constraints are deferred).
        cur.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cur.execute(
            f"CREATE INDEX IF NOT EXISTS {name} ON {table} USING hnsw ((embedding::vector({int(dim)})) vector_cosine_ops) "
            f"WITH (m = {int(m)}, ef_construction = {int(ef_construction)}) WHERE model_version_id = {int(model_version_id)}"
        )
        cur.execute("SET CONSTRAINTS ALL DEFERRED")
    return name


def set_ef_search(connection, ef_search: int) -> None:
    """hnsw.ef_search (candidates kept while searching: recall against speed) for the queries that
    follow on this connection: SET LOCAL inside a transaction (it ends with it), else a session SET
    issued only when the connection does not have that value yet (saving the BEGIN, SET and COMMIT
    round trips of every query)."""
    ef = int(ef_search)
    if connection.in_atomic_block:
        with connection.cursor() as cur:
            cur.execute(f"SET LOCAL hnsw.ef_search = {ef}")
        return
    connection.ensure_connection()
    raw = connection.connection
    done = getattr(connection, "_galcat_ef_search", None)
    if done is None or done[0] is not raw or done[1] != ef:
        with connection.cursor() as cur:
            cur.execute(f"SET hnsw.ef_search = {ef}")
        connection._galcat_ef_search = (raw, ef)
