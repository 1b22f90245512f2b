"""The storage contract the agent and the learning machine rely on.

Methods are synchronous and each is one short transaction; the async core calls them through
``asyncio.to_thread`` so a busy database never blocks the event loop. One implementation
(``kern.db.sql.SqlDb``) serves SQLite and PostgreSQL through SQLAlchemy Core.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol, TypeAlias, runtime_checkable

__all__ = [
    "Close",
    "Create",
    "Db",
    "HistoryAction",
    "HistoryRecord",
    "JobRecord",
    "JobStatus",
    "LearningDb",
    "LearningFilter",
    "LearningRecord",
    "LearningStatus",
    "Put",
    "RankingRow",
    "RunRecord",
    "SearchHit",
    "SessionRecord",
    "SetStatus",
    "Supersede",
    "Update",
    "WriteOp",
]


@dataclass(frozen=True, slots=True)
class SessionRecord:
    session_id: str
    user_id: str | None
    agent_id: str | None
    created_at: datetime
    updated_at: datetime
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One finished (or failed) run, appended once and never rewritten.

    ``messages`` holds only the messages this run added (user input, assistant turns, tool
    results), as ``kern.models.base.message_to_dict`` dicts, so a session's history is the
    concatenation of its runs in order.
    """

    run_id: str
    session_id: str
    user_id: str | None
    agent_id: str | None
    status: str  # "completed" | "failed"
    input: str
    content: str | None
    messages: list[dict[str, Any]]
    metrics: dict[str, Any]
    created_at: datetime
    error: str | None = None


@runtime_checkable
class Db(Protocol):
    """A database kern can store sessions and runs in."""

    def upsert_session(
        self, session_id: str, *, user_id: str | None, agent_id: str | None
    ) -> SessionRecord:
        """Create the session if it is new, else touch ``updated_at``; return it."""
        ...

    def get_session(self, session_id: str) -> SessionRecord | None: ...

    def list_sessions(
        self, *, user_id: str | None = None, limit: int = 50
    ) -> Sequence[SessionRecord]:
        """Newest first."""
        ...

    def add_run(self, run: RunRecord) -> None:
        """Append a run (the session must exist)."""
        ...

    def get_runs(
        self, session_id: str, *, limit: int | None = None, status: str | None = "completed"
    ) -> Sequence[RunRecord]:
        """The session's runs in chronological order; ``limit`` keeps the most recent ones."""
        ...

    def close(self) -> None: ...


# --------------------------------------------------------------------------- learnings
#
# One row per learned item (a profile field, a memory, a fact, a learning, a decision, a
# session context …). Every change goes through ``Db.apply`` as a list of write operations,
# applied in one transaction with one history event each. The learning layer above never
# writes SQL; the SQL layer never interprets content.

