"""``SqlDb``: the ``Db`` and ``LearningDb`` contracts over a SQLAlchemy engine.

All SQL goes through SQLAlchemy Core with bound parameters. Each public method is one
transaction; every SQLAlchemy or driver error leaves as ``kern.errors.StorageError`` naming what
was being done, so nothing above ``kern.db`` reports "saved" after a failed write.

Dialect specifics stay out of this module: an engine factory (``kern.db.sqlite``, later
``kern.db.postgres``) configures connections and how ``BEGIN`` is emitted, reading the
``WRITE_OPTION`` execution option that ``transaction`` sets. A subclass per engine overrides
only the few engine-specific hooks: ``_text_search_query`` (full-text search),
``load_vectors`` and ``search_vectors`` (vector candidates), ``_embedding_value`` (how a vector
is written) and ``_pick_job`` (which job a claim takes).

Concurrency. Every write transaction is serialised on SQLite (``BEGIN IMMEDIATE`` takes the
database's write lock before the first read). On Postgres, rows a write reads and then changes
are read ``FOR UPDATE``, every ``UPDATE`` also checks the version it read (compare-and-swap),
and the one insert that can race — a keyed ``Put`` creating its row — is ``ON CONFLICT DO
NOTHING`` followed by an update of the row that won.
"""

from __future__ import annotations

import logging
import math
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, ClassVar, Self

import numpy as np
from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    RowMapping,
    Select,
    Table,
    and_,
    delete,
    false,
    func,
    insert,
    literal_column,
    or_,
    select,
    union,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, SQLAlchemyError, StatementError

from kern.db.base import (
    Create,
    HistoryAction,
    HistoryRecord,
    JobRecord,
    JobStatus,
    LearningFilter,
    LearningRecord,
    Put,
    RankingRow,
    RunRecord,
    SearchHit,
    SessionRecord,
    SetStatus,
    Update,
    WriteOp,
)
from kern.db.schema import among, jobs, learning_history, learnings, runs, sessions
from kern.errors import ConfigError, ConflictError, JobLostError, StorageError

__all__ = [
    "LEARNING_COLUMNS",
    "WRITE_OPTION",
    "SqlDb",
    "learning_clauses",
    "runnable_jobs",
    "utcnow",
]

