"""The learning layer's one I/O driver: database, hybrid search, batched embedding, agent id.

Stores do no I/O. A store hook that needs stored data is a *flow*: a generator that yields
requests (``Search``, ``Read``, ``Get``, ``Now``, ``Apply``) and receives their results, then
returns its answer — the shape of httpx's ``Auth.auth_flow``. ``LearningBackend.run`` drives
flows on the event loop: blocking database calls go to a worker thread (leaf work), embedders
are awaited, and nothing waits on ``run_sync``. Unit tests drive the same flows by hand.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, TypeAlias, TypeVar

from kern._sync import call_any
from kern._text import query_terms
from kern.db.base import (
    Close,
    Create,
    Db,
    JobRecord,
    LearningDb,
    LearningFilter,
    LearningRecord,
    SearchHit,
    SetStatus,
    Supersede,
    Update,
    WriteOp,
)
from kern.errors import ConfigError
from kern.learn.policy import check_turn_writes, shared_as_proposals
from kern.search.embedders import Embedder
from kern.search.hybrid import hybrid_search, rank_candidates, text_candidates

__all__ = ["Apply", "Flow", "Get", "LearningBackend", "Now", "Read", "Search"]

log = logging.getLogger("kern.learn")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Search:
    """Hybrid search; answered with ``list[SearchHit]``, best first."""

    query: str
    where: LearningFilter
    limit: int


@dataclass(frozen=True, slots=True)
class Read:
    """Rows matching ``where``; answered with ``list[LearningRecord]``."""

    where: LearningFilter
    limit: int = 100
    offset: int = 0
    newest_first: bool = True


@dataclass(frozen=True, slots=True)
class Get:
    """One row by id, any store or scope (the flow checks access); ``LearningRecord | None``."""

    id: str


@dataclass(frozen=True, slots=True)
class Now:
    """The database's "now", which validity and expiry are judged against; ``datetime``."""


@dataclass(frozen=True, slots=True)
class Apply:
    """Write operations in one transaction; answered with the resulting rows, in order.
    ``turn_of``: the user whose turn writes (the shared-namespace policy applies)."""

    ops: Sequence[WriteOp]
    actor: str
    run_id: str | None = None
    turn_of: str | None = None


Request: TypeAlias = Search | Read | Get | Now | Apply
#: A store hook that needs stored data: yields requests, receives results, returns ``T``.
Flow: TypeAlias = Generator[Request, Any, T]


