"""Storage: one schema, two engines (SQLite embedded, PostgreSQL for scale-out)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kern.errors import ConfigError

if TYPE_CHECKING:
    from kern.db.base import LearningDb

__all__ = ["open_db"]


def open_db(target: str) -> LearningDb:
    """A database from a command-line style target: ``postgresql://…`` (the ``postgres``
    extra), ``sqlite:///path`` or a plain SQLite file path."""
    if target.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
        from kern.db.postgres import PostgresDb

        return PostgresDb(db_url=target)
    from kern.db.sqlite import SqliteDb

    if target.startswith("sqlite:///"):
        target = target.removeprefix("sqlite:///")
    elif "://" in target:
        raise ConfigError(f"expected a postgresql:// URL or a SQLite file path, got {target!r}")
    return SqliteDb(db_file=target)