LearningStatus = Literal["active", "proposed", "superseded", "deleted", "rejected"]
HistoryAction = Literal[
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


@dataclass(frozen=True, slots=True)
class LearningRecord:
    """A stored learning. ``scope`` is the access key (see ``kern.learn.scope``): every read
    filters on it, so user-scoped keys always contain the user id."""

    id: str
    store: str
    kind: str
    scope: str
    content: dict[str, Any]
    text: str
    user_id: str | None = None
    session_id: str | None = None
    agent_id: str | None = None
    namespace: str | None = None
    #: Natural key for keyed items (a profile field name, "context" for a session context);
    #: at most one *active* row per (store, scope, key).
    key: str | None = None
    content_hash: str = ""
    status: LearningStatus = "active"
    version: int = 1
    run_id: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    #: When the item held in the world (the second clock; ``created_at`` is when it was
    #: recorded). ``None``: unknown, or (``valid_to``) still true.
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    #: After this the item is no longer recalled.
    expires_at: datetime | None = None
    #: Never pruned, decayed or merged away by the curator.
    pinned: bool = False
    #: The item that replaced this one (status ``superseded``).
    superseded_by: str | None = None


@dataclass(frozen=True, slots=True)
class Create:
    """Insert a new row (``record.id`` chosen by the caller)."""

    record: LearningRecord
    embedding: bytes | None = None


@dataclass(frozen=True, slots=True)
class Put:
    """Set a keyed item: update the active row with ``record.key`` in ``record.scope`` (new
    content, version + 1), or insert ``record`` when there is none. Concurrent ``Put``s on the
    same key serialise; none is lost (each is one history event).

    With ``supersede``, a current row whose content differs is not rewritten but superseded
    (as by ``Supersede``) by ``record``, so the key keeps its past values: a profile field's
    history in time."""

    record: LearningRecord
    embedding: bytes | None = None
    supersede: bool = False


@dataclass(frozen=True, slots=True)
class Update:
    """Change an existing row's content. With ``expected_version`` it is a compare-and-swap:
    a row changed meanwhile raises ``ConflictError`` instead of being overwritten."""

    id: str
    content: dict[str, Any]
    text: str
    content_hash: str
    expected_version: int | None = None
    metadata: dict[str, Any] | None = None
    embedding: bytes | None = None


@dataclass(frozen=True, slots=True)
class SetStatus:
    """Move a row to ``status`` (delete, approve, reject, prune, merge, restore …); refused
    with ``ConflictError`` unless its current status is one of ``from_statuses``."""

    id: str
    status: LearningStatus
    action: HistoryAction
    from_statuses: tuple[LearningStatus, ...] = ("active",)


@dataclass(frozen=True, slots=True)
class Supersede:
    """Replace the active row ``id`` by ``record`` (a new row) in one step. The old row keeps
    its content and gets status ``superseded``, ``valid_to`` = when the new one starts to hold
    (``record.valid_from``, now when ``None``; the new row gets that ``valid_from`` too) and
    ``superseded_by`` = ``record.id``. History: "supersede" on the old row, "create" on the
    new one, which ``apply`` returns. ``expected_version`` makes it a compare-and-swap."""

    id: str
    record: LearningRecord
    embedding: bytes | None = None
    expected_version: int | None = None


@dataclass(frozen=True, slots=True)
class Close:
    """End the validity of the active row ``id`` at ``valid_to`` (now when ``None``), with no
    successor ("I no longer have a dog"). The row stays ``active`` and readable as a past
    fact: a closed item and one added with a ``valid_to`` are the same thing. History "close"."""

    id: str
    valid_to: datetime | None = None


WriteOp: TypeAlias = Create | Put | Update | SetStatus | Supersede | Close


@dataclass(frozen=True, slots=True)
class LearningFilter:
    """Which rows a read may see. ``scopes`` is required by every learning-layer read: a
    filter without it is only for administration (export, forget, curator over a user).
    ``ids`` narrows a read to those rows (still within every other condition)."""

    store: str | None = None
    scopes: Sequence[str] | None = None
    user_id: str | None = None
    session_id: str | None = None
    kinds: Sequence[str] | None = None
    key: str | None = None
    statuses: Sequence[LearningStatus] = ("active",)
    run_id: str | None = None
    created_before: datetime | None = None
    created_after: datetime | None = None
    ids: Sequence[str] | None = None
    #: Only rows that held in the world at this instant (``valid_from`` unknown or not after
    #: it, ``valid_to`` unknown or after it).
    valid_at: datetime | None = None
    #: Only rows that held at some time in ``[start, end)``.
    valid_during: tuple[datetime, datetime] | None = None
    #: Only rows not expired at this instant (``expires_at`` unset or after it).
    unexpired_at: datetime | None = None
    #: Only pinned (``True``) or unpinned (``False``) rows.
    pinned: bool | None = None


@dataclass(frozen=True, slots=True)
class HistoryRecord:
    seq: int
    learning_id: str
    store: str
    scope: str
    user_id: str | None
    action: HistoryAction
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    run_id: str | None
    actor: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class SearchHit:
    record: LearningRecord
    #: Higher is better; engine-specific scale (BM25 sign flipped on SQLite).
    score: float


@dataclass(frozen=True, slots=True)
class RankingRow:
    """What search ranking needs of a row besides its scores (``LearningDb.load_neighbours``).

    ``subject`` is the entity an entity-memory row is about (``content["entity"]``), else
    ``None``; ``head`` is the start of the row's searchable text (where a "Speaker: text" row
    names its speaker); ``scope`` is whose row it is (session-less rows of one scope recorded
    close together in time form a context).
    """

    id: str
    session_id: str | None
    created_at: datetime
    subject: str | None
    scope: str = ""
    head: str = ""


JobStatus = Literal["pending", "running", "done", "failed"]


@dataclass(frozen=True, slots=True)
class JobRecord:
    """A durable extraction job. ``lease_token`` identifies the current claim: completing or
    failing a job requires it, so a worker whose lease expired cannot apply twice."""

    id: str
    kind: str
    payload: dict[str, Any]
    user_id: str | None = None
    session_id: str | None = None
    agent_id: str | None = None
    run_id: str | None = None
    status: JobStatus = "pending"
    attempts: int = 0
    max_attempts: int = 3
    error: str | None = None
    lease_token: str | None = None
    lease_until: datetime | None = None
    available_at: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


@runtime_checkable
class LearningDb(Db, Protocol):
    """A ``Db`` that can also hold learnings, their history and the extraction queue."""

    def now(self) -> datetime:
        """The database's clock (timezone-aware UTC): "now" for validity and expiry filters."""
        ...

    def apply(
        self,
        ops: Sequence[WriteOp],
        *,
        run_id: str | None = None,
        actor: str | None = None,
        job: JobRecord | None = None,
    ) -> list[LearningRecord]:
        """Apply ``ops`` in one transaction, one history event each; return the resulting rows
        in order. With ``job`` the same transaction marks that claim done — or raises
        ``JobLostError`` and applies nothing if the claim is no longer held (idempotence)."""
        ...

    def add_run(self, run: RunRecord, *, job: JobRecord | None = None) -> None:
        """Append a run and, with ``job``, enqueue the turn's extraction job in the same
        transaction (a stored turn always has its job)."""
        ...

    def get_learning(self, learning_id: str) -> LearningRecord | None: ...

    def list_learnings(
        self,
        where: LearningFilter,
        *,
        limit: int = 100,
        offset: int = 0,
        newest_first: bool = True,
    ) -> list[LearningRecord]: ...

    def count_learnings(self, where: LearningFilter) -> int: ...

    def search_text(self, query: str, where: LearningFilter, *, limit: int = 50) -> list[SearchHit]:
        """Full-text search (BM25-ranked) among rows matching ``where``; a query with no
        searchable words returns ``[]``, never everything."""
        ...

    def search_text_scores(
        self, query: str, where: LearningFilter, *, limit: int = 50
    ) -> list[tuple[str, float]]:
        """``search_text``'s ids and scores, best first, without loading the rows (the
        candidates of hybrid search)."""
        ...

    def load_vectors(self, where: LearningFilter) -> tuple[list[str], list[bytes]]:
        """Ids and float32 embeddings of rows matching ``where`` that have one."""
        ...

    def search_vectors(
        self, vector: bytes, where: LearningFilter, *, limit: int = 50
    ) -> list[tuple[str, float]]:
        """Ids and cosine similarities of the ``limit`` rows matching ``where`` whose embedding
        is nearest to ``vector`` (float32 bytes), best first; embeddings of another dimension
        never compete (the vector candidates of hybrid search)."""
        ...

    def load_texts(self, where: LearningFilter, ids: Sequence[str]) -> dict[str, str]:
        """The searchable text of the rows among ``ids`` that ``where`` admits, by id (query
        coverage reads the best full-text candidates' words)."""
        ...

    def load_neighbours(
        self,
        where: LearningFilter,
        ids: Sequence[str],
        *,
        around: Sequence[str] = (),
        gap: timedelta | None = None,
    ) -> list[RankingRow]:
        """Rows matching ``where`` that are among ``ids`` or share a session with one of them,
        by ``created_at`` then insertion order: the session order neighbour spread follows.
        With ``gap``, also the session-less rows of the scope of each session-less row of
        ``around`` recorded within ``gap`` of it. Whole sessions are read, so the cost grows
        with the candidates' session sizes (and with how many rows were recorded within
        ``gap`` of the rows ``around``)."""
        ...

    def history(
        self,
        *,
        learning_id: str | None = None,
        user_id: str | None = None,
        store: str | None = None,
        limit: int = 100,
    ) -> list[HistoryRecord]:
        """History events, newest first."""
        ...

    def delete_user(self, user_id: str, *, keep_shared: bool = False) -> int:
        """Remove every row of a user: learnings (and their vectors), history, jobs, runs,
        sessions. Returns the number of rows removed. ``keep_shared`` keeps (detached from the
        user) the items they wrote in shared namespaces."""
        ...

    def enqueue_job(self, job: JobRecord) -> None: ...

    def claim_job(
        self, *, job_id: str | None = None, user_id: str | None = None, lease_seconds: float = 60
    ) -> JobRecord | None:
        """Claim one runnable job (pending and available, or running with an expired lease),
        the given one if ``job_id``; ``None`` when there is nothing to claim."""
        ...

    def fail_job(self, job: JobRecord, error: str, *, retry_in: float | None = None) -> None:
        """Record a failed attempt: back to pending after ``retry_in`` seconds, or failed."""
        ...

    def renew_lease(self, job: JobRecord, *, lease_seconds: float) -> bool:
        """Extend ``job``'s claim to ``lease_seconds`` from now; ``False`` when the claim is no
        longer held (another worker took the job over, or it finished)."""
        ...

    def count_unfinished_jobs(self, *, user_id: str | None = None, due_only: bool = False) -> int:
        """Jobs pending or running; ``due_only`` leaves out retries still backing off (for the
        consistency wait)."""
        ...

    def delete_done_jobs(self, *, older_than: float) -> int:
        """Remove jobs that finished successfully more than ``older_than`` seconds ago
        (failed jobs stay, with their errors). Returns how many were removed."""
        ...

    def retry_job(self, job_id: str) -> JobRecord:
        """Queue a failed job again with all its attempts (``ConflictError`` unless failed,
        ``NotFoundError`` for an unknown id); returns it as queued."""
        ...

    def list_jobs(
        self,
        *,
        status: JobStatus | None = None,
        user_id: str | None = None,
        job_id: str | None = None,
        limit: int = 100,
    ) -> list[JobRecord]: ...
