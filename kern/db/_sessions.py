"""Sessions and their append-only runs: the ``Db`` protocol part of ``SqlDb``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    Connection,
    RowMapping,
    insert,
    select,
    update,
)

from kern.db._jobs import check_new_job, insert_job
from kern.db._sqlbase import SqlBase, check_limit
from kern.db.base import (
    JobRecord,
    RunRecord,
    SessionRecord,
)
from kern.db.schema import runs, sessions
from kern.errors import StorageError

__all__ = ["SessionsSql"]


class SessionsSql(SqlBase):
    """Sessions (one per conversation, owned by the user who created it) and their runs."""

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
        check_limit(limit)
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

    def add_run(self, run: RunRecord, *, job: JobRecord | None = None) -> None:
        """Append a run; the session must exist and ``run_id`` must be new (runs never change).

        With ``job`` (the turn's extraction job), the job is enqueued in the same transaction:
        a stored turn always has its job, and a job never exists without its turn.
        """
        action = f"append run {run.run_id!r} to session {run.session_id!r}"
        if job is not None:
            check_new_job(job)
        now = self.now()
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
            if job is not None:
                insert_job(conn, job, now)

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
            check_limit(limit)
            query = query.order_by(runs.c.seq.desc()).limit(limit)
        with self.transaction(write=False, action=f"read runs of session {session_id!r}") as conn:
            rows = conn.execute(query).mappings().all()
        records = [_run_record(row) for row in rows]
        if limit is not None:
            records.reverse()
        return records


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
