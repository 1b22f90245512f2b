"""``ListStore``: a store holding a list of items of one schema.

Memories, learnings, decisions and entities are list stores: the direct API (add, get, list,
update, delete, search), hybrid recall within the budget, the agentic and propose tools, and
extraction as list operations (add / update / delete by id) live here, once.
"""

from __future__ import annotations

import builtins
import functools
from datetime import datetime
from typing import Any, ClassVar

from pydantic import BaseModel, Field, create_model

from kern._sync import syncify
from kern.context import RunContext
from kern.db.base import Create, LearningStatus, SetStatus, WriteOp
from kern.errors import ConfigError
from kern.learn.backend import Flow, Get, Read, Search
from kern.learn.config import LearningMode
from kern.learn.items import Item
from kern.learn.prompts import data_block
from kern.learn.stores.base import ExtractionView, Recalled, S, Store, Turn
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
    ) -> Item[S]:
        """Store a new item now (no model involved) and return it."""
        ctx = self._context(user_id, session_id)
        record = self._record(ctx, self.coerce(content), created_at=created_at, metadata=metadata)
        (saved,) = await self.backend.apply([Create(record)], actor="api")
        return self._item(saved)

    async def aget(self, item_id: str, *, user_id: str | None = None) -> Item[S] | None:
        """The item if it exists and is visible to ``user_id``'s scope, else ``None``."""
        record = await self.backend.answer(Get(item_id))
        ctx = self._context(user_id)
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
    ) -> builtins.list[Item[S]]:
        """Items newest first."""
        where = self._where(self._context(user_id), kinds=self.kinds, statuses=(status,))
        records = await self.backend.answer(Read(where, limit=limit, offset=offset))
        return [self._item(r) for r in records]

    async def aupdate(
        self,
        item_id: str,
        content: str | S | dict[str, Any],
        *,
        user_id: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Item[S]:
        """Replace an item's content (validated against its kind's schema)."""
        ctx = self._context(user_id)
        current = await self.backend.run(self._owned(ctx, item_id))
        data = self.coerce(content, kind=current.kind)
        (saved,) = await self.backend.apply([self._update(current, data, metadata)], actor="api")
        return self._item(saved)

    async def adelete(self, item_id: str, *, user_id: str | None = None) -> None:
        """Delete an item (it stays in history)."""
        current = await self.backend.run(self._owned(self._context(user_id), item_id))
        await self.backend.apply([SetStatus(current.id, "deleted", "delete")], actor="api")

    async def asearch(
        self, query: str, *, user_id: str | None = None, limit: int = 10
    ) -> builtins.list[Item[S]]:
        """Hybrid search (full-text, plus vectors when an embedder is set) in the scope."""
        return await self.backend.run(self._search(self._context(user_id), query, limit))

    add = syncify(aadd)
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

    def _search(self, ctx: RunContext, query: str, limit: int) -> Flow[builtins.list[Item[S]]]:
        hits = yield Search(query, self._where(ctx, kinds=self.kinds), limit)
        return [self._item(h.record, h.score) for h in hits]

    def recall(self, ctx: RunContext) -> Flow[Recalled]:
        items = (
            (yield from self._search(ctx, ctx.input, self.config.limit))
            if self.config.limit
            else []
        )
        pending: builtins.list[Item[S]] = []
        if self.mode is LearningMode.PROPOSE:
            where = self._where(ctx, kinds=self.kinds, statuses=("proposed",))
            records = yield Read(where, limit=20)
            pending = [self._item(r) for r in records if r.session_id == ctx.session_id]
        return Recalled(items, pending)

    def render_row(self, item: Item[S], *, with_id: bool = True) -> dict[str, Any]:
        """One item as the model sees it: content and date, and its id where the model has a
        tool that takes ids (an id costs ~24 tokens a row, so always mode leaves it out)."""
        row: dict[str, Any] = {"id": item.id} if with_id else {}
        row.update(item.data.model_dump(exclude_none=True, exclude_defaults=True))
        row["date"] = item.created_at.date().isoformat()
        return row

    def build_context(self, recalled: Recalled) -> str:
        blocks = [
            data_block(
                self.name,
                f"{self.plural.capitalize()} most relevant to this message:",
                (
                    self.render_row(i, with_id=self.mode is not LearningMode.ALWAYS)
                    for i in recalled.items
                ),
            ),
            data_block(
                f"{self.name}_pending_proposals",
                "Proposed in this session, NOT saved yet: awaiting the user's confirmation.",
                (self.render_row(i) for i in recalled.pending),
            ),
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
            values = data.model_dump()
            item_id = values.pop("id")
            current = yield from self._owned(ctx, item_id)
            op = self._update(current, self.schema.model_validate(values))
            yield from self._apply(ctx, [op], "tool")
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
            current = yield from self._owned(ctx, data.id)  # type: ignore[attr-defined]
            yield from self._apply(ctx, [SetStatus(current.id, "deleted", "delete")], "tool")
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

    def extraction_guidance(self) -> str:
        return f"{self.plural}: add new ones, update or delete existing ones by number."

    @functools.cached_property
    def extraction_output(self) -> Any:
        """The type of this store's part of the extraction answer (built once: the combined
        schema is cached by these types)."""
        updated = create_model(
            f"{self.kind}_update", __base__=self.schema, id=(int, Field(description="Item number"))
        )
        ops = create_model(
            f"{self.kind}_operations",
            add=(builtins.list[self.schema], Field(default_factory=builtins.list)),  # type: ignore[name-defined]
            update=(builtins.list[updated], Field(default_factory=builtins.list)),
            delete=(builtins.list[int], Field(default_factory=builtins.list)),
        )
        return ops | None

    def extraction_view(self, ctx: RunContext, turn: Turn) -> Flow[ExtractionView | None]:
        if self.mode is not LearningMode.ALWAYS:
            return None
        query = f"{turn.user}\n{turn.assistant}"
        similar = yield from self._search(ctx, query, self.extraction_neighbours)
        local_ids = {n: item.id for n, item in enumerate(similar, 1)}
        rows = [f"[{n}] " + item.content for n, item in zip(local_ids, similar, strict=True)]
        return ExtractionView(
            key=self.name,
            output=self.extraction_output,
            guidance=self.describe(self.extraction_guidance()),
            data="\n".join(rows) or "(none stored yet)",
            local_ids=local_ids,
            stored=similar,
        )

    def extraction_writes(
        self, value: Any, view: ExtractionView, ctx: RunContext
    ) -> Flow[builtins.list[WriteOp]]:
        """Adds, then updates (of rows still active, read once, fresh), then deletes; an
        invented or repeated item number is ignored, never guessed."""
        if value is None:
            return []
        writes: builtins.list[WriteOp] = [
            Create(self._record(ctx, self.schema.model_validate(data.model_dump())))
            for data in value.add
        ]
        changes: dict[str, Any] = {}
        deletes: dict[str, None] = {}
        for change in value.update:
            item_id = view.local_ids.get(change.id)
            if item_id is not None and item_id not in changes:
                changes[item_id] = change
        for number in value.delete:
            item_id = view.local_ids.get(number)
            if item_id is not None and item_id not in changes:
                deletes[item_id] = None
        if changes:
            records = yield Read(self._where(ctx, ids=builtins.list(changes)), limit=len(changes))
            current = {r.id: r for r in records}
            for item_id, change in changes.items():
                if item_id in current:
                    fields = change.model_dump()
                    fields.pop("id")
                    op = self._update(current[item_id], self.schema.model_validate(fields))
                    writes.append(op)
        writes += [SetStatus(item_id, "deleted", "delete") for item_id in deletes]
        return writes
