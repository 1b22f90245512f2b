"""Versioned schema changes: named functions, applied in order, recorded in ``kern_migrations``.

To change the schema, edit the tables in ``kern.db.schema`` and append one function here::

    @migration
    def m002_learnings(conn: Connection) -> None:
        schema.learnings.create(conn)

Rules that keep every database upgradable:

- Never rename, reorder or edit a migration that has shipped; append a new one.
- A migration may build on the tables in ``kern.db.schema`` only while they still have the
  shape it expects. When a later migration alters a table (adds a column, …), freeze the old
  definition inside the migration that created it. ``tests/test_migrations.py`` upgrades from
  every prefix of ``MIGRATIONS`` with data, so forgetting this fails the suite.

Each migration runs in its own write transaction together with the row recording it, so a
failed migration leaves nothing behind and stays pending. Concurrent openers are serialised:
SQLite by ``BEGIN IMMEDIATE`` (the write lock, taken before the applied list is re-read),
Postgres by a transaction-level advisory lock. The loser of the race finds the migration
recorded and skips it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    and_,
    delete,
    false,
    func,
    insert,
    inspect,
    select,
    text,
)
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.schema import CreateColumn

from kern.db import schema
from kern.errors import ConfigError, StorageError

if TYPE_CHECKING:
    from kern.db.sql import SqlDb

__all__ = [
    "MIGRATIONS",
    "RESET_TOMBSTONE",
    "TOMBSTONE_HORIZON",
    "Migration",
    "applied_migrations",
    "draw_scope_tokens_now",
    "forget_scope_changes",
    "migrate",
    "migration",
    "pending_migrations",
    "serialize_schema_changes",
]

logger = logging.getLogger(__name__)

Migration = Callable[[Connection], None]
"""A schema change. It receives the connection of an open write transaction and must not
commit, roll back or open transactions itself."""

MIGRATIONS: list[Migration] = []
"""Every migration, in the order it is applied. Recorded by function name."""

# An arbitrary constant: the key of kern's Postgres advisory lock (``pg_advisory_xact_lock``).
_PG_MIGRATION_LOCK = 0x6B65726E  # "kern"


def migration(fn: Migration) -> Migration:
    """Register ``fn`` as the next migration (decorator)."""
    if any(existing.__name__ == fn.__name__ for existing in MIGRATIONS):
        raise ConfigError(f"a migration named {fn.__name__!r} is already registered")
    MIGRATIONS.append(fn)
    return fn


@migration
def m001_sessions_and_runs(conn: Connection) -> None:
    schema.sessions.create(conn)
    schema.runs.create(conn)


# The full-text index over ``learnings.text`` is engine-specific DDL, keyed by dialect name.
# SQLite: an FTS5 external-content table (the text is stored once, in ``learnings``) indexed
# by ``learnings.seq`` and kept in step by triggers (the recipe of the FTS5 documentation,
# section 4.4.3). A status change does not touch the index: reads filter on status.
_M002_FULL_TEXT: dict[str, tuple[str, ...]] = {
    "sqlite": (
        """CREATE VIRTUAL TABLE learnings_fts USING fts5(
            text, content='learnings', content_rowid='seq', tokenize='porter unicode61'
        )""",
        """CREATE TRIGGER learnings_fts_insert AFTER INSERT ON learnings BEGIN
            INSERT INTO learnings_fts (rowid, text) VALUES (new.seq, new.text);
        END""",
        """CREATE TRIGGER learnings_fts_delete AFTER DELETE ON learnings BEGIN
            INSERT INTO learnings_fts (learnings_fts, rowid, text)
            VALUES ('delete', old.seq, old.text);
        END""",
        """CREATE TRIGGER learnings_fts_update AFTER UPDATE OF text ON learnings
        WHEN old.text IS NOT new.text BEGIN
            INSERT INTO learnings_fts (learnings_fts, rowid, text)
            VALUES ('delete', old.seq, old.text);
            INSERT INTO learnings_fts (rowid, text) VALUES (new.seq, new.text);
        END""",
    ),
    # Postgres got its full-text index later, in m003_postgres_full_text.
}


# ``learnings`` as m002 created it (m004 added columns): frozen here, so upgrading an empty or
# old database replays the history of the schema, not today's shape.
_M002_METADATA = MetaData(naming_convention=schema.metadata.naming_convention)
_M002_LEARNINGS = Table(
    "learnings",
    _M002_METADATA,
    Column("seq", schema.BIG_INT_ID, primary_key=True, autoincrement=True),
    Column("id", String, nullable=False, unique=True),
    Column("store", String, nullable=False),
    Column("kind", String, nullable=False),
    Column("scope", String, nullable=False),
    Column("user_id", String, nullable=True),
    Column("session_id", String, nullable=True),
    Column("agent_id", String, nullable=True),
    Column("namespace", String, nullable=True),
    Column("key", String, nullable=True),
    Column("content", schema.Json, nullable=False),
    Column("text", Text, nullable=False),
    Column("content_hash", String, nullable=False),
    Column("status", String, nullable=False),
    Column("version", Integer, nullable=False),
    Column("run_id", String, nullable=True),
    Column("created_at", schema.UtcDateTime, nullable=False),
    Column("updated_at", schema.UtcDateTime, nullable=False),
    Column("metadata", schema.Json, nullable=False),
    Column("embedding", LargeBinary, nullable=True),
    Index(None, "store", "scope", "status", "created_at"),
    Index(None, "user_id"),
    Index(None, "session_id"),
    Index(None, "content_hash"),
    sqlite_autoincrement=True,
)
_m002_active = and_(_M002_LEARNINGS.c.key.is_not(None), _M002_LEARNINGS.c.status == "active")
Index(
    "uq_learnings_active_key",
    _M002_LEARNINGS.c.store,
    _M002_LEARNINGS.c.scope,
    _M002_LEARNINGS.c.key,
    unique=True,
    sqlite_where=_m002_active,
    postgresql_where=_m002_active,
)


@migration
def m002_learnings(conn: Connection) -> None:
    _M002_LEARNINGS.create(conn)
    schema.learning_history.create(conn)
    schema.jobs.create(conn)
    for statement in _M002_FULL_TEXT.get(conn.dialect.name, ()):
        conn.exec_driver_sql(statement)


# Postgres: a stored generated ``tsvector`` column over ``learnings.text`` and its GIN index.
# The text-search configuration ``kern_english`` mirrors SQLite's ``porter unicode61``: English
# Snowball stemming and no stopword list (``kern._text.query_terms`` drops stopwords from
# queries, and keeps them when a query has nothing else, so the index must hold them). The column
# is not part of ``kern.db.schema``: it is engine-specific, like SQLite's ``learnings_fts``.
_M003_POSTGRES_FULL_TEXT = (
    "CREATE TEXT SEARCH DICTIONARY kern_english_stem (TEMPLATE = snowball, Language = english)",
    "CREATE TEXT SEARCH CONFIGURATION kern_english (COPY = english)",
    """ALTER TEXT SEARCH CONFIGURATION kern_english
        ALTER MAPPING REPLACE english_stem WITH kern_english_stem""",
    """ALTER TABLE learnings ADD COLUMN text_search tsvector
        GENERATED ALWAYS AS (to_tsvector('kern_english'::regconfig, text)) STORED""",
    "CREATE INDEX ix_learnings_text_search ON learnings USING gin (text_search)",
)


@migration
def m003_postgres_full_text(conn: Connection) -> None:
    """Full-text search on Postgres (SQLite's FTS5 index came with m002); nothing on SQLite."""
    if conn.dialect.name == "postgresql":
        for statement in _M003_POSTGRES_FULL_TEXT:
            conn.exec_driver_sql(statement)


# The columns of the second clock, expiry, pinning and supersession (DESIGN.md section 11),
# frozen as this migration adds them. Existing rows get ``None`` (unknown validity, no expiry)
# and ``pinned`` false.
_M004_TABLE = Table(
    "learnings",
    MetaData(naming_convention=schema.metadata.naming_convention),
    Column("valid_from", schema.UtcDateTime, nullable=True),
    Column("valid_to", schema.UtcDateTime, nullable=True),
    Column("expires_at", schema.UtcDateTime, nullable=True),
    Column("pinned", Boolean, nullable=False, server_default=false()),
    Column("superseded_by", String, nullable=True),
    Index(None, "superseded_by"),
)


@migration
def m004_time(conn: Connection) -> None:
    """Two clocks, expiry, pinning and supersession on learnings (both engines)."""
    for column in _M004_TABLE.columns:
        ddl = CreateColumn(column).compile(dialect=conn.dialect)
        conn.exec_driver_sql(f"ALTER TABLE learnings ADD COLUMN {ddl}")
    for index in _M004_TABLE.indexes:
        index.create(conn)


# SQLite: the full-text index gets the row's scope as a second column, one token per scope
# (``hex(scope)``: letters and digits, so unicode61 keeps it whole), so that a search matches
# ``text: (terms) AND scope: <token>`` and FTS5 intersects the scope's doclist with the terms'
# before scoring, instead of listing every matching row of the table for the join back to
# ``learnings`` to filter (benchmarks/scale.md: a user's recall at 1M stored items, p50 319 ->
# 19 ms). The table becomes contentless (``content=''``): it never returns text, and an
# external-content table would need ``learnings`` to hold the token as a column. A contentless
# table's ``delete`` takes the values the row was indexed with, which the triggers pass.
_M005_SQLITE_SCOPED_FULL_TEXT = (
    "DROP TRIGGER learnings_fts_insert",
    "DROP TRIGGER learnings_fts_delete",
    "DROP TRIGGER learnings_fts_update",
    "DROP TABLE learnings_fts",
    """CREATE VIRTUAL TABLE learnings_fts USING fts5(
        text, scope, content='', tokenize='porter unicode61'
    )""",
    "INSERT INTO learnings_fts (rowid, text, scope) SELECT seq, text, hex(scope) FROM learnings",
    """CREATE TRIGGER learnings_fts_insert AFTER INSERT ON learnings BEGIN
        INSERT INTO learnings_fts (rowid, text, scope) VALUES (new.seq, new.text, hex(new.scope));
    END""",
    """CREATE TRIGGER learnings_fts_delete AFTER DELETE ON learnings BEGIN
        INSERT INTO learnings_fts (learnings_fts, rowid, text, scope)
        VALUES ('delete', old.seq, old.text, hex(old.scope));
    END""",
    """CREATE TRIGGER learnings_fts_update AFTER UPDATE OF text, scope ON learnings
    WHEN old.text IS NOT new.text OR old.scope IS NOT new.scope BEGIN
        INSERT INTO learnings_fts (learnings_fts, rowid, text, scope)
        VALUES ('delete', old.seq, old.text, hex(old.scope));
        INSERT INTO learnings_fts (rowid, text, scope) VALUES (new.seq, new.text, hex(new.scope));
    END""",
)


@migration
def m005_scoped_full_text(conn: Connection) -> None:
    """SQLite's full-text index holds each row's scope, so searches are bounded by it."""
    if conn.dialect.name == "sqlite":
        for statement in _M005_SQLITE_SCOPED_FULL_TEXT:
            conn.exec_driver_sql(statement)


# Every write to ``learnings`` draws a new random token for the (store, scope) of each row it
# touches (both scopes when an update moves a row), in the writing transaction, whoever
# writes: kern's ``apply``, ``delete_user``, an import, an older kern, a hand-written UPDATE.
# ``kern.db._scopes`` serves a scope's rows from memory only while its token is unchanged.
# Random, not a counter: a deleted token row (``delete_user`` removes those of scopes it
# empties, as they name the user) or a restored backup can never bring back a value a cache
# still holds. SQLite: row triggers (writers are serialised anyway). PostgreSQL: a row
# trigger deferred to the commit, so concurrent writers of one scope queue on its token row
# only while they commit, not for their whole transaction; each transaction draws a scope's
# token once (the row's ``xmin`` says whether this transaction already wrote it).
_M006_TOKEN = {
    "sqlite": "lower(hex(randomblob(16)))",
    "postgresql": "md5(random()::text || clock_timestamp()::text)",
}


def _m006_upsert(dialect: str, rows: str) -> str:
    """A new token for each (store, scope) that the query ``rows`` lists (each once)."""
    return (
        f"INSERT INTO learning_scopes (store, scope, token) SELECT store, scope, "
        f"{_M006_TOKEN[dialect]} FROM ({rows}) AS touched WHERE true ORDER BY store, scope "
        f"ON CONFLICT (store, scope) DO UPDATE SET token = excluded.token"
    )


_OLD_SQLITE = "SELECT old.store AS store, old.scope AS scope"
_NEW_SQLITE = "SELECT new.store AS store, new.scope AS scope"
_M006_SQLITE_TRIGGERS = (
    f"""CREATE TRIGGER learnings_scope_insert AFTER INSERT ON learnings BEGIN
        {_m006_upsert("sqlite", _NEW_SQLITE)};
    END""",
    f"""CREATE TRIGGER learnings_scope_delete AFTER DELETE ON learnings BEGIN
        {_m006_upsert("sqlite", _OLD_SQLITE)};
    END""",
    f"""CREATE TRIGGER learnings_scope_update AFTER UPDATE ON learnings BEGIN
        {_m006_upsert("sqlite", f"{_OLD_SQLITE} UNION {_NEW_SQLITE}")};
    END""",
)
_M006_PG_TRIGGERS = (
    f"""CREATE FUNCTION kern_draw_scope_token(the_store text, the_scope text) RETURNS void
    LANGUAGE plpgsql AS $$
    BEGIN
        IF NOT EXISTS (
            SELECT 1 FROM learning_scopes
            WHERE store = the_store AND scope = the_scope AND xmin = pg_current_xact_id()::xid
        ) THEN
            {_m006_upsert("postgresql", "SELECT the_store AS store, the_scope AS scope")};
        END IF;
    END
    $$""",
    """CREATE FUNCTION kern_touch_learning_scope() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            PERFORM kern_draw_scope_token(NEW.store, NEW.scope);
        ELSIF TG_OP = 'DELETE' THEN
            PERFORM kern_draw_scope_token(OLD.store, OLD.scope);
        ELSE
            PERFORM kern_draw_scope_token(OLD.store, OLD.scope);
            IF NEW.store IS DISTINCT FROM OLD.store OR NEW.scope IS DISTINCT FROM OLD.scope THEN
                PERFORM kern_draw_scope_token(NEW.store, NEW.scope);
            END IF;
        END IF;
        RETURN NULL;
    END
    $$""",
    """CREATE CONSTRAINT TRIGGER learnings_scope_token AFTER INSERT OR UPDATE OR DELETE
    ON learnings DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION kern_touch_learning_scope()""",
)


@migration
def m006_learning_scopes(conn: Connection) -> None:
    """A token per (store, scope) of learnings, drawn anew by every write (both engines)."""
    schema.learning_scopes.create(conn)
    dialect = conn.dialect.name
    conn.exec_driver_sql(_m006_upsert(dialect, "SELECT DISTINCT store, scope FROM learnings"))
    for statement in _M006_SQLITE_TRIGGERS if dialect == "sqlite" else _M006_PG_TRIGGERS:
        conn.exec_driver_sql(statement)


# Which write last changed each row of ``learnings`` (``learnings.changed``) and the rows
# deleted from a scope (``learning_tombstones``), kept by triggers in the writing transaction
# whoever writes, so that a search snapshot (``kern.db._scopes``) reads only the rows of its
# scope changed since it was read instead of the whole scope again. The marker is a number
# that only grows with the order writes become visible in, on the terms ``kern.db._scopes``
# explains ("Changes since a snapshot"):
#
# - SQLite: a counter (``learning_clock``, one row) advanced by every row written. One writer
#   at a time commits, so a reader's transaction sees exactly the writes numbered up to the
#   counter it reads.
# - PostgreSQL: the writing transaction's id (``pg_current_xact_id()``, an ``xid8``, which
#   never wraps), set by a BEFORE trigger. Ids are not committed in order; a snapshot records
#   the oldest transaction still running when it was read (its ``xmin``), below which every
#   transaction has ended.
#
# An update that moves a row to another scope leaves a tombstone in the old one. Each delete
# prunes its scope's tombstones older than ``TOMBSTONE_HORIZON`` markers (PostgreSQL: rows a
# concurrent delete holds are skipped, never waited for); a snapshot older than that is read
# whole again. Rows written before m007 have ``changed = 0``.
TOMBSTONE_HORIZON = 1 << 20

_M007_SQLITE_CLOCK = "(SELECT value FROM learning_clock)"
_M007_SQLITE_STAMP = f"""UPDATE learning_clock SET value = value + 1;
        UPDATE learnings SET changed = {_M007_SQLITE_CLOCK} WHERE seq = new.seq;"""


def _m007_sqlite_bury(when: str) -> str:
    return f"""INSERT INTO learning_tombstones (store, scope, seq, id, changed)
        SELECT old.store, old.scope, old.seq, old.id, value FROM learning_clock WHERE {when}
        ON CONFLICT (store, scope, seq) DO UPDATE SET id = excluded.id, changed = excluded.changed;
        DELETE FROM learning_tombstones WHERE store = old.store AND scope = old.scope
        AND changed < {_M007_SQLITE_CLOCK} - {TOMBSTONE_HORIZON};"""


_M007_SQLITE = (
    "CREATE TABLE learning_clock (value INTEGER NOT NULL)",
    "INSERT INTO learning_clock (value) VALUES (0)",
    f"""CREATE TRIGGER learnings_changed_insert AFTER INSERT ON learnings BEGIN
        {_M007_SQLITE_STAMP}
    END""",
    # ``WHEN``: the stamp's own UPDATE (which changes ``changed``) does not stamp again.
    f"""CREATE TRIGGER learnings_changed_update AFTER UPDATE ON learnings
    WHEN new.changed IS old.changed BEGIN
        {_M007_SQLITE_STAMP}
        {_m007_sqlite_bury("old.store IS NOT new.store OR old.scope IS NOT new.scope")}
    END""",
    f"""CREATE TRIGGER learnings_changed_delete AFTER DELETE ON learnings BEGIN
        UPDATE learning_clock SET value = value + 1;
        {_m007_sqlite_bury("true")}
    END""",
)
_M007_PG_XACT = "pg_current_xact_id()::text::bigint"
_M007_PG = (
    f"""CREATE FUNCTION kern_stamp_learning() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        NEW.changed := {_M007_PG_XACT};
        RETURN NEW;
    END
    $$""",
    f"""CREATE FUNCTION kern_bury_learning() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        now bigint := {_M007_PG_XACT};
    BEGIN
        IF TG_OP = 'DELETE' OR NEW.store IS DISTINCT FROM OLD.store
            OR NEW.scope IS DISTINCT FROM OLD.scope THEN
            INSERT INTO learning_tombstones (store, scope, seq, id, changed)
            VALUES (OLD.store, OLD.scope, OLD.seq, OLD.id, now)
            ON CONFLICT (store, scope, seq)
            DO UPDATE SET id = excluded.id, changed = excluded.changed;
            DELETE FROM learning_tombstones WHERE (store, scope, seq) IN (
                SELECT store, scope, seq FROM learning_tombstones
                WHERE store = OLD.store AND scope = OLD.scope
                AND changed < now - {TOMBSTONE_HORIZON}
                FOR UPDATE SKIP LOCKED
            );
        END IF;
        RETURN NULL;
    END
    $$""",
    """CREATE TRIGGER learnings_changed BEFORE INSERT OR UPDATE ON learnings
    FOR EACH ROW EXECUTE FUNCTION kern_stamp_learning()""",
    """CREATE TRIGGER learnings_buried AFTER UPDATE OR DELETE ON learnings
    FOR EACH ROW EXECUTE FUNCTION kern_bury_learning()""",
)
# ``learnings.changed`` and its index, as this migration adds them.
_M007_TABLE = Table(
    "learnings",
    MetaData(naming_convention=schema.metadata.naming_convention),
    Column("store", String),
    Column("scope", String),
    Column("changed", BigInteger, nullable=False, server_default="0"),
    Index(None, "store", "scope", "changed"),
)


@migration
def m007_learning_changes(conn: Connection) -> None:
    """Which write last changed each learning, and tombstones of deleted ones (both engines)."""
    ddl = CreateColumn(_M007_TABLE.c.changed).compile(dialect=conn.dialect)
    conn.exec_driver_sql(f"ALTER TABLE learnings ADD COLUMN {ddl}")
    for index in _M007_TABLE.indexes:
        index.create(conn)
    schema.learning_tombstones.create(conn)
    for statement in _M007_SQLITE if conn.dialect.name == "sqlite" else _M007_PG:
        conn.exec_driver_sql(statement)


def applied_migrations(db: SqlDb) -> list[str]:
    """Names of the migrations recorded in the database, oldest first (read-only)."""
    with db.transaction(write=False, action="read the applied migrations") as conn:
        return _applied(conn)


def pending_migrations(db: SqlDb, migrations: Sequence[Migration] = MIGRATIONS) -> list[str]:
    """Names of ``migrations`` not yet applied, in the order ``migrate`` would apply them."""
    done = set(applied_migrations(db))
    return [fn.__name__ for fn in migrations if fn.__name__ not in done]


def migrate(db: SqlDb, migrations: Sequence[Migration] = MIGRATIONS) -> list[str]:
    """Apply the pending ``migrations`` in order, one transaction each; return the names applied
    by this call. A no-op (one read, no write lock) when the database is up to date."""
    _check_unique(migrations)
    with db.transaction(write=False, action="read the applied migrations") as conn:
        applied = _applied(conn)
    unknown = set(applied) - {fn.__name__ for fn in migrations}
    if unknown:
        # A newer kern migrated this database; its changes are additive by rule, so carry on.
        logger.warning(
            "%r has migrations this version of kern does not know: %s",
            db,
            ", ".join(sorted(unknown)),
        )
    pending = [fn for fn in migrations if fn.__name__ not in set(applied)]
    if not pending:
        return []

    with db.transaction(action="create the migrations table") as conn:
        serialize_schema_changes(conn)
        schema.kern_migrations.create(conn, checkfirst=True)

    done_now: list[str] = []
    for fn in pending:
        name = fn.__name__
        with db.transaction(action=f"apply migration {name}") as conn:
            serialize_schema_changes(conn)
            already = conn.execute(
                select(schema.kern_migrations.c.name).where(schema.kern_migrations.c.name == name)
            ).first()
            if already is not None:
                continue  # another process applied it while we waited for the lock
            try:
                fn(conn)
            except (StorageError, SQLAlchemyError):
                raise  # db.transaction names the migration in the StorageError
            except Exception as exc:
                raise StorageError(f"migration {name} failed in {db!r}: {exc}") from exc
            conn.execute(insert(schema.kern_migrations).values(name=name, applied_at=db.now()))
        logger.info("applied migration %s to %r", name, db)
        done_now.append(name)
    return done_now


def _applied(conn: Connection) -> list[str]:
    if not inspect(conn).has_table(schema.kern_migrations.name):
        return []
    table = schema.kern_migrations
    rows = conn.execute(select(table.c.name).order_by(table.c.applied_at, table.c.name))
    return list(rows.scalars())


def serialize_schema_changes(conn: Connection) -> None:
    """Make this transaction the only one changing kern's schema, until it ends (migrations,
    and ``kern.db.postgres``'s optional vector column and indexes).

    On SQLite the write transaction already holds the database's write lock (``BEGIN
    IMMEDIATE``), so there is nothing to add.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(select(func.pg_advisory_xact_lock(_PG_MIGRATION_LOCK)))


def draw_scope_tokens_now(conn: Connection) -> None:
    """Draw now the ``learning_scopes`` tokens of this transaction's writes so far, which
    PostgreSQL draws at commit (m006's deferred trigger): a transaction that then deletes
    token rows must not see them drawn again after it, and PostgreSQL refuses to ALTER
    ``learnings`` while trigger events are pending. SQLite drew them already."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SET CONSTRAINTS learnings_scope_token IMMEDIATE")


#: The tombstone ``forget_scope_changes`` leaves: of no scope, for every scope.
RESET_TOMBSTONE = {"store": "", "scope": "", "seq": 0, "id": ""}

_M007_MARKER = {"sqlite": "(SELECT value FROM learning_clock)", "postgresql": _M007_PG_XACT}


def forget_scope_changes(conn: Connection, scopes: Sequence[tuple[str, str]]) -> None:
    """Remove the tombstones of ``scopes`` (``delete_user``: a user's scope names the user),
    and leave in their stead one tombstone of no scope (``RESET_TOMBSTONE``) marked by this
    transaction: a search snapshot read before it cannot know which rows those scopes lost,
    so it is read whole again (``kern.db._candidates``), whatever its scope (this is rare)."""
    if not scopes:
        return
    table = schema.learning_tombstones
    for store, scope in scopes:
        conn.execute(delete(table).where(table.c.store == store, table.c.scope == scope))
    marker = _M007_MARKER[conn.dialect.name]
    conn.execute(
        text(
            "INSERT INTO learning_tombstones (store, scope, seq, id, changed) "
            f"VALUES (:store, :scope, :seq, :id, {marker}) ON CONFLICT (store, scope, seq) "
            "DO UPDATE SET changed = CASE WHEN excluded.changed > learning_tombstones.changed "
            "THEN excluded.changed ELSE learning_tombstones.changed END"
        ),
        RESET_TOMBSTONE,
    )


def _check_unique(migrations: Sequence[Migration]) -> None:
    names = [fn.__name__ for fn in migrations]
    if len(set(names)) != len(names):
        raise ConfigError(f"migration names must be unique: {names}")
