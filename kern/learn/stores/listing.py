"""``ListStore``: a store holding a list of items of one schema.

Memories, learnings, decisions and entities are list stores: the direct API (add, get, list,
update, delete, search), hybrid recall within the budget, the agentic and propose tools, and
extraction as list operations (add / update / delete by id) live here, once.
"""

from __future__ import annotations

import builtins
import functools
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any, ClassVar

from pydantic import BaseModel, Field, create_model

from kern._sync import syncify
from kern.context import RunContext
from kern.db.base import (
    Close,
    Create,
    LearningRecord,
    LearningStatus,
    SetStatus,
    Supersede,
    WriteOp,
)
from kern.errors import ConfigError
from kern.learn.backend import Flow, Get, Now, Read, Search
from kern.learn.config import LearningMode
from kern.learn.distinct import distinct
from kern.learn.items import Item
from kern.learn.prompts import data_block
from kern.learn.scope import USER
from kern.learn.stores.base import ExtractionView, Recalled, S, Store, Turn
from kern.learn.timeline import (
    TimeScope,
    at_day_start,
    is_current,
    past_question,
    time_fields,
    time_scope,
)
from kern.tools import Tool

__all__ = ["ListStore"]


class ListStore(Store[S]):
    """A store holding a list of items of one schema (memories, learnings, decisions).

    Gives the direct API (add, get, list, update, delete, search), hybrid recall, tools for
    agentic and propose modes, and list operations for extraction.
    """

    #: The content field a plain string goes into (``add("...")``).
    text_field: ClassVar[str] = "content"
    noun: ClassVar[str]
    plural: ClassVar[str]
    #: Tool names by operation; defaults are add_<noun>, update_<noun>, delete_<noun>,
    #: search_<plural>, propose_<noun>.
    tool_names: ClassVar[dict[str, str]] = {}

    def tool_name(self, operation: str) -> str:
        noun = self.plural if operation == "search" else self.noun
        return self.tool_names.get(operation, f"{operation}_{noun.replace(' ', '_')}")

    # -------------------------------------------------------------- direct API

    async def aadd(
        self,
        content: str | S | dict[str, Any],
        *,
        user_id: str | None = None,
        session_id: str | None = None,
        created_at: datetime | None = None,
        metadata: dict[str, Any] | None = None,
        valid_from: datetime | None = None,
        valid_to: datetime | None = None,
        expires_at: datetime | None = None,
        pinned: bool = False,
    ) -> Item[S]:
        """Store a new item now (no model involved) and return it. ``valid_from`` and
        ``valid_to`` say when it held in the world (``None``: unknown, or still true);
        ``expires_at`` ends its recall; ``pinned`` keeps it from the curator."""
        return await self._acreate(
            self._context(user_id, session_id),
            self.coerce(content),
            created_at=created_at,
            metadata=metadata,
            valid_from=valid_from,
            valid_to=valid_to,
            expires_at=expires_at,
            pinned=pinned,
        )

    async def _acreate(self, ctx: RunContext, data: BaseModel, **row: Any) -> Item[S]:
        """One new row by the direct API (no model involved)."""
        record = self._record(ctx, data, **row)
        (saved,) = await self.backend.run(self._apply(ctx, [Create(record)], "api"))
        return self._item(saved)

    async def asupersede(
        self,
        item_id: str,
        content: str | S | dict[str, Any],
        *,
        user_id: str | None = None,
        valid_from: datetime | None = None,
    ) -> Item[S]:
        """Replace a fact that changed ("I moved to Berlin"): in one transaction the old item
        ends (``valid_to`` = ``valid_from``, status ``superseded``, ``superseded_by`` the new
        item) and the new one, returned, holds from ``valid_from`` (default: now). Both stay
        readable, with history; use ``update`` instead to correct a mistake."""
        ctx = self._context(user_id)

        def successor(current: LearningRecord) -> WriteOp:
            data = self.coerce(content, kind=current.kind)
            record = self._record(
                ctx,
                data,
                kind=current.kind,
                metadata=current.metadata,
                valid_from=valid_from,
                pinned=current.pinned,
            )
            return _supersede(current, record)

        return self._item(await self.backend.run(self._change(ctx, item_id, successor, "api")))

    async def aclose(
        self, item_id: str, *, user_id: str | None = None, valid_to: datetime | None = None
    ) -> Item[S]:
        """End a fact with no successor ("I no longer have a dog") at ``valid_to`` (default:
        now). It stays readable as a past fact."""
        ctx = self._context(user_id)
        flow = self._change(ctx, item_id, lambda current: Close(current.id, valid_to), "api")
        return self._item(await self.backend.run(flow))

    async def aget(self, item_id: str, *, user_id: str | None = None) -> Item[S] | None:
        """The item if it exists and is visible to ``user_id``'s scope, else ``None``."""
        ctx = self._context(user_id)
        record = await self.backend.answer(Get(item_id))
        if record is None or record.store != self.name or record.scope != self.scope(ctx):
            return None
        return self._item(record)

    async def alist(
        self,
        *,
        user_id: str | None = None,
        limit: int = 50,
        offset: int = 0,
        status: LearningStatus = "active",
        as_of: datetime | None = None,
        include_past: bool = False,
    ) -> builtins.list[Item[S]]:
        """Items newest first: those true now, by default (not superseded, closed or expired);
        ``as_of`` those that held then, ``include_past`` all, past ones marked ``past``. Any
        other ``status`` lists rows of that status, whatever their time."""
        where = self._where(self._context(user_id), kinds=self.kinds, statuses=(status,))
        return await self.backend.run(
            self._list(where, limit, offset, status, as_of=as_of, include_past=include_past)
        )

    async def aupdate(
        self,
        item_id: str,
        content: str | S | dict[str, Any],
        *,
        user_id: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Item[S]:
        """Correct an item's content (validated against its kind's schema)."""

        def corrected(current: LearningRecord) -> WriteOp:
            return self._update(current, self.coerce(content, kind=current.kind), metadata)

        flow = self._change(self._context(user_id), item_id, corrected, "api")
        return self._item(await self.backend.run(flow))

    async def adelete(self, item_id: str, *, user_id: str | None = None) -> None:
        """Delete an item (it stays in history)."""
        await self.backend.run(self._delete(self._context(user_id), item_id, "api"))

    def _delete(self, ctx: RunContext, item_id: str, actor: str) -> Flow[LearningRecord]:
        return self._change(ctx, item_id, lambda row: SetStatus(row.id, "deleted", "delete"), actor)

    async def asearch(
        self,
        query: str,
        *,
        user_id: str | None = None,
        limit: int = 10,
        as_of: datetime | None = None,
        include_past: bool = False,
    ) -> builtins.list[Item[S]]:
        """Hybrid search (full-text, plus vectors when an embedder is set) in the scope, among
        the items true now; ``as_of`` searches what held then, ``include_past`` everything
        (items that no longer hold are marked ``past``)."""
        ctx = self._context(user_id)
        flow = self._search(ctx, query, limit, as_of=as_of, include_past=include_past)
        return await self.backend.run(flow)

    add = syncify(aadd)
    supersede = syncify(asupersede)
    close = syncify(aclose)
    get = syncify(aget)
    list = syncify(alist)
    update = syncify(aupdate)
    delete = syncify(adelete)
    search = syncify(asearch)

    def coerce(self, content: str | S | dict[str, Any], *, kind: str | None = None) -> S:
        """Accept a string (the main text field), a dict or a schema instance, validated
        against the schema of ``kind`` (default: the store's main kind)."""
        schema = self.schema_for(kind or self.kind)
        if isinstance(content, str):
            required = [
                n
                for n, f in schema.model_fields.items()
                if f.is_required() and n != self.text_field
            ]
            if required or self.text_field not in schema.model_fields:
                raise ConfigError(
                    f"{self.name}: a plain string fills only {self.text_field!r}; pass a dict "
                    f"or a {schema.__name__} with {', '.join(required)} too"
                )
            return schema.model_validate({self.text_field: content})  # type: ignore[return-value]
        if isinstance(content, dict):
            return schema.model_validate(content)  # type: ignore[return-value]
        if isinstance(content, schema):
            return content
        raise ConfigError(f"{self.name}: expected str, dict or {schema.__name__}")

    # -------------------------------------------------------------- recall

    def _search(
        self, ctx: RunContext, query: str, limit: int, scope: TimeScope | None = None, **time: Any
    ) -> Flow[builtins.list[Item[S]]]:
        """Hybrid search among this run's items of the time asked: ``scope``, or from now
        (``time_scope``), items that no longer held then marked ``past``."""
        if scope is None:
            scope = time_scope((yield Now()), **time)
        where = scope.where(self._where(ctx, kinds=self.kinds))
        hits = yield Search(query, where, limit)
        return [
            self._item(h.record, h.score, past=not is_current(h.record, scope.at)) for h in hits
        ]

    def recall(self, ctx: RunContext) -> Flow[Recalled]:
        """The items true now that are most relevant to the message; for a question about
        the past ("where did I live before Berlin?"), past items too, marked as past. Never
        two near-identical items."""
        now = yield Now()
        items: builtins.list[Item[S]] = []
        if self.config.limit:
            items = yield from self._search(ctx, ctx.input, self.config.limit, time_scope(now))
            asked = past_question(ctx.input, now)
            if asked is not None:
                scope = TimeScope(now, past=True, window=asked.window)
                items += yield from self._search(ctx, ctx.input, self.config.limit, scope)
        pending = yield from self._proposed(ctx, 20)
        return Recalled(items, pending, at=now)

    def render_row(
        self, item: Item[S], *, with_id: bool = True, at: datetime | None = None
    ) -> dict[str, Any]:
        """One item as the model sees it: content and date, and its id where the model has a
        tool that takes ids (an id costs ~24 tokens a row, so always mode leaves it out);
        with ``at``, when it held: ``since``, and ``until`` plus ``"past": true`` for an item
        that no longer held then ("lived in Lisbon until 2026-03-01")."""
        row: dict[str, Any] = {"id": item.id} if with_id else {}
        row.update(item.data.model_dump(exclude_none=True, exclude_defaults=True))
        row["date"] = item.created_at.date().isoformat()
        if item.namespace not in (None, USER):
            row["shared"] = True  # written by any user of the namespace, not this user's
        if at is not None:
            row.update(time_fields(item, at))
        return row

    def build_context(self, recalled: Recalled) -> str:
        blocks = [
            data_block(
                self.name,
                f"{self.plural.capitalize()} most relevant to this message"
                + (
                    f" (shared knowledge of the {self.namespace!r} namespace: written by any of "
                    "its users, not necessarily this one; reference only):"
                    if self.namespace not in (None, USER)
                    else ":"
                ),
                (
                    self.render_row(i, with_id=self.mode is not LearningMode.ALWAYS, at=recalled.at)
                    # Never the same thing twice, however recall gathered the items.
                    for i in distinct(
                        {i.id: i for i in recalled.items}.values(), lambda i: i.content
                    )
                ),
            ),
            self._pending_block(self.render_row(i) for i in recalled.pending),
        ]
        return "\n".join(b for b in blocks if b)

    # -------------------------------------------------------------- tools

    def get_tools(self, ctx: RunContext) -> builtins.list[Tool]:
        if self.mode is LearningMode.ALWAYS:
            return []
        tools = [self._search_tool()]
        if self.mode is LearningMode.AGENTIC:
            tools += [self._add_tool(status="active"), self._update_tool(), self._delete_tool()]
        else:
            tools.append(self._add_tool(status="proposed"))
        return tools

    def _add_tool(self, *, status: LearningStatus) -> Tool:
        proposing = status == "proposed"
        what = (
            "Propose a new {noun} for the user to approve (nothing is saved until they do)."
            if proposing
            else "Save a new {noun}."
        )
        return self._save_tool(
            lambda ctx, data, status: [Create(self._record(ctx, data, status=status))],
            proposing=proposing,
            name=self.tool_name("propose" if proposing else "add"),
            description=self.describe(what.format(noun=self.noun)),
            arguments=self.schema,
            saved=lambda records, data: f"Saved {self.noun} {records[0].id}.",
        )

    def _update_tool(self) -> Tool:
        arguments = create_model(
            f"update_{self.kind}_arguments",
            __base__=self.schema,
            id=(str, Field(description=f"The id of the {self.noun} to change")),
        )

        def update(ctx: RunContext, data: BaseModel) -> Flow[str]:
            content = self.schema.model_validate(data.model_dump(exclude={"id"}))
            item_id: str = data.id  # type: ignore[attr-defined]
            yield from self._change(ctx, item_id, lambda row: self._update(row, content), "tool")
            return f"Updated {self.noun} {item_id}."

        return self._tool(
            update,
            name=self.tool_name("update"),
            description=self.describe(f"Replace the content of a stored {self.noun}, by id."),
            arguments=arguments,
        )

    def _delete_tool(self) -> Tool:
        arguments = create_model(
            f"delete_{self.kind}_arguments",
            id=(str, Field(description=f"The id of the {self.noun} to delete")),
        )

        def delete(ctx: RunContext, data: BaseModel) -> Flow[str]:
            current = yield from self._delete(ctx, data.id, "tool")  # type: ignore[attr-defined]
            return f"Deleted {self.noun} {current.id}."

        return self._tool(
            delete,
            name=self.tool_name("delete"),
            description=self.describe(
                f"Delete a stored {self.noun} that is wrong or obsolete, by id."
            ),
            arguments=arguments,
        )

    def _search_tool(self) -> Tool:
        arguments = create_model(
            f"search_{self.kind}_arguments",
            query=(str, Field(description="What to look for")),
            limit=(int, Field(5, ge=1, le=20, description="How many results")),
        )

        def search(ctx: RunContext, data: BaseModel) -> Flow[builtins.list[dict[str, Any]]]:
            items = yield from self._search(ctx, data.query, data.limit)  # type: ignore[attr-defined]
            return [self.render_row(i) for i in items]

        return self._tool(
            search,
            name=self.tool_name("search"),
            description=f"Search stored {self.plural}.",
            arguments=arguments,
        )

    # -------------------------------------------------------------- extraction

    #: How many similar items extraction sees (to update or deduplicate against).
    extraction_neighbours: ClassVar[int] = 10
    #: For the most similar few, how many items related to each are shown too, so a change
    #: can close the facts that depended on the old one (moved city: the old gym).
    extraction_related: ClassVar[tuple[int, int]] = (3, 3)

    def extraction_guidance(self) -> str:
        return f"{self.plural}: add new ones, update or delete existing ones by number."

    @functools.cached_property
    def extraction_output(self) -> Any:
        """The type of this store's part of the extraction answer (built once: the combined
        schema is cached by these types)."""
        kind = self.kind
        new = create_model(f"{kind}_new", __base__=self.schema, **_TIMES)
        updated = create_model(f"{kind}_update", __base__=self.schema, id=_NUMBER)
        superseding = create_model(
            f"{kind}_supersede", __base__=self.schema, id=_NUMBER, valid_from=_TIMES["valid_from"]
        )
        closing = create_model(f"{kind}_close", id=_NUMBER, valid_to=_TIMES["valid_to"])
        return _operations(
            f"{kind}_operations",
            add=(new, None),
            update=(updated, "Corrections of wrong items"),
            delete=(int, None),
            supersede=(superseding, "Items that changed: the new content replaces item id"),
            close=(closing, "Items no longer true, with nothing replacing them"),
        )

    def extraction_items(self, ctx: RunContext, turn: Turn) -> Flow[builtins.list[Item[S]]]:
        """What extraction is shown: the current items most similar to the turn, and for the
        few most similar, the items most related to each (the facts a change may end), topped
        up with the newest ones up to ``extraction_neighbours``."""
        now = time_scope((yield Now()))
        similar = yield from self._search(
            ctx, f"{turn.user}\n{turn.assistant}", self.extraction_neighbours, now
        )
        top, each = self.extraction_related
        related: builtins.list[Item[S]] = []
        for hit in similar[:top]:
            related += yield from self._search(ctx, hit.content, each + 1, now)
        shown = list({i.id: i for i in [*similar, *related]}.values())
        # A change often shares no word with what it changes ("I moved to Vienna" and "lives
        # in Dublin"): the newest items fill the view.
        return (yield from self._topped_up(ctx, shown, self.extraction_neighbours, now))

    def _topped_up(
        self, ctx: RunContext, items: Sequence[Item[S]], size: int, now: TimeScope
    ) -> Flow[builtins.list[Item[S]]]:
        """``items``, then the newest current items not among them, up to ``size`` in all."""
        missing = size - len(items)
        if missing <= 0:
            return builtins.list(items)
        seen = {i.id for i in items}
        recent = yield Read(now.where(self._where(ctx, kinds=self.kinds)), limit=size)
        return [*items, *[self._item(r) for r in recent if r.id not in seen][:missing]]

    def extraction_view(self, ctx: RunContext, turn: Turn) -> Flow[ExtractionView | None]:
        if self.mode is not LearningMode.ALWAYS:
            return None
        shown = yield from self.extraction_items(ctx, turn)
        local_ids = {n: item.id for n, item in enumerate(shown, 1)}
        rows = [
            f"[{n}] " + item.content + _held(item) for n, item in zip(local_ids, shown, strict=True)
        ]
        return ExtractionView(
            key=self.name,
            output=self.extraction_output,
            guidance=self.describe(self.extraction_guidance()),
            data="\n".join(rows) or "(none stored yet)",
            local_ids=local_ids,
            at=turn.date,
            dated_items=True,
        )

    def extraction_writes(
        self, value: Any, view: ExtractionView, ctx: RunContext
    ) -> Flow[builtins.list[WriteOp]]:
        if value is None:
            return []
        writes: builtins.list[WriteOp] = []
        touched: set[str] = set()
        # The rows the answer names, read once and fresh (one read, not one per operation).
        named = [view.local_ids.get(c.id) for c in [*value.update, *value.supersede, *value.close]]
        named += [view.local_ids.get(n) for n in value.delete]
        wanted = builtins.list(dict.fromkeys(i for i in named if i is not None))
        rows: dict[str, LearningRecord] = {}
        if wanted:
            records = yield Read(self._where(ctx, ids=wanted), limit=len(wanted))
            rows = {r.id: r for r in records}

        def target(number: int) -> LearningRecord | None:
            """The active row shown as ``number``, once per answer; invented or repeated
            numbers are ignored, never guessed."""
            item_id = view.local_ids.get(number)
            if item_id is None or item_id in touched:
                return None
            touched.add(item_id)
            return rows.get(item_id)

        for data in value.add:
            writes.append(Create(self._answered(ctx, self.kind, data.model_dump(), view.at)))
        for change in value.update:
            if (current := target(change.id)) is not None:
                content = self.schema.model_validate(change.model_dump(exclude={"id"}))
                writes.append(self._update(current, content))
        for change in value.supersede:
            if (current := target(change.id)) is not None:
                fields = change.model_dump(exclude={"id"})
                record = self._answered(ctx, current.kind, fields, pinned=current.pinned)
                writes.append(_supersede(current, record))
        for change in value.close:
            if (current := target(change.id)) is not None:
                writes.append(Close(current.id, at_day_start(change.valid_to)))
        for number in value.delete:
            if (current := target(number)) is not None:
                writes.append(SetStatus(current.id, "deleted", "delete"))
        return writes

    def _answered(
        self,
        ctx: RunContext,
        kind: str,
        fields: dict[str, Any],
        at: datetime | None = None,
        **row: Any,
    ) -> LearningRecord:
        """A new row from an item of the extraction answer: its dates are the row's, taken out
        of the content before validation; an expiry not after ``at`` (the turn's date) is a
        misread date, not a fact to hide, and is dropped."""
        times: dict[str, Any] = {k: at_day_start(fields.pop(k, None)) for k in _TIMES}
        ends = times["expires_at"]
        if ends is not None and at is not None and ends <= at:
            times["expires_at"] = None
        data = self.schema_for(kind).model_validate(fields)
        return self._record(ctx, data, kind=kind, **times, **row)


def _operations(name: str, **lists: tuple[Any, str | None]) -> Any:
    """A store's part of the extraction answer: lists of operations, each empty by default."""
    fields: dict[str, Any] = {
        key: (list[item], Field(default_factory=list, description=text))  # type: ignore[valid-type]
        for key, (item, text) in lists.items()
    }
    return create_model(name, **fields) | None


def _supersede(current: LearningRecord, record: LearningRecord) -> Supersede:
    """``record`` replaces ``current`` (compare-and-swap on its version)."""
    return Supersede(current.id, record, expected_version=current.version)


_NUMBER: Any = (int, Field(description="Item number"))
_DAY_HINT = "YYYY-MM-DD, resolved against the exchange's date"
_TIMES: dict[str, Any] = {
    "valid_from": (
        date | None,
        Field(None, description=f"Since when it holds, if stated ({_DAY_HINT})"),
    ),
    "valid_to": (
        date | None,
        Field(None, description=f"When it stopped or stops holding, if stated ({_DAY_HINT})"),
    ),
    "expires_at": (
        date | None,
        Field(None, description=f"For short-lived facts: the day after it ends ({_DAY_HINT})"),
    ),
}


def _held(item: Item[Any]) -> str:
    """When a shown item holds, in a few words (" (since 2025-03-01)")."""
    parts = []
    if item.valid_from is not None:
        parts.append(f"since {item.valid_from.date().isoformat()}")
    if item.valid_to is not None:
        parts.append(f"until {item.valid_to.date().isoformat()}")
    if item.expires_at is not None:
        parts.append(f"expires {item.expires_at.date().isoformat()}")
    return f" ({'; '.join(parts)})" if parts else ""
