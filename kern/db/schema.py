"""Every table kern stores, declared once with SQLAlchemy Core, portable to SQLite and Postgres.

Tables are only ever created by a named migration (``kern.db.migrations``); nothing calls
``metadata.create_all``. Two portable types carry the cross-engine details:

- ``UtcDateTime``: timezone-aware UTC in, timezone-aware UTC out. Postgres stores
  ``timestamptz``; SQLite stores naive UTC text (``YYYY-MM-DD HH:MM:SS.ffffff``), which sorts
  chronologically as text.
- ``Json``: ``JSON`` on SQLite (text), ``JSONB`` on Postgres; only plain JSON values.
  ``Json(none_as_null=True)`` stores Python ``None`` as SQL ``NULL`` (nullable columns)
  instead of the JSON text ``null``.

``among(column, values)`` tests membership in a list of strings bound as one parameter.

Tables: ``sessions`` and append-only ``runs`` (migration 1); ``learnings`` (one row per learned
item), ``learning_history`` (one event per change) and ``jobs`` (the durable extraction queue)
(migration 2). The full-text index over ``learnings.text`` is engine-specific and created by
the migration itself (an FTS5 external-content table on SQLite). Migration 4 gave learnings
their second clock (``valid_from``, ``valid_to``), ``expires_at``, ``pinned`` and
``superseded_by``. Migration 6 added ``learning_scopes``, a token per ``(store, scope)`` that
triggers draw anew on every write to ``learnings`` (``kern.db._scopes`` keys its cache by it).
Migration 7 added ``learnings.changed`` and ``learning_tombstones``: which write last changed
each row, and the rows deleted, so that a snapshot reads only what changed since it was read.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    and_,
    false,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import BindParameter, ColumnElement
from sqlalchemy.sql.visitors import InternalTraversal
from sqlalchemy.types import Boolean, TypeEngine

__all__ = [
    "BIG_INT_ID",
    "Json",
    "StringList",
    "UtcDateTime",
    "among",
    "jobs",
    "kern_migrations",
    "learning_history",
    "learning_scopes",
    "learning_tombstones",
    "learnings",
    "metadata",
    "runs",
    "sessions",
    "unindexed",
]


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware datetime, normalised to UTC; naive datetimes are refused.

    Refusing naive values (rather than guessing) keeps ``datetime.now()`` local times from being
    stored as if they were UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: kern stores timezone-aware UTC datetimes")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            # SQLite has no timezone type; naive UTC text keeps ORDER BY chronological.
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def result_processor(
        self, dialect: Dialect, coltype: Any
    ) -> Callable[[Any], datetime | None] | None:
        """SQLAlchemy's processor (the driver's value, parsed, then ``process_result_value``),
        remembered per raw value: search reads hundreds of rows per query that share a few
        moments (a session's turns), and parsing each again cost more than the query. The
        memo maps a stored value to the immutable datetime it always means, so no write can
        make it stale."""
        process = super().result_processor(dialect, coltype)
        return None if process is None else lru_cache(maxsize=_MOMENTS)(process)


#: How many distinct stored datetimes each ``UtcDateTime`` column remembers (a few MB at most).
_MOMENTS = 16_384


class Json(TypeDecorator[Any]):
    """JSON text on SQLite, ``JSONB`` on Postgres.

    Values are checked to be plain JSON (no NaN or infinity, no arbitrary objects) before the
    driver sees them, so both engines accept and refuse the same values, and the refusal is a
    ``StatementError`` that ``SqlDb`` reports as ``StorageError`` (psycopg would raise a bare
    ``TypeError`` from inside the driver).
    """

    impl = JSON
    cache_ok = True

    def __init__(self, *, none_as_null: bool = False) -> None:
        super().__init__(none_as_null=none_as_null)
        # An attribute named like the argument, so it is part of the type's cache key.
        self.none_as_null = none_as_null

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(JSONB(none_as_null=self.none_as_null))
        return dialect.type_descriptor(JSON(none_as_null=self.none_as_null))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        json.dumps(value, allow_nan=False)
        return value


# Integer on SQLite so the column becomes an alias of the rowid (INTEGER PRIMARY KEY).
BIG_INT_ID = BigInteger().with_variant(Integer(), "sqlite")


class StringList(TypeDecorator[list[str]]):
    """A list of strings bound as one parameter: JSON text on SQLite, ``text[]`` on Postgres.

    SQLAlchemy's expanding ``IN`` renders one placeholder per value at every execution; with
    hybrid search's hundreds of candidate ids that rendering cost more than the query.
    """

    impl = Text
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(ARRAY(Text()))
        return dialect.type_descriptor(Text())

    def process_bind_param(self, value: list[str] | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        return list(value) if dialect.name == "postgresql" else json.dumps(list(value))


class _Among(ColumnElement[bool]):
    """``column IN (the strings of one StringList parameter)``; see ``among``."""

    inherit_cache = True
    type = Boolean()
    _is_implicitly_boolean = True  # a predicate: never rendered as "(...) = 1" on SQLite
    # What the statement cache key is made of (a list: SQLAlchemy declares it so).
    _traverse_internals = [  # noqa: RUF012
        ("column", InternalTraversal.dp_clauseelement),
        ("values", InternalTraversal.dp_clauseelement),
    ]

    def __init__(self, column: ColumnElement[Any], values: BindParameter[list[str]]) -> None:
        self.column = column
        self.values = values


def among(
    column: ColumnElement[Any], values: Sequence[str] | BindParameter[Any]
) -> ColumnElement[bool]:
    """``column`` is one of ``values``, bound as a single parameter (``IN (SELECT value FROM
    json_each(?))`` on SQLite, ``= ANY(%s)`` on Postgres), so the statement compiles once and
    is cached whatever the list's length. ``values`` may be a ``StringList`` parameter whose
    value the statement gets later."""
    if not isinstance(values, BindParameter):
        values = BindParameter(None, list(values), type_=StringList())
    return _Among(column, values)


@compiles(_Among, "sqlite")
def _among_sqlite(element: _Among, compiler: SQLCompiler, **kw: Any) -> str:
    column, values = compiler.process(element.column, **kw), compiler.process(element.values, **kw)
    return f"{column} IN (SELECT value FROM json_each({values}))"


@compiles(_Among, "postgresql")
def _among_postgresql(element: _Among, compiler: SQLCompiler, **kw: Any) -> str:
    column, values = compiler.process(element.column, **kw), compiler.process(element.values, **kw)
    return f"{column} = ANY({values})"


class _Unindexed(ColumnElement[Any]):
    """``column``, hidden from SQLite's choice of index; see ``unindexed``."""

    inherit_cache = True
    _traverse_internals = [("column", InternalTraversal.dp_clauseelement)]  # noqa: RUF012

    def __init__(self, column: ColumnElement[Any]) -> None:
        self.column = column
        self.type = column.type


def unindexed(column: ColumnElement[Any]) -> ColumnElement[Any]:
    """``column`` as a value SQLite will not look up through an index (``+column``, SQLite's
    documented way to disqualify a term from indexing; PostgreSQL, which plans from
    statistics, gets the column as it is)."""
    return _Unindexed(column)


@compiles(_Unindexed, "sqlite")
def _unindexed_sqlite(element: _Unindexed, compiler: SQLCompiler, **kw: Any) -> str:
    return "+" + compiler.process(element.column, **kw)


@compiles(_Unindexed, "postgresql")
def _unindexed_postgresql(element: _Unindexed, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.column, **kw)


metadata = MetaData(
    # Stable constraint names, so later migrations can ALTER or DROP them by name on both engines.
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

kern_migrations = Table(
    "kern_migrations",
    metadata,
    Column("name", String, primary_key=True),
    Column("applied_at", UtcDateTime, nullable=False),
)
"""One row per applied migration (see ``kern.db.migrations``)."""

sessions = Table(
    "sessions",
    metadata,
    Column("session_id", String, primary_key=True),
    Column("user_id", String, nullable=True),
    Column("agent_id", String, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("metadata", Json, nullable=False),
    Index(None, "user_id", "updated_at"),
    Index(None, "updated_at"),
)
"""A conversation. Its history is not stored here but in its runs, so runs never contend on it."""

runs = Table(
    "runs",
    metadata,
    # ``seq`` orders runs exactly, even when two share a ``created_at``; AUTOINCREMENT on
    # SQLite so a number is never reused, even after the newest run is deleted.
    Column("seq", BIG_INT_ID, primary_key=True, autoincrement=True),
    Column("run_id", String, nullable=False, unique=True),
    Column(
        "session_id",
        String,
        ForeignKey("sessions.session_id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("user_id", String, nullable=True),
    Column("agent_id", String, nullable=True),
    Column("status", String, nullable=False),
    Column("input", Text, nullable=False),
    Column("content", Text, nullable=True),
    Column("messages", Json, nullable=False),
    Column("metrics", Json, nullable=False),
    Column("error", Text, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Index(None, "session_id", "seq"),
    Index(None, "user_id"),
    sqlite_autoincrement=True,
)
"""Append-only: a run row is inserted once and never updated."""

learnings = Table(
    "learnings",
    metadata,
    # ``seq`` is the rowid on SQLite, so the FTS5 external-content index can point at it;
    # AUTOINCREMENT so a deleted row's number is never given to another row.
    Column("seq", BIG_INT_ID, primary_key=True, autoincrement=True),
    Column("id", String, nullable=False, unique=True),
    Column("store", String, nullable=False),
    Column("kind", String, nullable=False),
    Column("scope", String, nullable=False),
    Column("user_id", String, nullable=True),
    Column("session_id", String, nullable=True),
    Column("agent_id", String, nullable=True),
    Column("namespace", String, nullable=True),
    Column("key", String, nullable=True),
    Column("content", Json, nullable=False),
    Column("text", Text, nullable=False),
    Column("content_hash", String, nullable=False),
    Column("status", String, nullable=False),
    Column("version", Integer, nullable=False),
    Column("run_id", String, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("metadata", Json, nullable=False),
    Column("embedding", LargeBinary, nullable=True),
    # The second clock: when the item held in the world (``None``: unknown, or still true).
    # ``created_at`` stays the first clock, when it was recorded.
    Column("valid_from", UtcDateTime, nullable=True),
    Column("valid_to", UtcDateTime, nullable=True),
    # After this the item is no longer recalled ("I'm in Oslo this week").
    Column("expires_at", UtcDateTime, nullable=True),
    # Pinned items are never pruned, decayed or merged away by the curator.
    Column("pinned", Boolean, nullable=False, default=False, server_default=false()),
    # The item that replaced this one (status ``superseded``).
    Column("superseded_by", String, nullable=True),
    # Which write last inserted or updated the row, set by triggers of migration m007 whoever
    # writes: the writing transaction's id on PostgreSQL, a counter on SQLite; 0 for rows
    # written before m007. A search snapshot reads only the rows changed since it was read
    # (``kern.db._scopes``, "Changes since a snapshot").
    Column("changed", BigInteger, nullable=False, server_default="0"),
    # Every learning-layer read filters on store, scope and status and orders by created_at.
    Index(None, "store", "scope", "status", "created_at"),
    Index(None, "user_id"),
    Index(None, "session_id"),
    Index(None, "content_hash"),
    # The rows of a scope changed since a snapshot was read (``changed >= :horizon``).
    Index(None, "store", "scope", "changed"),
    # The predecessor of an item (``WHERE superseded_by = :id``): walking a supersession chain.
    Index(None, "superseded_by"),
    sqlite_autoincrement=True,
)
"""One row per learned item (a profile field, a memory, a fact, a decision …)."""

Index(
    "uq_learnings_active_key",
    learnings.c.store,
    learnings.c.scope,
    learnings.c.key,
    unique=True,
    # At most one *active* row per key; superseded, deleted and proposed rows keep theirs.
    sqlite_where=and_(learnings.c.key.is_not(None), learnings.c.status == "active"),
    postgresql_where=and_(learnings.c.key.is_not(None), learnings.c.status == "active"),
)

learning_scopes = Table(
    "learning_scopes",
    metadata,
    Column("store", String, primary_key=True),
    Column("scope", String, primary_key=True),
    # A random token drawn anew, in the same transaction, by every insert, update or delete of
    # a learning of this (store, scope): triggers of migration m006 keep it, whoever writes.
    Column("token", String, nullable=False),
)
"""What a cache of a scope's rows is keyed by (``kern.db._scopes``): an unchanged token means
no row of the scope changed. No row: no token to trust, nothing is cached."""

learning_tombstones = Table(
    "learning_tombstones",
    metadata,
    # A row deleted from (or moved out of) this (store, scope), and the write that did it (as
    # ``learnings.changed``), kept by triggers of migration m007 until it is older than
    # ``kern.db.migrations.TOMBSTONE_HORIZON`` writes.
    Column("store", String, primary_key=True),
    Column("scope", String, primary_key=True),
    Column("seq", BIG_INT_ID, primary_key=True, autoincrement=False),
    Column("id", String, nullable=False),
    Column("changed", BigInteger, nullable=False),
    Index(None, "store", "scope", "changed"),
)
"""What a search snapshot must drop of its rows to be brought up to date (``kern.db._scopes``)."""

learning_history = Table(
    "learning_history",
    metadata,
    Column("seq", BIG_INT_ID, primary_key=True, autoincrement=True),
    # No foreign key: history is append-only and outlives status changes; ``delete_user``
    # removes it explicitly.
    Column("learning_id", String, nullable=False),
    Column("store", String, nullable=False),
    Column("scope", String, nullable=False),
    Column("user_id", String, nullable=True),
    Column("action", String, nullable=False),
    # Snapshots of the row's content, text, status, version and metadata.
    Column("before", Json(none_as_null=True), nullable=True),
    Column("after", Json(none_as_null=True), nullable=True),
    Column("run_id", String, nullable=True),
    Column("actor", String, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Index(None, "learning_id"),
    Index(None, "user_id"),
    sqlite_autoincrement=True,
)
"""Append-only: one event per change of a learning, with the run that caused it."""

jobs = Table(
    "jobs",
    metadata,
    Column("id", String, primary_key=True),
    Column("kind", String, nullable=False),
    Column("payload", Json, nullable=False),
    Column("user_id", String, nullable=True),
    Column("session_id", String, nullable=True),
    Column("agent_id", String, nullable=True),
    Column("run_id", String, nullable=True),
    Column("status", String, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("max_attempts", Integer, nullable=False),
    Column("error", Text, nullable=True),
    Column("lease_token", String, nullable=True),
    Column("lease_until", UtcDateTime, nullable=True),
    Column("available_at", UtcDateTime, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Index(None, "status", "available_at"),
    Index(None, "user_id", "status"),
)
"""The durable extraction queue: a claim is a lease (``lease_token`` until ``lease_until``)."""
