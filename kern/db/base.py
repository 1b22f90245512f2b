"""The storage contract the agent and the learning machine rely on.

Methods are synchronous and each is one short transaction; the async core calls them through
``asyncio.to_thread`` so a busy database never blocks the event loop. One implementation
(``kern.db.sql.SqlDb``) serves SQLite and PostgreSQL through SQLAlchemy Core.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

__all__ = ["Db", "RunRecord", "SessionRecord"]


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