logger = logging.getLogger(__name__)

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

    #: How ``load_neighbours`` asks for candidates and the rest of their sessions: as one
    #: ``OR`` (SQLite reads the scope once through its index, cheapest for a user's hundreds
    #: of rows, while a ``UNION`` reads it twice: 3.4 against 5.1 ms on LoCoMo), or as a
    #: ``UNION`` of two index lookups (PostgreSQL). On PostgreSQL the ``OR`` reads the whole
    #: scope too: 5.5 against 7–8 ms for a user's 600 LoCoMo turns, but 12.9 against 8.6 ms
    #: p50 in a 10,000-item shared namespace and ~110 ms against a few at 100,000; the
    #: ``UNION`` is bounded by the rows it returns, not by the scope.
    _neighbours_as_union: ClassVar[bool] = False

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

    # -- learnings: writes ---------------------------------------------------------------------

    def apply(
        self,
        ops: Sequence[WriteOp],
        *,
        run_id: str | None = None,
        actor: str | None = None,
        job: JobRecord | None = None,
    ) -> list[LearningRecord]:
        """Apply ``ops`` in order in one write transaction, one history event each; return the
        resulting rows in the same order.

        - ``Create`` inserts (version 1; ``created_at`` defaults to now, a given one is kept,
          so imports can backdate; ``updated_at`` is now).
        - ``Put`` updates the active row of ``(store, scope, key)`` (history "update") or
          inserts ``record`` (history "create"); concurrent ``Put``s serialise.
        - ``Update`` changes an active row (a compare-and-swap with ``expected_version``).
        - ``SetStatus`` moves a row whose status is in ``from_statuses``; history ``action``.

        ``Put`` and ``Update`` bump ``version``, set ``updated_at`` and the row's ``run_id``
        (the run that produced the current content), and replace the embedding with the one
        given; without one, a changed text drops the stale embedding. A row that is missing or
        changed meanwhile raises ``ConflictError``; any error rolls back every op. With
        ``job``, the same transaction marks that claim done, or raises ``JobLostError`` (and
        writes nothing) if the claim is no longer held.

        History events carry ``run_id`` and ``actor``; a ``Create``'s or ``Put``'s record may
        name its own ``run_id``, which then wins.
        """
        ops = list(ops)
        for op in ops:
            if not isinstance(op, Create | Put | Update | SetStatus):
                raise TypeError(f"not a learning write operation: {op!r}")
        now = self.now()
        what = f"apply {len(ops)} learning write(s)" + (f" for job {job.id!r}" if job else "")
        with self.transaction(action=what) as conn:
            if job is not None:
                # First, so a lost claim costs no work; on Postgres the row lock it takes also
                # keeps the job from being claimed again until this transaction ends.
                self._complete_job(conn, job, now)
            return [self._apply_op(conn, op, now, run_id=run_id, actor=actor) for op in ops]

    def _apply_op(
        self, conn: Connection, op: WriteOp, now: datetime, *, run_id: str | None, actor: str | None
    ) -> LearningRecord:
        before: LearningRecord | None = None
        action: HistoryAction
        event_run_id = run_id  # the run that caused this change
        if isinstance(op, Create):
            after = self._insert_learning(conn, op.record, op.embedding, now, run_id)
            action = "create"
            event_run_id = after.run_id
        elif isinstance(op, Put):
            before, after = self._put(conn, op, now, run_id)
            action = "create" if before is None else "update"
            event_run_id = op.record.run_id if op.record.run_id is not None else run_id
        elif isinstance(op, Update):
            before = _lock_learning(conn, op.id)
            if (
                before is None
                or before.status != "active"
                or (op.expected_version is not None and before.version != op.expected_version)
            ):
                raise ConflictError(_conflict_message(op.id, before, op.expected_version))
            after = self._rewrite(
                conn,
                before,
                now,
                content=op.content,
                text=op.text,
                content_hash=op.content_hash,
                metadata=op.metadata,
                embedding=op.embedding,
                run_id=run_id,
            )
            action = "update"
        else:
            before = _lock_learning(conn, op.id)
            after = self._set_status(conn, op, before, now)
            action = op.action
        conn.execute(
            insert(learning_history).values(
                learning_id=after.id,
                store=after.store,
                scope=after.scope,
                user_id=after.user_id,
                action=action,
                before=None if before is None else _snapshot(before),
                after=_snapshot(after),
                run_id=event_run_id,
                actor=actor,
                created_at=now,
            )
        )
        return after

    def _insert_learning(
        self,
        conn: Connection,
        record: LearningRecord,
        embedding: bytes | None,
        now: datetime,
        run_id: str | None,
        *,
        if_key_free: bool = False,
    ) -> LearningRecord:
        """Insert ``record`` as a new row (version 1). With ``if_key_free``, insert only when
        no active row holds its key, and raise ``_KeyTaken`` instead."""
        values = _insert_values(record, now, run_id)
        if if_key_free:
            inserted = self._insert_if_absent(
                conn,
                learnings,
                ("store", "scope", "key"),
                {**values, "embedding": self._embedding_value(embedding)},
                where=_ACTIVE_KEYED,
            )
            if not inserted:
                raise _KeyTaken
        else:
            conn.execute(
                insert(learnings).values(**values, embedding=self._embedding_value(embedding))
            )
        return LearningRecord(**values)

    def _put(
        self, conn: Connection, op: Put, now: datetime, run_id: str | None
    ) -> tuple[LearningRecord | None, LearningRecord]:
        """(the row before, the row after) of a keyed write; before is None for an insert."""
        record = op.record
        if record.key is None or record.status != "active":
            raise ValueError(f"Put needs a key and status 'active', got {record!r}")
        current = _lock_active_key(conn, record.store, record.scope, record.key)
        if current is None:
            try:
                return None, self._insert_learning(
                    conn, record, op.embedding, now, run_id, if_key_free=True
                )
            except _KeyTaken:
                # Postgres only (SQLite's write lock excludes the race): a concurrent Put
                # inserted the key and committed after our read; update its row instead.
                current = _lock_active_key(conn, record.store, record.scope, record.key)
                if current is None:  # pragma: no cover - the winner's row was changed again
                    raise ConflictError(
                        f"key {record.key!r} of {record.store} changed during the write"
                    ) from None
        after = self._rewrite(
            conn,
            current,
            now,
            content=record.content,
            text=record.text,
            content_hash=record.content_hash,
            metadata=record.metadata,
            embedding=op.embedding,
            run_id=record.run_id if record.run_id is not None else run_id,
        )
        return current, after

    def _rewrite(
        self,
        conn: Connection,
        current: LearningRecord,
        now: datetime,
        *,
        content: dict[str, Any],
        text: str,
        content_hash: str,
        metadata: Mapping[str, Any] | None,
        embedding: bytes | None,
        run_id: str | None,
    ) -> LearningRecord:
        """New content for the active row ``current`` (as read in this transaction)."""
        changes: dict[str, Any] = {
            "content": content,
            "text": text,
            "content_hash": content_hash,
            "metadata": dict(current.metadata if metadata is None else metadata),
            "run_id": current.run_id if run_id is None else run_id,
        }
        stored = dict(changes)
        if embedding is not None:
            stored["embedding"] = self._embedding_value(embedding)
        elif text != current.text:
            stored["embedding"] = None  # a vector of the old text would mislead vector search
        return self._write_version(conn, current, now, stored, changes, status="active")

    def _set_status(
        self, conn: Connection, op: SetStatus, current: LearningRecord | None, now: datetime
    ) -> LearningRecord:
        if current is None or current.status not in op.from_statuses:
            state = "does not exist" if current is None else f"is {current.status!r}"
            raise ConflictError(
                f"cannot {op.action} learning {op.id!r}: it {state}, expected one of "
                f"{list(op.from_statuses)}"
            )
        if op.status == "active" and current.key is not None:
            holder = _lock_active_key(conn, current.store, current.scope, current.key)
            if holder is not None and holder.id != current.id:
                raise ConflictError(
                    f"cannot {op.action} learning {op.id!r}: {holder.id!r} is the active value "
                    f"of key {current.key!r}"
                )
        changes = {"status": op.status}
        return self._write_version(conn, current, now, changes, changes, status=current.status)

    def _write_version(
        self,
        conn: Connection,
        current: LearningRecord,
        now: datetime,
        stored: dict[str, Any],
        changes: dict[str, Any],
        *,
        status: str,
    ) -> LearningRecord:
        """``UPDATE … SET stored, version + 1 WHERE id AND status AND version`` (the values read
        in this transaction): a compare-and-swap that cannot be lost on any engine."""
        assert current.updated_at is not None
        # Never move backwards when app servers' clocks disagree.
        updated_at = max(now, current.updated_at)
        result = conn.execute(
            update(learnings)
            .where(
                learnings.c.id == current.id,
                learnings.c.status == status,
                learnings.c.version == current.version,
            )
            .values(**stored, version=current.version + 1, updated_at=updated_at)
        )
        if result.rowcount != 1:  # pragma: no cover - the row was read locked in this transaction
            raise ConflictError(f"learning {current.id!r} changed during the write")
        return replace(current, **changes, version=current.version + 1, updated_at=updated_at)

    # -- learnings: reads ----------------------------------------------------------------------

    def get_learning(self, learning_id: str) -> LearningRecord | None:
        query = select(*LEARNING_COLUMNS).where(learnings.c.id == learning_id)
        with self.transaction(write=False, action=f"read learning {learning_id!r}") as conn:
            row = conn.execute(query).mappings().first()
        return None if row is None else _learning_record(row)

    def list_learnings(
        self,
        where: LearningFilter,
        *,
        limit: int = 100,
        offset: int = 0,
        newest_first: bool = True,
    ) -> list[LearningRecord]:
        """Rows matching ``where``, by ``created_at`` (then insertion order), newest first by
        default. Filters: see ``learning_clauses``."""
        _check_limit(limit)
        _check_limit(offset, "offset")
        order = (learnings.c.created_at, learnings.c.seq)
        query = (
            select(*LEARNING_COLUMNS)
            .where(*learning_clauses(where))
            .order_by(*(c.desc() for c in order) if newest_first else order)
            .limit(limit)
            .offset(offset)
        )
        with self.transaction(write=False, action="list learnings") as conn:
            rows = conn.execute(query).mappings().all()
        return [_learning_record(row) for row in rows]

    def count_learnings(self, where: LearningFilter) -> int:
        query = select(func.count()).select_from(learnings).where(*learning_clauses(where))
        with self.transaction(write=False, action="count learnings") as conn:
            return int(conn.execute(query).scalar_one())

    def history(
        self,
        *,
        learning_id: str | None = None,
        user_id: str | None = None,
        store: str | None = None,
        limit: int = 100,
    ) -> list[HistoryRecord]:
        """History events matching every filter given (all events with none), newest first."""
        _check_limit(limit)
        table = learning_history
        query = select(table).order_by(table.c.seq.desc()).limit(limit)
        if learning_id is not None:
            query = query.where(table.c.learning_id == learning_id)
        if user_id is not None:
            query = query.where(table.c.user_id == user_id)
        if store is not None:
            query = query.where(table.c.store == store)
        with self.transaction(write=False, action="read learning history") as conn:
            rows = conn.execute(query).mappings().all()
        return [_history_record(row) for row in rows]

    def search_text(self, query: str, where: LearningFilter, *, limit: int = 50) -> list[SearchHit]:
        """Full-text search among rows matching ``where`` (applied inside the query), best
        first; ``[]`` when ``query`` has no searchable word."""
        _check_limit(limit)
        columns = LEARNING_COLUMNS
        statement = self._text_search_query(query, where, limit, columns) if limit else None
        if statement is None:
            return []
        with self.transaction(write=False, action="search learnings") as conn:
            rows = conn.execute(statement).mappings().all()
        return [SearchHit(_learning_record(row), float(row["score"])) for row in rows]

    def search_text_scores(
        self, query: str, where: LearningFilter, *, limit: int = 50
    ) -> list[tuple[str, float]]:
        """``search_text`` reading only ids and scores: decoding whole rows would cost more
        than the search itself for hybrid search's hundreds of candidates."""
        _check_limit(limit)
        columns = (learnings.c.id,)
        statement = self._text_search_query(query, where, limit, columns) if limit else None
        if statement is None:
            return []
        with self.transaction(write=False, action="search learnings") as conn:
            rows = conn.execute(statement).all()
        return [(row[0], float(row[1])) for row in rows]

    def _text_search_query(
        self,
        query: str,
        where: LearningFilter,
        limit: int,
        columns: Sequence[ColumnElement[Any]],
    ) -> Select[Any] | None:
        """Engine-specific: a statement selecting ``columns`` then ``score`` (higher is better)
        of at most ``limit`` rows matching ``query`` and ``where``, best first; ``None`` when
        ``query`` has no searchable word."""
        raise NotImplementedError(
            f"{type(self).__name__} has no full-text search; use SqliteDb (or PostgresDb)"
        )

    def load_vectors(self, where: LearningFilter) -> tuple[list[str], list[bytes]]:
        """Ids and float32 embeddings of rows matching ``where`` that have one, in insertion
        order (engines with a vector index override this)."""
        query = (
            select(learnings.c.id, learnings.c.embedding)
            .where(learnings.c.embedding.is_not(None), *learning_clauses(where))
            .order_by(learnings.c.seq)
        )
        with self.transaction(write=False, action="load learning vectors") as conn:
            rows = conn.execute(query).all()
        return [row[0] for row in rows], [bytes(row[1]) for row in rows]

    def search_vectors(
        self, vector: bytes, where: LearningFilter, *, limit: int = 50
    ) -> list[tuple[str, float]]:
        """Ids and cosine similarities of the ``limit`` rows matching ``where`` whose embedding
        is nearest to ``vector`` (float32 bytes), best first. Only embeddings of the same
        dimension compete. Here: every candidate is loaded and compared in numpy; engines with
        a vector index override this."""
        _check_limit(limit)
        if not limit or not vector or len(vector) % 4:
            return []
        ids, blobs = self.load_vectors(where)
        same = [(i, b) for i, b in zip(ids, blobs, strict=True) if len(b) == len(vector)]
        if not same:
            return []
        matrix = np.frombuffer(b"".join(b for _, b in same), dtype=np.float32)
        matrix = matrix.reshape(len(same), -1)
        query = np.frombuffer(vector, dtype=np.float32)
        norms = np.linalg.norm(matrix, axis=1) * float(np.linalg.norm(query))
        with np.errstate(divide="ignore", invalid="ignore"):
            similarity = np.where(norms > 0, matrix @ query / norms, np.nan)
        order = [
            int(i) for i in np.argsort(-similarity, kind="stable") if np.isfinite(similarity[i])
        ]
        return [(same[i][0], float(similarity[i])) for i in order[:limit]]

    def _embedding_value(self, embedding: bytes | None) -> Any:
        """Engine-specific: the value written to ``learnings.embedding`` for float32 bytes
        (the bytes themselves here; ``PostgresDb`` casts them to pgvector's ``vector``)."""
        return embedding

    def load_neighbours(self, where: LearningFilter, ids: Sequence[str]) -> list[RankingRow]:
        """Rows matching ``where`` that are among ``ids`` or share a session with one of them,
        by ``created_at`` then insertion order; see ``RankingRow`` for ``subject``."""
        if not ids:
            return []
        c = learnings.c
        subject = func.coalesce(c.metadata["speaker"].as_string(), c.content["entity"].as_string())
        columns = (c.id, c.session_id, c.created_at, subject.label("subject"), c.seq)
        scoped = learning_clauses(where)
        # The sessions are looked up by id (unique index) without the filter: only rows
        # matching ``where`` are returned, and filtering there would make SQLite scan the scope.
        candidate = among(c.id, ids)
        in_their_sessions = c.session_id.in_(select(c.session_id).where(candidate))
        if self._neighbours_as_union:
            both = union(
                select(*columns).where(*scoped, candidate),
                select(*columns).where(*scoped, in_their_sessions),
            ).subquery()
            query = select(both.c.id, both.c.session_id, both.c.created_at, both.c.subject)
            query = query.order_by(both.c.created_at, both.c.seq)
        else:
            query = select(*columns[:4]).where(*scoped, or_(in_their_sessions, candidate))
            query = query.order_by(c.created_at, c.seq)
        with self.transaction(write=False, action="load neighbouring learnings") as conn:
            rows = conn.execute(query).all()
        return [RankingRow(*row) for row in rows]

    # -- users ---------------------------------------------------------------------------------

    def delete_user(self, user_id: str) -> int:
        """Remove, in one transaction, every row of ``user_id``: learnings (their text index
        entries and vectors with them), the history of those rows and the user's other history
        events, jobs, runs (also any run in the user's sessions) and sessions. Returns the
        number of rows removed."""
        if not isinstance(user_id, str) or not user_id:
            raise ValueError(f"delete_user needs a user id, got {user_id!r}")
        mine = select(learnings.c.id).where(learnings.c.user_id == user_id)
        their_sessions = select(sessions.c.session_id).where(sessions.c.user_id == user_id)
        statements = [
            delete(learning_history).where(
                or_(learning_history.c.user_id == user_id, learning_history.c.learning_id.in_(mine))
            ),
            delete(learnings).where(learnings.c.user_id == user_id),
            delete(jobs).where(jobs.c.user_id == user_id),
            delete(runs).where(
                or_(runs.c.user_id == user_id, runs.c.session_id.in_(their_sessions))
            ),
            delete(sessions).where(sessions.c.user_id == user_id),
        ]
        with self.transaction(action=f"delete user {user_id!r}") as conn:
            return sum(conn.execute(statement).rowcount for statement in statements)

    # -- jobs ----------------------------------------------------------------------------------
    #
    # A claim is a lease: ``claim_job`` sets status running, a fresh ``lease_token`` and
    # ``lease_until``; ``apply(job=…)`` and ``fail_job`` act only while the token still
    # matches. A job is runnable when it is pending and available, or running with an expired
    # lease (its worker stopped), and has attempts left. A running job whose lease expired on
    # its last attempt can never finish: a claim marks it failed, and it is not "unfinished".
    # A job done after a failed attempt keeps that attempt's error (with ``attempts``, its story).

    def enqueue_job(self, job: JobRecord) -> None:
        """Insert ``job`` as pending (whatever its ``status``), available at
        ``job.available_at`` or now; its id must be new."""
        if job.max_attempts < 1 or not 0 <= job.attempts < job.max_attempts:
            raise ValueError(
                f"a job needs 0 <= attempts < max_attempts, got {job.attempts}/{job.max_attempts}"
            )
        now = self.now()
        with self.transaction(action=f"enqueue job {job.id!r}") as conn:
            conn.execute(
                insert(jobs).values(
                    id=job.id,
                    kind=job.kind,
                    payload=job.payload,
                    user_id=job.user_id,
                    session_id=job.session_id,
                    agent_id=job.agent_id,
                    run_id=job.run_id,
                    status="pending",
                    attempts=job.attempts,
                    max_attempts=job.max_attempts,
                    error=job.error,
                    lease_token=None,
                    lease_until=None,
                    available_at=job.available_at or now,
                    created_at=job.created_at or now,
                    updated_at=now,
                )
            )

    def claim_job(
        self, *, job_id: str | None = None, user_id: str | None = None, lease_seconds: float = 60
    ) -> JobRecord | None:
        """Claim one runnable job (``job_id``'s, and/or one of ``user_id``'s), oldest
        available first: running, one more attempt, a new lease of ``lease_seconds``."""
        _check_seconds(lease_seconds, "lease_seconds", positive=True)
        now = self.now()
        with self.transaction(action="claim a job") as conn:
            self._fail_abandoned_jobs(conn, now)
            row = self._pick_job(conn, now, job_id=job_id, user_id=user_id)
            if row is None:
                return None
            claimed = replace(
                _job_record(row),
                status="running",
                attempts=row["attempts"] + 1,
                lease_token=secrets.token_hex(16),
                lease_until=now + timedelta(seconds=lease_seconds),
                updated_at=now,
            )
            conn.execute(
                update(jobs)
                .where(jobs.c.id == claimed.id)
                .values(
                    status=claimed.status,
                    attempts=claimed.attempts,
                    lease_token=claimed.lease_token,
                    lease_until=claimed.lease_until,
                    updated_at=now,
                )
            )
        return claimed

    def _pick_job(
        self, conn: Connection, now: datetime, *, job_id: str | None, user_id: str | None
    ) -> RowMapping | None:
        """The job a claim takes, read in the claim's write transaction. Engine-specific only
        in how it keeps two claimers apart: SQLite's write lock already does; Postgres adds
        ``FOR UPDATE SKIP LOCKED``."""
        return conn.execute(runnable_jobs(now, job_id=job_id, user_id=user_id)).mappings().first()

    def _fail_abandoned_jobs(self, conn: Connection, now: datetime) -> None:
        note = "the lease expired during the last attempt (the worker stopped or hung)"
        conn.execute(
            update(jobs)
            .where(_abandoned(now))
            .values(
                status="failed",
                error=func.coalesce(jobs.c.error.concat("; "), "").concat(note),
                lease_token=None,
                lease_until=None,
                updated_at=now,
            )
        )

    def _complete_job(self, conn: Connection, job: JobRecord, now: datetime) -> None:
        result = conn.execute(
            update(jobs)
            .where(_held(job))
            .values(status="done", lease_token=None, lease_until=None, updated_at=now)
        )
        if result.rowcount != 1:
            raise JobLostError(
                f"job {job.id!r} is no longer held by this claim (its lease expired and another "
                "worker took it, or it is finished); nothing was applied"
            )

    def renew_lease(self, job: JobRecord, *, lease_seconds: float) -> bool:
        """Extend ``job``'s claim to ``lease_seconds`` from now, while it is still held."""
        _check_seconds(lease_seconds, "lease_seconds", positive=True)
        now = self.now()
        query = (
            update(jobs)
            .where(_held(job))
            .values(lease_until=now + timedelta(seconds=lease_seconds), updated_at=now)
        )
        with self.transaction(action=f"renew the lease of job {job.id!r}") as conn:
            return bool(conn.execute(query).rowcount == 1)

    def fail_job(self, job: JobRecord, error: str, *, retry_in: float | None = None) -> None:
        """Record a failed attempt with ``error``: pending again ``retry_in`` seconds from now,
        or failed for good when ``retry_in`` is None or no attempt is left. A claim no longer
        held is left alone (its new holder owns the job), so this never raises for it."""
        if retry_in is not None:
            _check_seconds(retry_in, "retry_in")
        now = self.now()
        with self.transaction(action=f"record the failure of job {job.id!r}") as conn:
            row = conn.execute(select(jobs).where(_held(job)).with_for_update()).mappings().first()
            if row is None:
                logger.info("job %s: failure not recorded, the claim is no longer held", job.id)
                return
            final = retry_in is None or row["attempts"] >= row["max_attempts"]
            conn.execute(
                update(jobs)
                .where(_held(job))
                .values(
                    status="failed" if final else "pending",
                    error=error,
                    lease_token=None,
                    lease_until=None,
                    available_at=(
                        row["available_at"] if final else now + timedelta(seconds=retry_in or 0)
                    ),
                    updated_at=now,
                )
            )

    def count_unfinished_jobs(self, *, user_id: str | None = None) -> int:
        """Jobs (of ``user_id``, or everyone's) that may still finish: pending (a retry that
        is scheduled included) or running, except those abandoned on their last attempt."""
        query = (
            select(func.count())
            .select_from(jobs)
            .where(jobs.c.status.in_(("pending", "running")), ~_abandoned(self.now()))
        )
        if user_id is not None:
            query = query.where(jobs.c.user_id == user_id)
        with self.transaction(write=False, action="count unfinished jobs") as conn:
            return int(conn.execute(query).scalar_one())

    def delete_done_jobs(self, *, older_than: float) -> int:
        """Remove jobs done more than ``older_than`` seconds ago: each holds its turn's text,
        and the queue would otherwise grow by one row per turn forever. Failed jobs stay, with
        their errors, for someone to look at."""
        _check_seconds(older_than, "older_than")
        finished_before = self.now() - timedelta(seconds=older_than)
        query = delete(jobs).where(jobs.c.status == "done", jobs.c.updated_at < finished_before)
        with self.transaction(action="delete finished jobs") as conn:
            return int(conn.execute(query).rowcount)

    def list_jobs(self, *, status: JobStatus | None = None, limit: int = 100) -> list[JobRecord]:
        """Jobs (with ``status``, or all), newest first."""
        _check_limit(limit)
        query = select(jobs).order_by(jobs.c.created_at.desc(), jobs.c.id.desc()).limit(limit)
        if status is not None:
            query = query.where(jobs.c.status == status)
        with self.transaction(write=False, action="list jobs") as conn:
            rows = conn.execute(query).mappings().all()
        return [_job_record(row) for row in rows]

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


