"""Learnings: their rows, their history, and ``apply``, the one write path.

Every change is a compare-and-swap on ``version`` with one history event; a keyed ``Put``
serialises on its ``(store, scope, key)`` (see ``kern.db.sql`` on concurrency).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Connection,
    RowMapping,
    Select,
    and_,
    bindparam,
    func,
    insert,
    literal_column,
    or_,
    select,
    update,
)

from kern.db._jobs import complete_job
from kern.db._sqlbase import SqlBase, check_limit
from kern.db.base import (
    Close,
    Create,
    HistoryAction,
    HistoryRecord,
    JobRecord,
    LearningFilter,
    LearningRecord,
    Put,
    SetStatus,
    Supersede,
    Update,
    WriteOp,
)
from kern.db.schema import StringList, among, learning_history, learnings, unindexed
from kern.errors import ConflictError, InvalidArgumentError
from kern.limits import (
    MAX_CONTENT_CHARS,
    MAX_ID_CHARS,
    check_aware,
    check_content,
    check_metadata,
    check_text,
)

__all__ = [
    "LEARNING_COLUMNS",
    "LearningsSql",
    "filter_shape",
    "filter_values",
    "learning_clauses",
    "learning_record",
    "shape_clauses",
]

LEARNING_COLUMNS = tuple(c for c in learnings.c if c.name not in ("seq", "embedding", "changed"))
"""The columns a ``LearningRecord`` is built from (vectors are loaded only by ``load_vectors``)."""

# The predicate of the partial unique index on (store, scope, key), as ``ON CONFLICT`` infers it;
# a literal, not a parameter, so Postgres can match it to the index when planning.
_ACTIVE_KEYED = and_(learnings.c.key.is_not(None), learnings.c.status == literal_column("'active'"))


#: How many times a keyed write re-reads a key that concurrent writers keep taking.
_PUT_ATTEMPTS = 50


class _KeyTaken(Exception):
    """A keyed insert found the key already held by an active row."""


class LearningsSql(SqlBase):
    """Learning rows and their history: ``apply`` writes, the rest reads."""

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
        - ``Supersede`` closes an active row (status ``superseded``, ``valid_to``,
          ``superseded_by``) and inserts its successor; ``Close`` sets an active row's
          ``valid_to``. ``Put(supersede=True)`` supersedes a keyed row whose content changes.

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
            if not isinstance(op, Create | Put | Update | SetStatus | Supersede | Close):
                raise InvalidArgumentError(f"not a learning write operation: {op!r}")
            _check_write(op)
        now = self.now()
        what = f"apply {len(ops)} learning write(s)" + (f" for job {job.id!r}" if job else "")
        with self.transaction(action=what) as conn:
            if job is not None:
                # First, so a lost claim costs no work; on Postgres the row lock it takes also
                # keeps the job from being claimed again until this transaction ends.
                complete_job(conn, job, now)
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
            before, after = self._put(conn, op, now, run_id, actor)
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
        elif isinstance(op, Supersede):
            current = _lock_learning(conn, op.id)
            if (
                current is None
                or current.status != "active"
                or (op.expected_version is not None and current.version != op.expected_version)
            ):
                raise ConflictError(_conflict_message(op.id, current, op.expected_version))
            after = self._supersede(conn, current, op.record, op.embedding, now, run_id, actor)
            action = "create"
            event_run_id = after.run_id
        elif isinstance(op, Close):
            before = _lock_learning(conn, op.id)
            after = self._close(conn, op, before, now)
            action = "close"
        else:
            before = _lock_learning(conn, op.id)
            after = self._set_status(conn, op, before, now)
            action = op.action
        _record_event(conn, action, before, after, run_id=event_run_id, actor=actor, now=now)
        return after

    def _supersede(
        self,
        conn: Connection,
        current: LearningRecord,
        record: LearningRecord,
        embedding: bytes | None,
        now: datetime,
        run_id: str | None,
        actor: str | None,
    ) -> LearningRecord:
        """Close the active row ``current`` in favour of ``record`` and insert ``record``
        (history: "supersede" on ``current`` here; the caller records the new row's "create")."""
        if record.status != "active":
            raise InvalidArgumentError(f"a successor must be active, got {record.status!r}")
        starts = record.valid_from if record.valid_from is not None else now
        ends = starts if current.valid_to is None else min(current.valid_to, starts)
        changes: dict[str, Any] = {
            "status": "superseded",
            "valid_to": ends,
            "superseded_by": record.id,
        }
        closed = self._write_version(conn, current, now, changes, changes, status="active")
        _record_event(conn, "supersede", current, closed, run_id=run_id, actor=actor, now=now)
        # After the old row left "active", so a keyed successor takes the key without conflict.
        return self._insert_learning(
            conn, replace(record, valid_from=starts), embedding, now, run_id
        )

    def _close(
        self, conn: Connection, op: Close, current: LearningRecord | None, now: datetime
    ) -> LearningRecord:
        if current is None or current.status != "active":
            raise ConflictError(_conflict_message(op.id, current, None).replace("update", "close"))
        ends = op.valid_to if op.valid_to is not None else now
        if current.valid_from is not None and ends < current.valid_from:
            raise InvalidArgumentError(
                f"cannot close learning {op.id!r} at {ends.isoformat()}: it holds only from "
                f"{current.valid_from.isoformat()}"
            )
        changes = {"valid_to": ends}
        return self._write_version(conn, current, now, changes, changes, status="active")

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
        self, conn: Connection, op: Put, now: datetime, run_id: str | None, actor: str | None
    ) -> tuple[LearningRecord | None, LearningRecord]:
        """(the row before, the row after) of a keyed write; before is None for an insert (or
        a superseding write, whose old row gets its own "supersede" event)."""
        record = op.record
        if record.key is None or record.status != "active":
            raise InvalidArgumentError(f"Put needs a key and status 'active', got {record!r}")
        current = None
        for _ in range(_PUT_ATTEMPTS):
            current = _lock_active_key(conn, record.store, record.scope, record.key)
            if current is not None:
                break
            try:
                return None, self._insert_learning(
                    conn, record, op.embedding, now, run_id, if_key_free=True
                )
            except _KeyTaken:
                # Postgres only (SQLite's write lock excludes the race): a concurrent Put
                # inserted the key and committed after our read. Read it again; when Puts that
                # supersede contend, the row we then wait for may itself be superseded before
                # we get it (its successor not yet visible to us), so this can take turns.
                continue
        if current is None:
            raise ConflictError(
                f"key {record.key!r} of {record.store} kept changing during the write "
                f"({_PUT_ATTEMPTS} attempts)"
            )
        if op.supersede and current.content_hash != record.content_hash:
            new = self._supersede(conn, current, record, op.embedding, now, run_id, actor)
            return None, new
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
        return None if row is None else learning_record(row)

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
        check_limit(limit)
        check_limit(offset, "offset")
        query = _list_query(filter_shape(where), newest_first)
        values = {**filter_values(where), "list_limit": limit, "list_offset": offset}
        with self.transaction(write=False, action="list learnings") as conn:
            rows = conn.execute(query, values).mappings().all()
        return [learning_record(row) for row in rows]

    def count_learnings(self, where: LearningFilter) -> int:
        query = select(func.count()).select_from(learnings).where(*learning_clauses(where))
        query = query.params(filter_values(where))
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
        check_limit(limit)
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

    # -- engine hook -----------------------------------------------------------------------------

    def _embedding_value(self, embedding: bytes | None) -> Any:
        """Engine-specific: the value written to ``learnings.embedding`` for float32 bytes
        (the bytes themselves here; ``PostgresDb`` casts them to pgvector's ``vector``)."""
        return embedding


