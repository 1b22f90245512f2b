"""A user's data as one JSON document: export, import, and the list of known users.

An export holds every row of the user that ``LearningDb.delete_user`` would remove, exactly
as stored: sessions, runs, learnings of every status (with their vectors), and history. An
import writes those rows back unchanged (ids, versions, timestamps, history and its order), so
export → forget → import gives back an identical export. The extraction queue is not user
data: callers wait for the user's jobs before exporting, and none are exported.

This works on the tables directly (``kern.db.schema`` through ``SqlDb.transaction``), because
the ``LearningDb`` protocol can only *create* rows (version 1, new history). It lives in
``kern.db`` rather than the server so that ``kern learnings export|import`` needs no server
extra.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import Connection, func, insert, or_, select, union
from sqlalchemy.exc import IntegrityError

from kern.db._learnings import LEARNING_COLUMNS
from kern.db.base import Db, LearningFilter
from kern.db.schema import learning_history, learnings, runs, sessions
from kern.db.sql import SqlDb
from kern.errors import ConfigError, ConflictError


def _utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("the date is out of range once converted to UTC") from None


#: A timezone-aware datetime, normalised to UTC (naive ones are refused: no guessing).
UtcDatetime = Annotated[AwareDatetime, AfterValidator(_utc)]

__all__ = [
    "EXPORT_FORMAT",
    "ExportedHistory",
    "ExportedLearning",
    "ExportedRun",
    "ExportedSession",
    "ImportResult",
    "RowCheck",
    "UserExport",
    "export_user",
    "import_user",
    "list_users",
]

EXPORT_FORMAT = "kern.user-export"

_Status = Literal["active", "proposed", "superseded", "deleted", "rejected"]
_STATUSES: tuple[_Status, ...] = ("active", "proposed", "superseded", "deleted", "rejected")
_Action = Literal[
    "create",
    "update",
    "delete",
    "approve",
    "reject",
    "prune",
    "merge",
    "restore",
    "supersede",
    "close",
]


class _Row(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ExportedSession(_Row):
    session_id: str = Field(min_length=1)
    user_id: str | None
    agent_id: str | None
    created_at: UtcDatetime
    updated_at: UtcDatetime
    metadata: dict[str, Any]


class ExportedRun(_Row):
    run_id: str = Field(min_length=1)
    session_id: str
    user_id: str | None
    agent_id: str | None
    status: str
    input: str
    content: str | None
    messages: list[dict[str, Any]]
    metrics: dict[str, Any]
    error: str | None
    created_at: UtcDatetime


class ExportedLearning(_Row):
    id: str = Field(min_length=1)
    store: str
    kind: str
    scope: str
    user_id: str | None
    session_id: str | None
    agent_id: str | None
    namespace: str | None
    key: str | None
    content: dict[str, Any]
    text: str
    content_hash: str
    status: _Status
    version: int = Field(ge=1, le=2**62)
    run_id: str | None
    created_at: UtcDatetime
    updated_at: UtcDatetime
    metadata: dict[str, Any]
    # The second clock, expiry, pinning and supersession (absent from exports made before them).
    valid_from: UtcDatetime | None = None
    valid_to: UtcDatetime | None = None
    expires_at: UtcDatetime | None = None
    pinned: bool = False
    superseded_by: str | None = None
    embedding: str | None = Field(None, description="float32 vector, base64")

    @field_validator("embedding")
    @classmethod
    def _base64(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                raise ValueError("embedding must be base64") from None
        return value


class ExportedHistory(_Row):
    learning_id: str
    store: str
    scope: str
    user_id: str | None
    action: _Action
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    run_id: str | None
    actor: str | None
    created_at: UtcDatetime


class UserExport(_Row):
    """Everything stored about one user, oldest first within each list."""

    format: Literal["kern.user-export"] = "kern.user-export"
    version: Literal[1] = 1
    user_id: str = Field(min_length=1)
    exported_at: UtcDatetime
    sessions: list[ExportedSession]
    runs: list[ExportedRun]
    learnings: list[ExportedLearning]
    history: list[ExportedHistory]


class ImportResult(BaseModel):
    user_id: str
    sessions: int
    runs: int
    learnings: int
    history: int


def _sql(db: Db) -> SqlDb:
    if not isinstance(db, SqlDb):
        raise ConfigError(
            f"export and import need a SQL database (SqliteDb or PostgresDb), not "
            f"{type(db).__name__}"
        )
    return db


def export_user(db: Db, user_id: str) -> UserExport:
    """Every row of ``user_id``, read in one transaction (a consistent snapshot)."""
    sql = _sql(db)
    mine = select(learnings.c.id).where(learnings.c.user_id == user_id)
    their_sessions = select(sessions.c.session_id).where(sessions.c.user_id == user_id)
    with sql.transaction(write=False, action=f"export user {user_id!r}") as conn:
        session_rows = conn.execute(
            select(sessions)
            .where(sessions.c.user_id == user_id)
            .order_by(sessions.c.created_at, sessions.c.session_id)
        ).mappings()
        exported_sessions = [ExportedSession.model_validate(dict(r)) for r in session_rows]
        run_rows = conn.execute(
            select(runs)
            .where(or_(runs.c.user_id == user_id, runs.c.session_id.in_(their_sessions)))
            .order_by(runs.c.seq)
        ).mappings()
        exported_runs = [ExportedRun.model_validate(_without(r, "seq")) for r in run_rows]
        learning_rows = conn.execute(
            select(*LEARNING_COLUMNS)
            .where(learnings.c.user_id == user_id)
            .order_by(learnings.c.seq)
        ).mappings()
        learning_values = [dict(r) for r in learning_rows]
        history_rows = conn.execute(
            select(learning_history)
            .where(
                or_(learning_history.c.user_id == user_id, learning_history.c.learning_id.in_(mine))
            )
            .order_by(learning_history.c.seq)
        ).mappings()
        exported_history = [
            ExportedHistory.model_validate(_without(r, "seq")) for r in history_rows
        ]
    # Vectors through the engine's own reader (a BLOB on SQLite, pgvector on Postgres).
    ids, blobs = sql.load_vectors(LearningFilter(user_id=user_id, statuses=_STATUSES))
    vectors = dict(zip(ids, blobs, strict=True))
    exported_learnings = [
        ExportedLearning.model_validate({**row, "embedding": _b64(vectors.get(row["id"]))})
        for row in learning_values
    ]
    return UserExport(
        user_id=user_id,
        exported_at=datetime.now(UTC),
        sessions=exported_sessions,
        runs=exported_runs,
        learnings=exported_learnings,
        history=exported_history,
    )


#: What is wrong with a learning row of ``user_id``'s export, or ``None`` when it may be
#: written. The rule depends on the app's stores, which this layer does not know:
#: ``kern.learn.imports.import_check(machine.stores)`` builds it.
RowCheck = Callable[[str, ExportedLearning], str | None]


def import_user(db: Db, user_id: str, data: UserExport, *, check: RowCheck) -> ImportResult:
    """Write an export back, unchanged, in one transaction: all or nothing.

    Refused (``ConfigError``), with nothing written, when the document is for another user,
    holds a row of another user, or a learning row that ``check`` refuses (a store, kind,
    scope or content the app would not have written for this user); refused
    (``ConflictError``) when the user already has data or an id is taken, so an import never
    merges into or overwrites anything.
    """
    sql = _sql(db)
    _check_owner(user_id, data)
    _check_rows(user_id, data, check)
    with sql.transaction(action=f"import user {user_id!r}") as conn:
        _check_free(conn, user_id, data)
        try:
            if data.sessions:
                conn.execute(insert(sessions), [s.model_dump() for s in data.sessions])
            if data.runs:
                conn.execute(insert(runs), [r.model_dump() for r in data.runs])
            for learning in data.learnings:  # one by one: the FTS triggers see each row
                values = learning.model_dump()
                embedding = values.pop("embedding")
                vector = None if embedding is None else base64.b64decode(embedding)
                conn.execute(insert(learnings).values(**values, embedding=_stored(sql, vector)))
            if data.history:
                conn.execute(insert(learning_history), [h.model_dump() for h in data.history])
        except IntegrityError as exc:
            raise ConflictError(
                f"cannot import user {user_id!r}: a row conflicts with existing data "
                f"({type(exc.orig).__name__})"
            ) from None
    return ImportResult(
        user_id=user_id,
        sessions=len(data.sessions),
        runs=len(data.runs),
        learnings=len(data.learnings),
        history=len(data.history),
    )


def list_users(db: Db, *, limit: int = 1000) -> list[str]:
    """Every user id that has a session or a learning, sorted."""
    sql = _sql(db)
    ids = union(
        select(sessions.c.user_id.label("user_id")).where(sessions.c.user_id.is_not(None)),
        select(learnings.c.user_id.label("user_id")).where(learnings.c.user_id.is_not(None)),
    ).subquery()
    query = select(ids.c.user_id).order_by(ids.c.user_id).limit(limit)
    with sql.transaction(write=False, action="list users") as conn:
        return [row[0] for row in conn.execute(query)]


# --------------------------------------------------------------------------- helpers


def _stored(db: SqlDb, vector: bytes | None) -> Any:
    """A vector as the engine stores it: ``SqlDb._embedding_value`` where the engine has
    that hook (pgvector), the float32 bytes otherwise. Engine knowledge like this is why
    import belongs in ``kern.db``."""
    hook = getattr(db, "_embedding_value", None)
    return vector if hook is None or vector is None else hook(vector)


def _without(row: Any, *names: str) -> dict[str, Any]:
    return {k: v for k, v in dict(row).items() if k not in names}


def _b64(value: bytes | None) -> str | None:
    return None if value is None else base64.b64encode(bytes(value)).decode("ascii")


def _check_owner(user_id: str, data: UserExport) -> None:
    if data.user_id != user_id:
        raise ConfigError(f"this export is of user {data.user_id!r}, not {user_id!r}")
    session_ids = {s.session_id for s in data.sessions}
    learning_ids = {row.id for row in data.learnings}
    problems = [
        *(f"session {s.session_id!r}" for s in data.sessions if s.user_id != user_id),
        *(
            f"run {r.run_id!r}"
            for r in data.runs
            if r.user_id not in (user_id, None) or r.session_id not in session_ids
        ),
        *(f"learning {row.id!r}" for row in data.learnings if row.user_id != user_id),
        *(
            f"history of {h.learning_id!r}"
            for h in data.history
            if h.user_id != user_id and h.learning_id not in learning_ids
        ),
    ]
    if problems:
        raise ConfigError(
            f"the export holds rows that are not user {user_id!r}'s (or runs outside the "
            f"exported sessions): {', '.join(problems[:5])}"
        )
    for what, ids in (
        ("session", [s.session_id for s in data.sessions]),
        ("run", [r.run_id for r in data.runs]),
        ("learning", [row.id for row in data.learnings]),
    ):
        if len(set(ids)) != len(ids):
            raise ConfigError(f"the export lists a {what} id twice")


def _check_rows(user_id: str, data: UserExport, check: RowCheck) -> None:
    stored = {row.id: row for row in data.learnings}
    problems = [
        f"learning {row.id!r}: {problem}"
        for row in data.learnings
        if (problem := check(user_id, row)) is not None
    ]
    problems += [
        f"history of {h.learning_id!r}: its store or scope is not the learning's"
        for h in data.history
        if (row := stored.get(h.learning_id)) is not None
        and (h.store, h.scope) != (row.store, row.scope)
    ]
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise ConfigError(
            f"nothing was imported: the export of {user_id!r} holds {len(problems)} row(s) this "
            f"app would not have written for that user: {'; '.join(problems[:5])}{more}"
        )


def _check_free(conn: Connection, user_id: str, data: UserExport) -> None:
    counts = [
        conn.execute(select(func.count()).select_from(t).where(t.c.user_id == user_id)).scalar()
        for t in (sessions, runs, learnings, learning_history)
    ]
    if any(counts):
        raise ConflictError(
            f"user {user_id!r} already has data; import only into a user with none "
            "(forget them first)"
        )
    taken = [
        *_taken(conn, sessions.c.session_id, [s.session_id for s in data.sessions]),
        *_taken(conn, runs.c.run_id, [r.run_id for r in data.runs]),
        *_taken(conn, learnings.c.id, [row.id for row in data.learnings]),
    ]
    if taken:
        raise ConflictError(
            f"cannot import user {user_id!r}: ids already in use: {', '.join(taken[:5])}"
        )


def _taken(conn: Connection, column: Any, ids: list[str]) -> list[str]:
    found: list[str] = []
    for start in range(0, len(ids), 500):  # bounded IN lists
        chunk = ids[start : start + 500]
        found += [row[0] for row in conn.execute(select(column).where(column.in_(chunk)))]
    return found
