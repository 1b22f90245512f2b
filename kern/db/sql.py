"""``SqlDb``: the ``Db`` contract over a SQLAlchemy engine, one implementation for every engine.

All SQL goes through SQLAlchemy Core with bound parameters. Each public method is one
transaction; every SQLAlchemy or driver error leaves as ``kern.errors.StorageError`` naming what
was being done, so nothing above ``kern.db`` reports "saved" after a failed write.

Dialect specifics stay out of this module: an engine factory (``kern.db.sqlite``, later
``kern.db.postgres``) configures connections and how ``BEGIN`` is emitted, reading the
``WRITE_OPTION`` execution option that ``transaction`` sets.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

from sqlalchemy import Connection, Engine, RowMapping, Table, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, SQLAlchemyError, StatementError

from kern.db.base import RunRecord, SessionRecord
from kern.db.schema import runs, sessions
from kern.errors import ConfigError, StorageError

__all__ = ["WRITE_OPTION", "SqlDb", "utcnow"]

WRITE_OPTION = "kern_write"
"""Connection execution option: ``True`` when the transaction will write.

SQLite reads it to choose ``BEGIN IMMEDIATE`` (take the write lock up front, waiting up to the
busy timeout) over a plain deferred ``BEGIN`` for reads.
"""

SUPPORTED_DIALECTS = ("sqlite", "postgresql")


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class SqlDb:
    """Sessions and append-only runs in a SQL database reached through a SQLAlchemy ``Engine``.

    Thread-safe: each transaction checks out its own pooled connection. The schema is expected
    to be migrated already (``kern.db.migrations.migrate``); subclasses do that on open.
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

    # -- plumbing shared with later modules (learning stores, job queue) ----------------------

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
        self, conn: Connection, table: Table, key: str, values: dict[str, Any]
    ) -> bool:
        """``INSERT … ON CONFLICT (key) DO NOTHING``; True when the row was inserted."""
        dialect = conn.dialect
        stmt = (postgresql.insert if dialect.name == "postgresql" else sqlite.insert)(table)
        stmt = stmt.values(values).on_conflict_do_nothing(index_elements=[key])
        if dialect.insert_returning:
            # Drivers disagree on rowcount for a skipped insert (psycopg reports -1).
            return conn.execute(stmt.returning(table.c[key])).first() is not None
        return conn.execute(stmt).rowcount == 1  # SQLite < 3.35: rowcount is changes()

    # -- the Db protocol ---------------------------------------------------------------------

    def upsert_session(
        self, session_id: str, *, user_id: str | None, agent_id: str | None
    ) -> SessionRecord:
        """Create the session if it is new, else touch ``updated_at``; return it.

        A session belongs to the user who created it: continuing it as another user raises
        ``StorageError`` instead of mixing two users' histories. A session created without a
        user (or agent) is adopted by the first call that names one.
        """
        now = self.now()
        with self.transaction(action=f"save session {session_id!r}") as conn:
            inserted = self._insert_if_absent(
                conn,
                sessions,
                "session_id",
                {
                    "session_id": session_id,
                    "user_id": user_id,
                    "agent_id": agent_id,
                    "created_at": now,
                    "updated_at": now,
                    "metadata": {},
                },
            )
            if not inserted:
                row = _one_session(conn, session_id, for_update=True)
                if row is None:  # pragma: no cover - the conflicting row cannot vanish here
                    raise StorageError(f"session {session_id!r} disappeared while being saved")
                if row["user_id"] is not None and row["user_id"] != user_id:
                    raise StorageError(f"session {session_id!r} belongs to another user")
                conn.execute(
                    update(sessions)
                    .where(sessions.c.session_id == session_id)
                    .values(
                        # Never move backwards when app servers' clocks disagree.
                        updated_at=max(now, row["updated_at"]),
                        user_id=row["user_id"] if row["user_id"] is not None else user_id,
                        agent_id=row["agent_id"] if row["agent_id"] is not None else agent_id,
                    )
                )
            row = _one_session(conn, session_id)
        assert row is not None
        return _session_record(row)

    def get_session(self, session_id: str) -> SessionRecord | None:
        with self.transaction(write=False, action=f"read session {session_id!r}") as conn:
            row = _one_session(conn, session_id)
        return None if row is None else _session_record(row)

    def list_sessions(
        self, *, user_id: str | None = None, limit: int = 50
    ) -> Sequence[SessionRecord]:
        """Sessions (of one user, or of everyone when ``user_id`` is None), most recently
        active (``updated_at``) first."""
        _check_limit(limit)
        query = (
            select(sessions)
            .order_by(sessions.c.updated_at.desc(), sessions.c.session_id.desc())
            .limit(limit)
        )
        if user_id is not None:
            query = query.where(sessions.c.user_id == user_id)
        with self.transaction(write=False, action="list sessions") as conn:
            rows = conn.execute(query).mappings().all()
        return [_session_record(row) for row in rows]

    def add_run(self, run: RunRecord) -> None:
        """Append a run; the session must exist and ``run_id`` must be new (runs never change)."""
        action = f"append run {run.run_id!r} to session {run.session_id!r}"
        with self.transaction(action=action) as conn:
            if _one_session(conn, run.session_id) is None:
                raise StorageError(
                    f"could not {action}: the session does not exist (call upsert_session first)"
                )
            conn.execute(
                insert(runs).values(
                    run_id=run.run_id,
                    session_id=run.session_id,
                    user_id=run.user_id,
                    agent_id=run.agent_id,
                    status=run.status,
                    input=run.input,
                    content=run.content,
                    messages=run.messages,
                    metrics=run.metrics,
                    error=run.error,
                    created_at=run.created_at,
                )
            )

    def get_runs(
        self, session_id: str, *, limit: int | None = None, status: str | None = "completed"
    ) -> Sequence[RunRecord]:
        """The session's runs (with ``status``, or all when None) in the order they were added;
        ``limit`` keeps the most recent ones."""
        query = select(runs).where(runs.c.session_id == session_id)
        if status is not None:
            query = query.where(runs.c.status == status)
        if limit is None:
            query = query.order_by(runs.c.seq.asc())
        else:
            _check_limit(limit)
            query = query.order_by(runs.c.seq.desc()).limit(limit)
        with self.transaction(write=False, action=f"read runs of session {session_id!r}") as conn:
            rows = conn.execute(query).mappings().all()
        records = [_run_record(row) for row in rows]
        if limit is not None:
            records.reverse()
        return records

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


def _check_limit(limit: int) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise ValueError(f"limit must be a non-negative integer, got {limit!r}")


def _one_session(
    conn: Connection, session_id: str, *, for_update: bool = False
) -> RowMapping | None:
    query = select(sessions).where(sessions.c.session_id == session_id)
    if for_update:
        query = query.with_for_update()  # row lock on Postgres; SQLite already holds the db lock
    return conn.execute(query).mappings().first()


def _session_record(row: RowMapping) -> SessionRecord:
    metadata: dict[str, Any] = row["metadata"]
    return SessionRecord(
        session_id=row["session_id"],
        user_id=row["user_id"],
        agent_id=row["agent_id"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        metadata=metadata,
    )


def _run_record(row: RowMapping) -> RunRecord:
    return RunRecord(
        run_id=row["run_id"],
        session_id=row["session_id"],
        user_id=row["user_id"],
        agent_id=row["agent_id"],
        status=row["status"],
        input=row["input"],
        content=row["content"],
        messages=row["messages"],
        metrics=row["metrics"],
        created_at=row["created_at"],
        error=row["error"],
    )
