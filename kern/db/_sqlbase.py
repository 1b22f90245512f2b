"""``SqlBase``: what every part of ``SqlDb`` shares — the engine, the clock, one transaction
per call with errors translated to ``StorageError``, and the lifecycle.

The parts (``_sessions``, ``_learnings``, ``_candidates``, ``_jobs``) subclass it as mixins;
``kern.db.sql.SqlDb`` composes them into the one class users see.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

from sqlalchemy import ColumnElement, Connection, Engine, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, SQLAlchemyError, StatementError

from kern.errors import ConfigError, InvalidArgumentError, StorageError

__all__ = ["WRITE_OPTION", "SqlBase", "check_limit", "check_seconds", "utcnow"]

WRITE_OPTION = "kern_write"
"""Connection execution option: ``True`` when the transaction will write.

SQLite reads it to choose ``BEGIN IMMEDIATE`` (take the write lock up front, waiting up to the
busy timeout) over a plain deferred ``BEGIN`` for reads.
"""

SUPPORTED_DIALECTS = ("sqlite", "postgresql")


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class SqlBase:
    """A SQL database reached through a SQLAlchemy ``Engine``, one transaction at a time.

    Thread-safe: each transaction checks out its own pooled connection.
    """

    def __init__(self, engine: Engine, *, clock: Callable[[], datetime] | None = None) -> None:
        if engine.dialect.name not in SUPPORTED_DIALECTS:
            raise ConfigError(
                f"kern stores data in SQLite or PostgreSQL, not {engine.dialect.name!r}"
            )
        self._engine = engine
        self._clock = clock or utcnow
        self._closed = False
        self._name = engine.url.render_as_string(hide_password=True)
        self._driver_error: type[Exception] = engine.dialect.loaded_dbapi.Error

    @property
    def engine(self) -> Engine:
        return self._engine

    @property
    def closed(self) -> bool:
        return self._closed

    def now(self) -> datetime:
        """The database layer's clock (timezone-aware UTC); injectable for tests."""
        value = self._clock()
        if value.tzinfo is None:
            raise ConfigError("the clock given to the database must return timezone-aware times")
        return value.astimezone(UTC)

    @contextmanager
    def transaction(
        self, *, write: bool = True, action: str = "access the database"
    ) -> Iterator[Connection]:
        """One transaction on its own connection: committed on success, rolled back on error.

        ``write=False`` promises the block only reads (on SQLite it then does not take the
        write lock). ``action`` completes the error message: "could not {action} in {db}".
        SQLAlchemy and driver errors are raised as ``StorageError``; other exceptions pass
        through after the rollback. Transactions do not nest: use the yielded connection.
        """
        if self._closed:
            raise StorageError(f"could not {action}: the database {self._name} is closed")
        try:
            with self._engine.connect() as conn:
                conn.execution_options(**{WRITE_OPTION: write})
                with conn.begin():
                    yield conn
        except (SQLAlchemyError, self._driver_error) as exc:
            raise StorageError(f"could not {action} in {self._name}: {self._explain(exc)}") from exc

    def _explain(self, exc: BaseException) -> str:
        """The useful part of a database error (the driver's message, not the SQL)."""
        if isinstance(exc, DBAPIError | StatementError) and exc.orig is not None:
            return str(exc.orig) or type(exc.orig).__name__
        return str(exc) or type(exc).__name__

    def _insert_if_absent(
        self,
        conn: Connection,
        table: Table,
        key: str | Sequence[str],
        values: dict[str, Any],
        *,
        where: ColumnElement[bool] | None = None,
    ) -> bool:
        """``INSERT … ON CONFLICT (key) [WHERE …] DO NOTHING``; True when the row was inserted.

        ``key`` names the columns of a unique index; ``where`` is the predicate of a partial
        one. A conflict with any other unique constraint still raises.
        """
        dialect = conn.dialect
        keys = [key] if isinstance(key, str) else list(key)
        stmt = (postgresql.insert if dialect.name == "postgresql" else sqlite.insert)(table)
        stmt = stmt.values(values).on_conflict_do_nothing(index_elements=keys, index_where=where)
        if dialect.insert_returning:
            # Drivers disagree on rowcount for a skipped insert (psycopg reports -1).
            returned = conn.execute(stmt.returning(*table.primary_key.columns)).first()
            return returned is not None
        return conn.execute(stmt).rowcount == 1  # SQLite < 3.35: rowcount is changes()

    # -- lifecycle -----------------------------------------------------------------------------

    def close(self) -> None:
        """Close every pooled connection; later calls raise ``StorageError``. Idempotent."""
        if not self._closed:
            self._closed = True
            self._engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._name!r})"


def check_limit(limit: int, name: str = "limit") -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise InvalidArgumentError(f"{name} must be a non-negative integer, got {limit!r}")
    if limit > MAX_ROWS:  # the driver would raise OverflowError past 2**63
        raise InvalidArgumentError(f"{name} must be at most {MAX_ROWS:,}, got {limit!r}")


#: The largest ``limit`` a read accepts (2**31 - 1: any engine's LIMIT takes it).
MAX_ROWS = 2**31 - 1


def check_seconds(value: float, name: str, *, positive: bool = False) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
        or (positive and value == 0)
    ):
        kind = "positive" if positive else "non-negative"
        raise InvalidArgumentError(f"{name} must be a {kind} number of seconds, got {value!r}")
