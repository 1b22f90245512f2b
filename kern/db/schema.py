"""Every table kern stores, declared once with SQLAlchemy Core, portable to SQLite and Postgres.

Tables are only ever created by a named migration (``kern.db.migrations``); nothing calls
``metadata.create_all``. Two portable types carry the cross-engine details:

- ``UtcDateTime``: timezone-aware UTC in, timezone-aware UTC out. Postgres stores
  ``timestamptz``; SQLite stores naive UTC text (``YYYY-MM-DD HH:MM:SS.ffffff``), which sorts
  chronologically as text.
- ``Json``: ``JSON`` on SQLite (text), ``JSONB`` on Postgres; only plain JSON values.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
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
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeEngine

__all__ = [
    "Json",
    "UtcDateTime",
    "kern_migrations",
    "metadata",
    "runs",
    "sessions",
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


class Json(TypeDecorator[Any]):
    """JSON text on SQLite, ``JSONB`` on Postgres.

    Values are checked to be plain JSON (no NaN or infinity, no arbitrary objects) before the
    driver sees them, so both engines accept and refuse the same values, and the refusal is a
    ``StatementError`` that ``SqlDb`` reports as ``StorageError`` (psycopg would raise a bare
    ``TypeError`` from inside the driver).
    """

    impl = JSON
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(JSONB())
        return dialect.type_descriptor(JSON())

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        json.dumps(value, allow_nan=False)
        return value


# Integer on SQLite so the column becomes an alias of the rowid (INTEGER PRIMARY KEY).
_BigIntId = BigInteger().with_variant(Integer(), "sqlite")

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
    Column("seq", _BigIntId, primary_key=True, autoincrement=True),
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