class LearningBackend:
    """Does every read, embedding and write of one ``LearningMachine``'s stores.

    ``db`` and ``agent_id`` may arrive later (an ``Agent`` fills in what was not given).
    ``shared_writes="propose"`` turns the shared items a user's turn creates into proposals.
    """

    def __init__(
        self,
        db: Db | None = None,
        embedder: Embedder | None = None,
        agent_id: str | None = None,
        shared_writes: str = "add",
    ) -> None:
        self._db = db
        self.embedder = embedder
        self.agent_id = agent_id
        self.shared_writes = shared_writes

    @property
    def db(self) -> LearningDb:
        if self._db is None:
            raise ConfigError("this LearningMachine has no db: pass db= or give it to an Agent")
        if not isinstance(self._db, LearningDb):
            raise ConfigError(f"{type(self._db).__name__} cannot store learnings")
        return self._db

    def attach(self, db: Db | None, agent_id: str | None) -> None:
        self._db = self._db or db
        self.agent_id = self.agent_id or agent_id

    # -------------------------------------------------------------- the driver

    async def run(self, flow: Flow[T]) -> T:
        """Drive ``flow`` to its return value, answering each request it yields."""
        value: Any = None
        failed = False
        while True:
            try:
                request = flow.throw(value) if failed else flow.send(value)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            try:
                value, failed = await self.answer(request), False
            except Exception as exc:  # raised inside the flow, where it asked
                value, failed = exc, True

    async def call(self, hook: Callable[..., Any], /, *args: Any) -> Any:
        """Call a store hook whatever its kind: a flow, a coroutine or a plain function
        (plain ones run on a plug-point thread: custom stores may block)."""
        if inspect.isgeneratorfunction(hook):
            return await self.run(hook(*args))
        return await call_any(hook, *args)

    async def answer(self, request: Request) -> Any:
        match request:
            case Search(query, where, limit):
                return await self.search(query, where, limit=limit)
            case Read(where, limit, offset, newest_first):
                return await asyncio.to_thread(
                    self.db.list_learnings,
                    where,
                    limit=limit,
                    offset=offset,
                    newest_first=newest_first,
                )
            case Get(learning_id):
                return await asyncio.to_thread(self.db.get_learning, learning_id)
            case Now():
                return await self.now()
            case Apply(ops, actor, run_id, turn_of):
                return await self.apply(ops, run_id=run_id, actor=actor, turn_of=turn_of)
        raise TypeError(f"not a learning request: {request!r}")

    # -------------------------------------------------------------- I/O

    async def now(self) -> datetime:
        return await asyncio.to_thread(self.db.now)

    async def search(self, query: str, where: LearningFilter, *, limit: int) -> list[SearchHit]:
        """Hybrid search in worker threads. With an embedder, the query is embedded while
        ``text_candidates`` runs (the full-text step and the texts query coverage reads): the
        model and the database work on different cores (MiniLM's traced forward pass is
        ~12-20 ms of one core, those reads ~6 ms at 1,000 memories), then the rest of the
        search runs with the query's vector."""
        if self.embedder is None or limit <= 0 or not query_terms(query):
            return await asyncio.to_thread(hybrid_search, self.db, None, query, where, limit=limit)
        (vector,), found = await asyncio.gather(
            self.embedder.embed([query]),
            asyncio.to_thread(text_candidates, self.db, query, where, limit=limit),
        )
        if found is None:
            return []
        return await asyncio.to_thread(
            rank_candidates, self.db, found, vector, query, where, limit=limit
        )

    async def embed(self, texts: Sequence[str]) -> list[bytes | None]:
        """float32 bytes per text (``None`` for an empty text or without an embedder), from
        one embedder call for all of them."""
        wanted = [t for t in texts if t]
        if self.embedder is None or not wanted:
            return [None] * len(texts)
        vectors = iter(await self.embedder.embed(wanted))
        return [next(vectors).astype("float32").tobytes() if t else None for t in texts]

    async def apply(
        self,
        ops: Sequence[WriteOp],
        *,
        run_id: str | None = None,
        actor: str,
        turn_of: str | None = None,
        job: JobRecord | None = None,
        strict: bool = True,
    ) -> list[LearningRecord]:
        """The learning layer's one apply: the write policy, one embedding batch for every new
        text, one transaction (with ``job``'s completion, when given).

        ``turn_of`` is the user whose turn the writes come from (extraction, agentic and
        propose tools, a chat confirmation, MCP): the shared-namespace policy applies
        (``kern.learn.policy``), refusing with ``SharedWriteError`` (``strict``) or dropping
        what it forbids with a warning (extraction: one forbidden operation must not fail the
        turn's learning). ``None``: the app's code or an admin."""
        writes = list(ops)
        if turn_of is not None:
            writes = await asyncio.to_thread(self._allowed, writes, turn_of, actor, strict)
        if not writes and job is None:
            return []
        texts = [_text(op) for op in writes]
        todo = [i for i, text in enumerate(texts) if text]
        for i, blob in zip(todo, await self.embed([texts[i] for i in todo]), strict=True):
            op = writes[i]
            assert isinstance(op, Create | Supersede | Update)
            writes[i] = replace(op, embedding=blob)
        return await asyncio.to_thread(self.db.apply, writes, run_id=run_id, actor=actor, job=job)

    def _allowed(self, ops: list[WriteOp], turn_of: str, actor: str, strict: bool) -> list[WriteOp]:
        ids = [op.id for op in ops if isinstance(op, Update | SetStatus | Supersede | Close)]
        rows = (self.db.get_learning(i) for i in dict.fromkeys(ids))
        current = {r.id: r for r in rows if r is not None}
        ops, refused = check_turn_writes(ops, current, turn_of, strict=strict)
        for reason in refused:
            log.warning("%s write of %s's turn not applied: %s", actor, turn_of, reason)
        return shared_as_proposals(ops) if self.shared_writes == "propose" else ops


def _text(op: WriteOp) -> str:
    """The text an op needs embedded ('' for none): new rows and new content, not keyed
    ``Put`` rows (profile fields and session contexts are never vector-searched)."""
    if isinstance(op, Create | Supersede) and op.embedding is None:
        return op.record.text
    if isinstance(op, Update) and op.embedding is None:
        return op.text
    return ""
