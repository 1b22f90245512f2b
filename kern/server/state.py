"""What every route needs: the agent, its learning machine, and per-store access and models."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import HTTPException
from pydantic import BaseModel, ValidationError

from kern.agent import Agent
from kern.db.base import Db, LearningDb, LearningRecord
from kern.errors import ConfigError, NotFoundError
from kern.learn.machine import LearningMachine
from kern.server.access import StoreAccess, store_accesses
from kern.server.auth import Principal
from kern.server.schemas import StoreModels

__all__ = ["PRIVATE_STATUSES", "ServerState", "annotate", "may_see", "owner_filter", "validated"]

F = TypeVar("F", bound=Callable[..., Any])
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class ServerState:
    agent: Agent
    machine: LearningMachine | None
    accesses: dict[str, StoreAccess]
    models: dict[str, StoreModels]

    @classmethod
    def build(cls, agent: Agent) -> ServerState:
        machine = agent.get_learning_machine()
        accesses = store_accesses(machine)
        return cls(agent, machine, accesses, {n: StoreModels(a) for n, a in accesses.items()})

    @property
    def db(self) -> Db:
        return self.agent.db

    @property
    def learning_db(self) -> LearningDb:
        """Where learnings live: the machine's database (the agent's, unless it was given
        another one)."""
        if self.machine is not None:
            return self.machine.db
        if not isinstance(self.agent.db, LearningDb):
            raise ConfigError(f"{type(self.agent.db).__name__} cannot store learnings")
        return self.agent.db

    @property
    def one_db(self) -> Db:
        """The one database holding the agent's sessions and its learnings (export/import)."""
        if self.machine is not None and self.machine.db is not self.agent.db:
            raise ConfigError(
                "export and import need sessions and learnings in one database; this agent's "
                "LearningMachine was given a database of its own"
            )
        return self.agent.db

    def forget(self, user_id: str, *, keep_shared: bool = False) -> int:
        """``delete_user`` on every database holding the user's rows; ``keep_shared`` for a
        user token, which may not delete shared items (``LearningDb.delete_user``)."""
        databases: list[Db] = [self.agent.db]
        if self.machine is not None and self.machine.db is not self.agent.db:
            databases.append(self.machine.db)
        removed = 0
        for db in databases:
            if not isinstance(db, LearningDb):
                raise ConfigError(f"{type(db).__name__} cannot delete a user")
            removed += db.delete_user(user_id, keep_shared=keep_shared)
        return removed

    def record(
        self, access: StoreAccess, principal: Principal, user_id: str, item_id: str
    ) -> LearningRecord:
        """``access.get`` for this caller: another user's proposals stay hidden (404)."""
        record = access.get(user_id, item_id)
        if not may_see(principal, record):
            raise NotFoundError(f"No {access.name} item with id {item_id!r}.")
        return record

    def access(self, store: str) -> StoreAccess:
        access = self.accesses.get(store)
        if access is None:
            enabled = ", ".join(self.accesses) or "none"
            raise HTTPException(404, f"no store {store!r} with an item API (enabled: {enabled})")
        return access

    def check_session(self, user_id: str, session_id: str | None) -> None:
        """A session id given by a caller must be new or the user's own."""
        if session_id is None:
            return
        session = self.db.get_session(session_id)
        if session is not None and session.user_id not in (None, user_id):
            raise HTTPException(403, f"session {session_id!r} belongs to another user")

    @staticmethod
    def check_writable(
        access: StoreAccess, principal: Principal, user_id: str, session_id: str = ""
    ) -> None:
        """Shared-namespace rows are changed by admins only: a user token must not edit or
        delete what other users' agents rely on."""
        if access.shared(user_id, session_id) and not principal.is_admin:
            raise HTTPException(
                403, f"{access.name} items are shared between users: only admin tokens change them"
            )


#: Rows that were never shared knowledge: a user token sees only its own.
PRIVATE_STATUSES = frozenset({"proposed", "rejected"})


def owner_filter(principal: Principal, user_id: str, status: str) -> str | None:
    """For a user token listing proposed or rejected rows: only the user's own."""
    return user_id if not principal.is_admin and status in PRIVATE_STATUSES else None


def may_see(principal: Principal, record: LearningRecord) -> bool:
    """Another user's proposal in a shared namespace is not shared knowledge (yet)."""
    return (
        principal.is_admin
        or record.user_id == principal.user_id
        or record.status not in PRIVATE_STATUSES
    )


def annotate(function: F, **annotations: Any) -> F:
    """Give parameters (and ``return``) of ``function`` types built at runtime, for FastAPI,
    which reads ``inspect.signature``: per-store models cannot be written as annotations."""
    signature = inspect.signature(function)
    parameters = [
        p.replace(annotation=annotations[p.name]) if p.name in annotations else p
        for p in signature.parameters.values()
    ]
    function.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=parameters,
        return_annotation=annotations.get("return", signature.return_annotation),
    )
    return function


def validated(schema: type[M], data: Any) -> M:
    """``schema.model_validate(data)``, with a failure answered as 422 (the caller's input)."""
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        raise HTTPException(
            422, exc.errors(include_url=False, include_context=False, include_input=False)
        ) from None