def _check_limit(limit: int, name: str = "limit") -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {limit!r}")


def _check_seconds(value: float, name: str, *, positive: bool = False) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
        or (positive and value == 0)
    ):
        kind = "positive" if positive else "non-negative"
        raise ValueError(f"{name} must be a {kind} number of seconds, got {value!r}")


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


# -- learnings ---------------------------------------------------------------------------------

LEARNING_COLUMNS = tuple(c for c in learnings.c if c.name not in ("seq", "embedding"))
"""The columns a ``LearningRecord`` is built from (vectors are loaded only by ``load_vectors``)."""

# The predicate of the partial unique index on (store, scope, key), as ``ON CONFLICT`` infers it;
# a literal, not a parameter, so Postgres can match it to the index when planning.
_ACTIVE_KEYED = and_(learnings.c.key.is_not(None), learnings.c.status == literal_column("'active'"))


class _KeyTaken(Exception):
    """A keyed insert found the key already held by an active row."""


def learning_clauses(where: LearningFilter) -> list[ColumnElement[bool]]:
    """``where`` as SQL conditions: each field that is not None must match (``scopes``,
    ``kinds`` and ``ids`` are IN lists; an empty list matches nothing); ``statuses`` always applies;
    ``created_after`` is inclusive and ``created_before`` exclusive."""
    c = learnings.c
    clauses: list[ColumnElement[bool]] = [c.status.in_(list(where.statuses))]
    if where.store is not None:
        clauses.append(c.store == where.store)
    if where.scopes is not None:
        clauses.append(c.scope.in_(list(where.scopes)))
    if where.user_id is not None:
        clauses.append(c.user_id == where.user_id)
    if where.session_id is not None:
        clauses.append(c.session_id == where.session_id)
    if where.kinds is not None:
        clauses.append(c.kind.in_(list(where.kinds)))
    if where.key is not None:
        clauses.append(c.key == where.key)
    if where.run_id is not None:
        clauses.append(c.run_id == where.run_id)
    if where.created_after is not None:
        clauses.append(c.created_at >= where.created_after)
    if where.created_before is not None:
        clauses.append(c.created_at < where.created_before)
    if where.ids is not None:
        clauses.append(among(c.id, where.ids))
    return clauses


