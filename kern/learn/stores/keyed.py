"""Stores whose rows are keyed: a profile (one row per field) and session contexts (one row
per session). A write is a ``Put`` on the key, so concurrent writers of different fields never
touch the same row and writers of one field serialise without losing a history event."""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any, ClassVar, cast

from pydantic import BaseModel, ConfigDict, Field, create_model

from kern._sync import syncify
from kern.context import RunContext
from kern.db.base import Create, LearningStatus, Put, SetStatus, WriteOp
from kern.learn.backend import Flow, Read
from kern.learn.config import LearningMode, SessionContextConfig, UserProfileConfig
from kern.learn.items import Item
from kern.learn.prompts import data_block, escape, profile_block
from kern.learn.schemas import SessionContext
from kern.learn.scope import session_scope, user_scope
from kern.learn.stores.base import ExtractionView, Recalled, Store, Turn
from kern.tools import Tool

__all__ = ["ProfileField", "SessionContextStore", "UserProfileStore"]


class ProfileField(BaseModel):
    """How one profile field is stored."""

    field: str
    value: Any


def partial(schema: type[BaseModel], name: str) -> type[BaseModel]:
    """``schema`` with every field optional (``None`` = leave unchanged), for updates."""
    fields: dict[str, Any] = {
        key: (cast(Any, info.annotation) | None, Field(None, description=info.description))
        for key, info in schema.model_fields.items()
    }
    return create_model(name, __config__=ConfigDict(extra="forbid"), **fields)


def _given(update: BaseModel) -> dict[str, Any]:
    """The fields an update sets (``None`` leaves a field unchanged), as JSON values."""
    return {k: v for k, v in update.model_dump(mode="json").items() if v is not None}


class UserProfileStore(Store[ProfileField]):
    """Structured facts about a user; the schema (custom fields included) is the contract."""

    name = "user_profile"
    config_class = UserProfileConfig
    kind = "field"

    def scope(self, ctx: RunContext) -> str:
        return user_scope(ctx.user_id)

    def schema_for(self, kind: str) -> type[BaseModel]:
        return ProfileField

    @functools.cached_property
    def updates(self) -> type[BaseModel]:
        """The schema with every field optional: the shape of an update (built once)."""
        return partial(self.schema, "profile_update")

    # -------------------------------------------------------------- direct API

    async def aget(self, *, user_id: str | None = None, as_of: datetime | None = None) -> BaseModel:
        """The user's profile as an instance of the store's schema: as it is now, or as it
        was at ``as_of`` (each field keeps its past values)."""
        fields = await self.afields(user_id=user_id, as_of=as_of)
        return self.schema.model_construct(**{i.data.field: i.data.value for i in fields})

    async def afields(
        self,
        *,
        user_id: str | None = None,
        status: LearningStatus = "active",
        as_of: datetime | None = None,
        include_past: bool = False,
    ) -> list[Item[ProfileField]]:
        """One item per stored field (with its id, version and dates): the current values, the
        values at ``as_of``, or with ``include_past`` every value each field has had, oldest
        first (past ones marked ``past``)."""
        ctx = self._context(user_id)
        return await self.backend.run(
            self._fields(ctx, status, as_of=as_of, include_past=include_past)
        )

    def _fields(
        self, ctx: RunContext, status: LearningStatus = "active", **time: Any
    ) -> Flow[list[Item[ProfileField]]]:
        where = self._where(ctx, kinds=self.kinds, statuses=(status,))
        return (yield from self._list(where, 1000, status=status, newest_first=False, **time))

    def _current(self, ctx: RunContext) -> Flow[dict[str, Any]]:
        """The current value of each field."""
        fields = yield from self._fields(ctx)
        return {i.data.field: i.data.value for i in fields}

    async def aupdate(
        self, values: dict[str, Any] | BaseModel, *, user_id: str | None = None
    ) -> BaseModel:
        """Set the given fields (validated against the schema); returns the new profile."""
        ctx = self._context(user_id)
        await self.backend.run(self._apply(ctx, self._puts(ctx, self._validate(values)), "api"))
        return await self.aget(user_id=user_id)

    async def adelete_field(self, field: str, *, user_id: str | None = None) -> None:
        """Delete a field's current value (it stays in history)."""
        ctx = self._context(user_id)
        for item in await self.afields(user_id=user_id):
            if item.data.field == field:
                await self.backend.run(
                    self._apply(ctx, [SetStatus(item.id, "deleted", "delete")], "api")
                )

    get = syncify(aget)
    fields = syncify(afields)
    update = syncify(aupdate)
    delete_field = syncify(adelete_field)

    def _validate(self, values: dict[str, Any] | BaseModel) -> dict[str, Any]:
        data = values.model_dump() if isinstance(values, BaseModel) else values
        return _given(self.updates.model_validate(data))

    def _puts(
        self, ctx: RunContext, values: dict[str, Any], status: LearningStatus = "active"
    ) -> list[WriteOp]:
        ops: list[WriteOp] = []
        for field, value in values.items():
            record = self._record(
                ctx, ProfileField(field=field, value=value), key=field, status=status
            )
            # A changed value supersedes the old one, so the field keeps its history in time.
            ops.append(Put(record, supersede=True) if status == "active" else Create(record))
        return ops

    # -------------------------------------------------------------- recall and tools

    def recall(self, ctx: RunContext) -> Flow[Recalled]:
        items = yield from self._fields(ctx)
        pending = yield from self._proposed(ctx, 1000, newest_first=False)
        return Recalled(items, pending)

    def build_context(self, recalled: Recalled) -> str:
        profile = {i.data.field: i.data.value for i in recalled.items}
        blocks = [
            profile_block("user_profile", profile),
            self._pending_block({"id": i.id, i.data.field: i.data.value} for i in recalled.pending),
        ]
        return "\n".join(b for b in blocks if b)

    def get_tools(self, ctx: RunContext) -> list[Tool]:
        if self.mode is LearningMode.ALWAYS:
            return []
        proposing = self.mode is LearningMode.PROPOSE
        return [
            self._save_tool(
                lambda ctx, data, status: self._puts(ctx, _given(data), status),
                proposing=proposing,
                name="propose_user_profile_update" if proposing else "update_user_profile",
                description=self.describe(
                    "Propose changes to the user's profile for them to approve."
                    if proposing
                    else "Save facts about the user in their profile; pass only fields to change."
                ),
                arguments=self.updates,
                saved=lambda records, data: (
                    "Saved profile fields: " + ", ".join(_given(data)) + "."
                ),
            )
        ]

    # -------------------------------------------------------------- extraction

    def extraction_view(self, ctx: RunContext, turn: Turn) -> Flow[ExtractionView | None]:
        if self.mode is not LearningMode.ALWAYS:
            return None
        current = yield from self._current(ctx)
        return ExtractionView(
            key=self.name,
            output=self.updates | None,
            guidance=self.describe(
                "set profile fields the user stated or corrected; leave the others null. "
                "Only change a stored value when the user gave a new one."
            ),
            data=escape(str(current)) if current else "(empty)",
        )

    def extraction_writes(
        self, value: Any, view: ExtractionView, ctx: RunContext
    ) -> Flow[list[WriteOp]]:
        if value is None:
            return []
        current = yield from self._current(ctx)
        return self._puts(ctx, {k: v for k, v in _given(value).items() if current.get(k) != v})


