"""What the REST API may see and change in a store, decided by the store's own ``scope``.

A ``StoreAccess`` answers, for a user: which rows are visible (exactly those whose ``scope``
equals the key the store computes for that user, as in a run), whether the store's scope is
shared with other users (a namespace such as ``"global"``), and performs item writes through
``LearningDb.apply`` so every change is one history event, as everywhere else in kern.

Nothing here hard-codes store names: a scope is *shared* when the store computes the same key
for two different users, and *per session* when it computes different keys for two sessions
of one user. Custom ``Store`` subclasses get the same rules.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from kern._sync import run_sync
from kern.context import RunContext
from kern.db.base import (
    Create,
    LearningDb,
    LearningFilter,
    LearningRecord,
    LearningStatus,
    SetStatus,
    Update,
)
from kern.errors import NotFoundError
from kern.learn.items import Item, content_hash, new_id, text_of
from kern.learn.machine import LearningMachine
from kern.learn.stores import ListStore, SessionContextStore, Store, UserProfileStore

__all__ = ["ALL_STATUSES", "StoreAccess", "store_accesses"]

ALL_STATUSES: tuple[LearningStatus, ...] = (
    "active",
    "proposed",
    "superseded",
    "deleted",
    "rejected",
)

# Two ids no real user or session has (NUL cannot come through a URL path or a JSON id here):
# used only to ask a store whether its key depends on the user or on the session.
_PROBE_USER = "\x00kern-probe-user"
_PROBE_SESSIONS = ("\x00kern-probe-a", "\x00kern-probe-b")


def store_accesses(machine: LearningMachine | None) -> dict[str, StoreAccess]:
    """One ``StoreAccess`` per store that has rows kern can address (``Store`` subclasses);
    protocol-only custom stores keep their data their own way and get no item API."""
    if machine is None:
        return {}
    return {
        name: StoreAccess(store, machine)
        for name, store in machine.stores.items()
        if isinstance(store, Store)
    }


@dataclass(frozen=True, slots=True)
class StoreAccess:
    store: Store[Any]
    machine: LearningMachine

    @property
    def name(self) -> str:
        return self.store.name

    @property
    def db(self) -> LearningDb:
        return self.machine.db

    @property
    def kinds(self) -> list[str]:
        return list(self.store.kinds)

    @property
    def is_profile(self) -> bool:
        return isinstance(self.store, UserProfileStore)

    @property
    def is_session_context(self) -> bool:
        return isinstance(self.store, SessionContextStore)

    @property
    def is_list(self) -> bool:
        return isinstance(self.store, ListStore)

    def context(self, user_id: str, session_id: str = "") -> RunContext:
        return RunContext(
            run_id="", session_id=session_id, user_id=user_id, agent_id=self.machine.agent_id
        )

    def scope(self, user_id: str, session_id: str = "") -> str:
        return self.store.scope(self.context(user_id, session_id))

    @property
    def per_session(self) -> bool:
        a, b = (self.scope(_PROBE_USER, s) for s in _PROBE_SESSIONS)
        return a != b

    def shared(self, user_id: str, session_id: str = "") -> bool:
        """Whether ``user_id``'s key for this store is also another user's key."""
        return self.scope(user_id, session_id) == self.scope(_PROBE_USER, session_id)

    # -------------------------------------------------------------- reads

    def visible(self, record: LearningRecord, user_id: str) -> bool:
        return record.store == self.name and record.scope == self.scope(
            user_id, record.session_id or ""
        )

    def where(
        self,
        user_id: str,
        *,
        statuses: Sequence[LearningStatus] = ("active",),
        kinds: Sequence[str] | None = None,
        session_id: str | None = None,
        owner: str | None = None,
    ) -> LearningFilter:
        """The rows of this store ``user_id`` may read (of ``owner`` only, if given). A
        per-session store's rows are found by owner and then each checked against its
        session's key (``visible``)."""
        if owner is not None and owner != user_id:
            return LearningFilter(store=self.name, scopes=[], statuses=statuses)
        if self.per_session:
            if session_id is not None:
                scopes: list[str] | None = [self.scope(user_id, session_id)]
                return LearningFilter(
                    store=self.name, scopes=scopes, kinds=kinds, statuses=statuses
                )
            return LearningFilter(store=self.name, user_id=user_id, kinds=kinds, statuses=statuses)
        return LearningFilter(
            store=self.name,
            scopes=[self.scope(user_id)],
            kinds=kinds,
            statuses=statuses,
            session_id=session_id,
            user_id=owner,
        )

    def list(
        self,
        user_id: str,
        *,
        statuses: Sequence[LearningStatus],
        kinds: Sequence[str] | None,
        query: str | None,
        limit: int,
        offset: int,
        session_id: str | None = None,
        owner: str | None = None,
    ) -> tuple[list[Item[Any]], int | None]:
        """A page of items (newest first, or best first for a search) and the total count
        (``None`` for a search: ranking has no cheap total)."""
        where = self.where(
            user_id, statuses=statuses, kinds=kinds, session_id=session_id, owner=owner
        )
        if query:
            hits = run_sync(self.machine.backend.search(query, where, limit=limit + offset))
            hits = hits[offset:]
            items = [self.item(h.record, h.score) for h in hits if self.visible(h.record, user_id)]
            return items, None
        records = self.db.list_learnings(where, limit=limit, offset=offset)
        total = self.db.count_learnings(where)
        return [self.item(r) for r in records if self.visible(r, user_id)], total

    def get(self, user_id: str, item_id: str) -> LearningRecord:
        """The row, whatever its status, if ``user_id`` may see it; ``NotFoundError`` alike
        for a missing row and another user's, so ids leak nothing."""
        record = self.db.get_learning(item_id)
        if record is None or not self.visible(record, user_id):
            raise NotFoundError(f"No {self.name} item with id {item_id!r}.")
        return record

    def item(self, record: LearningRecord, score: float | None = None) -> Item[Any]:
        return Item.from_record(record, self.store.schema_for(record.kind), score=score)

    # -------------------------------------------------------------- writes

    def create(
        self,
        user_id: str,
        kind: str,
        data: BaseModel,
        *,
        session_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        created_at: datetime | None = None,
    ) -> Item[Any]:
        """A new active row of ``kind`` in ``user_id``'s scope (list stores)."""
        ctx = self.context(user_id, session_id or "")
        content = data.model_dump(mode="json")
        record = LearningRecord(
            id=new_id(),
            store=self.name,
            kind=kind,
            scope=self.store.scope(ctx),
            content=content,
            text=text_of(data),
            user_id=user_id,
            session_id=session_id,
            agent_id=self.machine.agent_id,
            namespace=self.store.namespace,
            content_hash=content_hash(kind, content),
            created_at=created_at,
            metadata=dict(metadata or {}),
        )
        # The learning layer's one apply: it embeds the new text in the same call.
        (saved,) = run_sync(self.machine.backend.apply([Create(record)], actor="api"))
        return self.item(saved)

    def update(
        self,
        record: LearningRecord,
        data: BaseModel,
        *,
        metadata: dict[str, Any] | None = None,
        expected_version: int | None = None,
    ) -> Item[Any]:
        """New content for an active row; with ``expected_version`` a compare-and-swap
        (``ConflictError`` when the row changed meanwhile)."""
        content = data.model_dump(mode="json")
        text = text_of(data)
        op = Update(
            id=record.id,
            content=content,
            text=text,
            content_hash=content_hash(record.kind, content),
            expected_version=expected_version,
            metadata=metadata,
        )
        (saved,) = run_sync(self.machine.backend.apply([op], actor="api"))
        return self.item(saved)

    def delete(self, record: LearningRecord) -> Item[Any]:
        (saved,) = self.db.apply([SetStatus(record.id, "deleted", "delete")], actor="api")
        return self.item(saved)

    def restore(self, record: LearningRecord) -> Item[Any]:
        """A deleted row active again (a ``restore`` history event); ``ConflictError`` when it
        is not deleted, or when another row now holds its key (a profile field set since)."""
        op = SetStatus(record.id, "active", "restore", from_statuses=("deleted",))
        (saved,) = self.db.apply([op], actor="api")
        return self.item(saved)

    def set_profile_field(self, user_id: str, field: str, value: Any) -> Item[Any] | None:
        """Through the profile store's own API (a keyed ``Put``, validated by its schema)."""
        assert isinstance(self.store, UserProfileStore)
        self.store.update({field: value}, user_id=user_id)
        return self.current(user_id, field)

    @property
    def profile_updates(self) -> type[BaseModel]:
        """The profile schema with every field optional (what a profile update accepts)."""
        assert isinstance(self.store, UserProfileStore)
        return self.store.updates

    def merge_session_context(
        self, user_id: str, session_id: str, changes: dict[str, Any]
    ) -> Item[Any] | None:
        """Through the session context store's own API (merge, then a keyed ``Put``)."""
        assert isinstance(self.store, SessionContextStore)
        self.store.set(session_id, changes, user_id=user_id)
        return self.current(user_id, self.store.key, session_id)

    def current(self, user_id: str, key: str, session_id: str = "") -> Item[Any] | None:
        """The active row of a keyed item (a profile field, a session's context)."""
        where = replace(self.where(user_id, session_id=session_id or None), key=key)
        records = self.db.list_learnings(where, limit=1)
        return self.item(records[0]) if records else None