def _insert_values(record: LearningRecord, now: datetime, run_id: str | None) -> dict[str, Any]:
    created_at = record.created_at if record.created_at is not None else now
    aware = created_at.tzinfo is not None and created_at.utcoffset() is not None
    if aware:
        created_at = created_at.astimezone(UTC)
    return {
        "id": record.id,
        "store": record.store,
        "kind": record.kind,
        "scope": record.scope,
        "content": record.content,
        "text": record.text,
        "user_id": record.user_id,
        "session_id": record.session_id,
        "agent_id": record.agent_id,
        "namespace": record.namespace,
        "key": record.key,
        "content_hash": record.content_hash,
        "status": record.status,
        "version": 1,
        "run_id": record.run_id if record.run_id is not None else run_id,
        "created_at": created_at,
        # A naive created_at is refused by the column type (StorageError), not guessed at.
        "updated_at": max(now, created_at) if aware else now,
        "metadata": dict(record.metadata),
    }


def _learning_record(row: RowMapping) -> LearningRecord:
    return LearningRecord(**{c.name: row[c.name] for c in LEARNING_COLUMNS})


def _lock_learning(conn: Connection, learning_id: str) -> LearningRecord | None:
    """The row, read for update (a row lock on Postgres; SQLite holds the database lock)."""
    query = select(*LEARNING_COLUMNS).where(learnings.c.id == learning_id).with_for_update()
    row = conn.execute(query).mappings().first()
    return None if row is None else _learning_record(row)