def learning_clauses(where: LearningFilter) -> list[ColumnElement[bool]]:
    """``where`` as SQL conditions: each field that is not None must match (``scopes``,
    ``kinds`` and ``ids`` are IN lists; an empty list matches nothing); ``statuses`` always applies;
    ``created_after`` is inclusive and ``created_before`` exclusive. The time filters
    (``valid_at``, ``valid_during``, ``unexpired_at``) treat an unknown bound as open.

    The values are bound parameters named ``where_*``: a statement using these conditions
    takes ``.params(filter_values(where))``. Executed without them it fails ("a value is
    required for bind parameter"); it never reads other rows. The conditions are built once
    per shape of filter (which fields are set) and shared: building them anew cost more than
    a small query (0.7 ms of a 5 ms search)."""
    return list(shape_clauses(filter_shape(where)))


def filter_shape(where: LearningFilter) -> tuple[str, ...]:
    """Which fields of ``where`` are set: what ``learning_clauses``' conditions depend on, and
    so what a statement built from them can be kept by."""
    return tuple(name for name in _FILTER_FIELDS if getattr(where, name) is not None)


def filter_values(where: LearningFilter) -> dict[str, Any]:
    """The values of ``learning_clauses(where)``'s parameters."""
    values: dict[str, Any] = {"where_statuses": list(where.statuses)}
    for name in _FILTER_FIELDS:
        value = getattr(where, name)
        if value is None:
            continue
        if name == "valid_during":
            values["where_valid_start"], values["where_valid_end"] = value
        else:
            values[f"where_{name}"] = list(value) if name in _LISTS else value
    return values