class SessionContextStore(Store[SessionContext]):
    """Summary, goal, plan and progress of one session, rewritten as the session moves on."""

    name = "session_context"
    config_class = SessionContextConfig
    kind = "session_context"
    key: ClassVar[str] = "context"

    def scope(self, ctx: RunContext) -> str:
        return session_scope(ctx.user_id, ctx.session_id)

    async def aget(self, session_id: str, *, user_id: str | None = None) -> SessionContext | None:
        """The session's context, if one was recorded."""
        item = await self.backend.run(self._current(self._context(user_id, session_id)))
        return item.data if item else None

    async def aset(
        self, session_id: str, context: dict[str, Any] | BaseModel, *, user_id: str | None = None
    ) -> BaseModel:
        """Merge the given fields into the session's context."""
        ctx = self._context(user_id, session_id)
        return await self.backend.run(self._merge(ctx, context, "api"))

    get = syncify(aget)
    set = syncify(aset)

    def _current(self, ctx: RunContext) -> Flow[Item[SessionContext] | None]:
        records = yield Read(self._where(ctx, key=self.key), limit=1)
        return self._item(records[0]) if records else None

    def _merge(
        self, ctx: RunContext, changes: dict[str, Any] | BaseModel, actor: str
    ) -> Flow[BaseModel]:
        """Merge ``changes`` into the stored context and write it; returns the merged one."""
        current = yield from self._current(ctx)
        base = current.data.model_dump() if current else {}
        new = (
            changes.model_dump(exclude_none=True)
            if isinstance(changes, BaseModel)
            else {k: v for k, v in changes.items() if v is not None}
        )
        data = self.schema.model_validate({**base, **new})
        yield from self._apply(ctx, [Put(self._record(ctx, data, key=self.key))], actor)
        return data

    def recall(self, ctx: RunContext) -> Flow[Recalled]:
        current = yield from self._current(ctx)
        return Recalled([current] if current else [])

    def build_context(self, recalled: Recalled) -> str:
        rows = [i.data.model_dump(exclude_none=True, exclude_defaults=True) for i in recalled.items]
        return data_block("session_context", "Where this session stands:", [r for r in rows if r])

    def get_tools(self, ctx: RunContext) -> list[Tool]:
        if self.mode is LearningMode.ALWAYS:
            return []

        def update_session_context(ctx: RunContext, data: BaseModel) -> Flow[str]:
            yield from self._merge(ctx, data, "tool")
            return "Session context saved."

        return [
            self._tool(
                update_session_context,
                name="update_session_context",
                description=self.describe(
                    "Record the session's summary, goal, plan or progress (pass only what changed)."
                ),
                arguments=partial(self.schema, "session_context_update"),
            )
        ]

    def extraction_view(self, ctx: RunContext, turn: Turn) -> Flow[ExtractionView | None]:
        if self.mode is not LearningMode.ALWAYS:
            return None
        current = yield from self._current(ctx)
        return ExtractionView(
            key=self.name,
            output=self.schema | None,
            guidance=self.describe(
                "the session's state after this exchange: summary, goal, plan, progress. Return "
                "the full updated state, or null if nothing about the session changed."
            ),
            data=escape(current.data.model_dump_json(exclude_defaults=True))
            if current
            else "(empty)",
        )

    def extraction_writes(
        self, value: Any, view: ExtractionView, ctx: RunContext
    ) -> Flow[list[WriteOp]]:
        if value is None:
            return []
        data = self.schema.model_validate(value.model_dump())
        return [Put(self._record(ctx, data, key=self.key))]
        yield  # a flow that asks for nothing
