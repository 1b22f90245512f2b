"""Facts, events and relations about external things: companies, projects, people."""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any, ClassVar

from pydantic import BaseModel, create_model

from kern._sync import syncify
from kern.context import RunContext
from kern.db.base import Close, Create, SetStatus, WriteOp
from kern.learn.backend import Flow
from kern.learn.config import EntityMemoryConfig, LearningMode
from kern.learn.items import Item
from kern.learn.schemas import EntityEvent, EntityRelation
from kern.learn.scope import namespace_scope
from kern.learn.stores.base import ExtractionView
from kern.learn.stores.listing import _NUMBER, _TIMES, ListStore, _operations
from kern.learn.timeline import at_day_start
from kern.tools import Tool

__all__ = ["EntityMemoryStore"]


class EntityMemoryStore(ListStore[Any]):
    """Three kinds of rows: ``fact`` (the configurable schema), ``event`` and ``relation``."""

    name = "entity_memory"
    config_class = EntityMemoryConfig
    kind = "fact"
    noun = "entity fact"
    plural = "entities"
    text_field: ClassVar[str] = "fact"
    tool_names: ClassVar[dict[str, str]] = {
        "add": "remember_entity_fact",
        "propose": "propose_entity_fact",
        "delete": "forget_entity_item",
        "update": "update_entity_fact",
        "search": "search_entities",
    }

    def scope(self, ctx: RunContext) -> str:
        return namespace_scope(self.namespace or "global", ctx.user_id)

    @property
    def kinds(self) -> list[str]:
        return ["fact", "event", "relation"]

    def schema_for(self, kind: str) -> type[BaseModel]:
        kinds: dict[str, type[BaseModel]] = {"event": EntityEvent, "relation": EntityRelation}
        return kinds.get(kind, self.schema)

    # -------------------------------------------------------------- direct API

    async def aadd_fact(
        self,
        entity: str,
        fact: str,
        *,
        entity_type: str | None = None,
        user_id: str | None = None,
        **extra: Any,
    ) -> Item[Any]:
        """A fact about a named entity ("Acme" / "uses Postgres")."""
        return await self.aadd(
            {"entity": entity, "fact": fact, "entity_type": entity_type, **extra}, user_id=user_id
        )

    async def aadd_event(
        self, entity: str, event: str, *, date: str | None = None, user_id: str | None = None
    ) -> Item[Any]:
        """Something that happened to an entity, with its date if known."""
        data = EntityEvent(entity=entity, event=event, date=date)
        return await self._acreate(self._context(user_id), data, kind="event")

    async def aadd_relation(
        self,
        subject: str,
        relation: str,
        object: str,
        *,
        user_id: str | None = None,
        valid_from: datetime | None = None,
        valid_to: datetime | None = None,
    ) -> Item[Any]:
        """A relation, e.g. (Alice, works_at, Netflix), with when it held if known; end it
        with ``close`` or replace it with ``supersede`` when it changes."""
        data = EntityRelation(subject=subject, relation=relation, object=object)
        ctx = self._context(user_id)
        return await self._acreate(
            ctx, data, kind="relation", valid_from=valid_from, valid_to=valid_to
        )

    add_fact = syncify(aadd_fact)
    add_event = syncify(aadd_event)
    add_relation = syncify(aadd_relation)

    def render_row(
        self, item: Item[Any], *, with_id: bool = True, at: datetime | None = None
    ) -> dict[str, Any]:
        row = super().render_row(item, with_id=with_id, at=at)
        row["kind"] = item.kind
        return row

    # -------------------------------------------------------------- tools

    def get_tools(self, ctx: RunContext) -> list[Tool]:
        tools = super().get_tools(ctx)
        if self.mode is LearningMode.ALWAYS:
            return tools
        proposing = self.mode is LearningMode.PROPOSE
        return [
            *tools,
            self._kind_tool(
                "event",
                "record_entity_event",
                "Record something that happened to an entity.",
                proposing,
            ),
            self._kind_tool(
                "relation", "link_entities", "Record a relation between two entities.", proposing
            ),
        ]

    def _kind_tool(self, kind: str, name: str, description: str, proposing: bool) -> Tool:
        if proposing:
            name, description = f"propose_{name}", f"Propose: {description} (needs approval)"
        return self._save_tool(
            lambda ctx, data, status: [Create(self._record(ctx, data, kind=kind, status=status))],
            proposing=proposing,
            name=name,
            description=description,
            arguments=self.schema_for(kind),
            saved=lambda records, data: f"Saved entity {kind} {records[0].id}.",
        )

    # -------------------------------------------------------------- extraction

    @functools.cached_property
    def extraction_output(self) -> Any:
        relation = create_model(
            "entity_relation_new",
            __base__=EntityRelation,
            valid_from=_TIMES["valid_from"],
            valid_to=_TIMES["valid_to"],
        )
        closing = create_model("entity_close", id=_NUMBER, valid_to=_TIMES["valid_to"])
        return _operations(
            "entity_operations",
            facts=(self.schema, None),
            events=(EntityEvent, None),
            relations=(relation, None),
            delete=(int, "Numbers of stored items now wrong"),
            close=(
                closing,
                "Numbers of stored items that stopped being true (a relation that ended), "
                "with the date",
            ),
        )

    def extraction_guidance(self) -> str:
        return (
            "facts, dated events and relations about named external entities (companies, "
            "projects, products, people other than the user) mentioned in the exchange; "
            "skip what is already stored; delete stored items the exchange shows are wrong; "
            "close (with the date) relations that ended, and add the new one with valid_from."
        )

    def extraction_writes(
        self, value: Any, view: ExtractionView, ctx: RunContext
    ) -> Flow[list[WriteOp]]:
        if value is None:
            return []
        writes: list[WriteOp] = []
        for kind, items in (
            ("fact", value.facts),
            ("event", value.events),
            ("relation", value.relations),
        ):
            writes += [Create(self._answered(ctx, kind, data.model_dump())) for data in items]
        touched: set[str] = set()
        for change in value.close:
            item_id = view.local_ids.get(change.id)
            if item_id is not None and item_id not in touched:
                touched.add(item_id)
                writes.append(Close(item_id, at_day_start(change.valid_to)))
        for number in dict.fromkeys(value.delete):
            if (item_id := view.local_ids.get(number)) is not None and item_id not in touched:
                writes.append(SetStatus(item_id, "deleted", "delete"))
        return writes
        yield  # a flow that asks for nothing