_FILTER_FIELDS = (
    "store",
    "scopes",
    "user_id",
    "session_id",
    "kinds",
    "key",
    "run_id",
    "created_after",
    "created_before",
    "ids",
    "valid_at",
    "valid_during",
    "unexpired_at",
    "pinned",
)
_LISTS = frozenset({"scopes", "kinds", "ids"})


@lru_cache(maxsize=256)
def shape_clauses(shape: tuple[str, ...]) -> tuple[ColumnElement[bool], ...]:
    """The conditions of ``learning_clauses`` for filters with these fields set."""
    c = learnings.c

    def value(name: str, **options: Any) -> BindParameter[Any]:
        return bindparam(f"where_{name}", **options)

    clauses: list[ColumnElement[bool]] = [c.status.in_(value("statuses", expanding=True))]
    for name in shape:  # in _FILTER_FIELDS order, the order the conditions always had
        if name in ("scopes", "kinds"):
            column = c.scope if name == "scopes" else c.kind
            clauses.append(column.in_(value(name, expanding=True)))
        elif name == "created_after":
            clauses.append(c.created_at >= value(name))
        elif name == "created_before":
            clauses.append(c.created_at < value(name))
        elif name == "ids":
            clauses.append(among(c.id, value(name, type_=StringList())))
        elif name == "valid_at":
            at = value(name)
            clauses.append(or_(c.valid_from.is_(None), c.valid_from <= at))
            clauses.append(or_(c.valid_to.is_(None), c.valid_to > at))
        elif name == "valid_during":
            start, end = value("valid_start"), value("valid_end")
            clauses.append(or_(c.valid_from.is_(None), c.valid_from < end))
            clauses.append(or_(c.valid_to.is_(None), c.valid_to > start))
        elif name == "unexpired_at":
            clauses.append(or_(c.expires_at.is_(None), c.expires_at > value(name)))
        elif name == "store" and "ids" in shape:
            # A read by id goes through the id's unique index: SQLite, which has no statistics,
            # would otherwise take the (store, scope, …) index and test every row of the scope
            # (search's top 10 of a user's 1,000 memories: ~6 ms against ~0.5 ms).
            clauses.append(unindexed(c.store) == value(name))
        else:  # store, user_id, session_id, key, run_id, pinned
            clauses.append(c[name] == value(name))
    return tuple(clauses)


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
        "valid_from": record.valid_from,
        "valid_to": record.valid_to,
        "expires_at": record.expires_at,
        "pinned": record.pinned,
        "superseded_by": record.superseded_by,
    }