def _lock_active_key(conn: Connection, store: str, scope: str, key: str) -> LearningRecord | None:
    query = (
        select(*LEARNING_COLUMNS)
        .where(
            learnings.c.store == store,
            learnings.c.scope == scope,
            learnings.c.key == key,
            learnings.c.status == "active",
        )
        .with_for_update()
    )
    row = conn.execute(query).mappings().first()
    return None if row is None else _learning_record(row)


def _snapshot(record: LearningRecord) -> dict[str, Any]:
    """What history keeps of a row, before and after a change."""
    return {
        "content": record.content,
        "text": record.text,
        "status": record.status,
        "version": record.version,
        "metadata": record.metadata,
    }


def _conflict_message(
    learning_id: str, current: LearningRecord | None, expected_version: int | None
) -> str:
    if current is None:
        state = "does not exist"
    elif current.status != "active":
        state = f"is {current.status}"
    else:
        state = f"is at version {current.version}, not {expected_version}"
    return f"cannot update learning {learning_id!r}: it {state} (changed by another write?)"


def _history_record(row: RowMapping) -> HistoryRecord:
    return HistoryRecord(
        seq=row["seq"],
        learning_id=row["learning_id"],
        store=row["store"],
        scope=row["scope"],
        user_id=row["user_id"],
        action=row["action"],
        before=row["before"],
        after=row["after"],
        run_id=row["run_id"],
        actor=row["actor"],
        created_at=row["created_at"],
    )