@lru_cache(maxsize=128)
def _list_query(shape: tuple[str, ...], newest_first: bool) -> Select[Any]:
    """``list_learnings``' statement for filters of ``shape``, limit and offset bound too:
    built once, not per call (its ~20 columns and clauses cost ~0.3 ms to build, every
    search reads its top rows with it)."""
    order = (learnings.c.created_at, learnings.c.seq)
    return (
        select(*LEARNING_COLUMNS)
        .where(*shape_clauses(shape))
        .order_by(*(c.desc() for c in order) if newest_first else order)
        .limit(bindparam("list_limit"))
        .offset(bindparam("list_offset"))
    )


def learning_record(row: RowMapping) -> LearningRecord:
    return LearningRecord(**{c.name: row[c.name] for c in LEARNING_COLUMNS})


def _lock_learning(conn: Connection, learning_id: str) -> LearningRecord | None:
    """The row, read for update (a row lock on Postgres; SQLite holds the database lock)."""
    query = select(*LEARNING_COLUMNS).where(learnings.c.id == learning_id).with_for_update()
    row = conn.execute(query).mappings().first()
    return None if row is None else learning_record(row)


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
    return None if row is None else learning_record(row)


def _snapshot(record: LearningRecord) -> dict[str, Any]:
    """What history keeps of a row, before and after a change (the time fields when set)."""
    snapshot: dict[str, Any] = {
        "content": record.content,
        "text": record.text,
        "status": record.status,
        "version": record.version,
        "metadata": record.metadata,
    }
    for name in ("valid_from", "valid_to", "expires_at"):
        value = getattr(record, name)
        if value is not None:
            snapshot[name] = value.astimezone(UTC).isoformat()
    if record.pinned:
        snapshot["pinned"] = True
    if record.superseded_by is not None:
        snapshot["superseded_by"] = record.superseded_by
    return snapshot


def _record_event(
    conn: Connection,
    action: HistoryAction,
    before: LearningRecord | None,
    after: LearningRecord,
    *,
    run_id: str | None,
    actor: str | None,
    now: datetime,
) -> None:
    conn.execute(
        insert(learning_history).values(
            learning_id=after.id,
            store=after.store,
            scope=after.scope,
            user_id=after.user_id,
            action=action,
            before=None if before is None else _snapshot(before),
            after=_snapshot(after),
            run_id=run_id,
            actor=actor,
            created_at=now,
        )
    )


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


def _check_write(op: WriteOp) -> None:
    """Every learning write, whatever its path (extraction, tools, the direct API, REST),
    holds only what both engines store and stays within ``kern.limits``: clean strings, a
    bounded content and metadata, timezone-aware dates. Refused before the transaction."""
    if isinstance(op, SetStatus):
        return
    if isinstance(op, Close):
        if op.valid_to is not None:
            check_aware(op.valid_to, "valid_to")
        return
    metadata: dict[str, Any] | None
    if isinstance(op, Create | Put | Supersede):
        record = op.record
        for name in ("id", "store", "kind", "scope", "user_id", "session_id", "agent_id", "key"):
            value = getattr(record, name)
            if value is not None:
                check_text(value, name, max_chars=MAX_ID_CHARS * 4)
        content, text, metadata = record.content, record.text, record.metadata
        for name in ("created_at", "updated_at", "valid_from", "valid_to", "expires_at"):
            if getattr(record, name, None) is not None:
                check_aware(getattr(record, name), name)
    else:
        content, text, metadata = op.content, op.text, op.metadata
    check_content(content)
    check_text(text, "text", max_chars=MAX_CONTENT_CHARS)
    if metadata is not None:
        check_metadata(metadata)