# -- jobs --------------------------------------------------------------------------------------


def runnable_jobs(now: datetime, *, job_id: str | None, user_id: str | None) -> Select[Any]:
    """Jobs a claim may take now, oldest available first (one row)."""
    query = (
        select(jobs)
        .where(
            jobs.c.attempts < jobs.c.max_attempts,
            or_(
                and_(jobs.c.status == "pending", jobs.c.available_at <= now),
                and_(jobs.c.status == "running", jobs.c.lease_until < now),
            ),
        )
        .order_by(jobs.c.available_at, jobs.c.created_at, jobs.c.id)
        .limit(1)
    )
    if job_id is not None:
        query = query.where(jobs.c.id == job_id)
    if user_id is not None:
        query = query.where(jobs.c.user_id == user_id)
    return query


def _abandoned(now: datetime) -> ColumnElement[bool]:
    """Running, lease expired, no attempt left: no worker will ever finish it."""
    return and_(
        jobs.c.status == "running",
        jobs.c.lease_until < now,
        jobs.c.attempts >= jobs.c.max_attempts,
    )


def _held(job: JobRecord) -> ColumnElement[bool]:
    """``job``'s claim is still the current one."""
    if job.lease_token is None:
        return false()  # never claimed: held by nobody
    return and_(
        jobs.c.id == job.id, jobs.c.status == "running", jobs.c.lease_token == job.lease_token
    )


def _job_record(row: RowMapping) -> JobRecord:
    return JobRecord(**{c.name: row[c.name] for c in jobs.c})
