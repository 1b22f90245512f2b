"""Propose mode, enforced in the data: a proposal is a row with status ``proposed``.

Recall never returns proposed rows as knowledge; they become active only through
``approve`` (API, REST, UI, CLI) or through ``confirm_proposal`` called by the agent in a
*later* run than the one that proposed them — the user has to have seen and answered it.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, Field, create_model

from kern._sync import syncify
from kern.context import RunContext
from kern.db.base import LearningFilter, LearningRecord, SetStatus, WriteOp
from kern.errors import ConflictError, ToolError
from kern.learn.backend import Apply, Flow, Get, LearningBackend, Read
from kern.learn.items import Item
from kern.learn.stores.base import LearningStore, Store
from kern.tools import Tool

__all__ = ["Proposals"]


class Proposals:
    """Pending proposals of a machine's stores: list, approve, reject, and the agent's
    ``confirm_proposal`` tool."""

    def __init__(self, backend: LearningBackend, stores: Mapping[str, LearningStore]) -> None:
        self._backend = backend
        self._stores = stores

    async def alist(
        self,
        *,
        user_id: str | None = None,
        store: str | None = None,
        session_id: str | None = None,
        limit: int = 100,
    ) -> builtins.list[Item[Any]]:
        """Pending proposals, newest first; ``user_id`` = proposed in that user's runs."""
        where = LearningFilter(
            store=store, user_id=user_id, session_id=session_id, statuses=("proposed",)
        )
        records = await self._backend.answer(Read(where, limit=limit))
        return [self._item(r) for r in records]

    async def aapprove(self, proposal_id: str, *, run_id: str | None = None) -> Item[Any]:
        """Make a proposal active; a keyed one (a profile field) supersedes the current value."""
        return await self._backend.run(self._approve(proposal_id, run_id))

    async def areject(self, proposal_id: str, *, run_id: str | None = None) -> Item[Any]:
        """Reject a proposal: it never becomes active (and stays in history)."""
        return await self._backend.run(self._reject(proposal_id, run_id))

    def _approve(self, proposal_id: str, run_id: str | None) -> Flow[Item[Any]]:
        record = yield from self._pending(proposal_id)
        ops: builtins.list[WriteOp] = []
        if record.key is not None:
            where = LearningFilter(store=record.store, scopes=[record.scope], key=record.key)
            current = yield Read(where, limit=1)
            ops += [SetStatus(c.id, "superseded", "supersede") for c in current]
        ops.append(SetStatus(record.id, "active", "approve", from_statuses=("proposed",)))
        saved = yield Apply(ops, "approval", run_id)
        return self._item(saved[-1])

    def _reject(self, proposal_id: str, run_id: str | None) -> Flow[Item[Any]]:
        record = yield from self._pending(proposal_id)
        op = SetStatus(record.id, "rejected", "reject", from_statuses=("proposed",))
        (saved,) = yield Apply([op], "approval", run_id)
        return self._item(saved)

    def confirm_tool(self) -> Tool:
        """The agent's way to apply a proposal the user agreed to, in a later turn."""
        arguments: type[BaseModel] = create_model(
            "confirm_proposal_arguments",
            proposal_id=(str, Field(description="The id of a pending proposal")),
        )

        def confirm(ctx: RunContext, proposal_id: str) -> Flow[str]:
            record = yield Get(proposal_id)
            store = self._stores.get(record.store) if record else None
            if (
                record is None
                or record.status != "proposed"
                or not isinstance(store, Store)
                or record.scope != store.scope(ctx)
                or record.user_id != ctx.user_id
            ):
                raise ToolError(f"No pending proposal with id {proposal_id!r}.")
            if record.run_id == ctx.run_id:
                raise ToolError(
                    "Refused: a proposal cannot be confirmed in the same turn that proposed it. "
                    "Ask the user; confirm only after they agree in a later message."
                )
            yield from self._approve(proposal_id, ctx.run_id)
            return f"Proposal {proposal_id} approved and saved."

        async def confirm_proposal(ctx: RunContext, data: BaseModel) -> str:
            return await self._backend.run(confirm(ctx, data.proposal_id))  # type: ignore[attr-defined]

        return Tool.for_model(
            confirm_proposal,
            name="confirm_proposal",
            description="Save a pending proposal after the user explicitly agreed to it in "
            "their latest message.",
            arguments=arguments,
        )

    def _pending(self, proposal_id: str) -> Flow[LearningRecord]:
        record = yield Get(proposal_id)
        if record is None or record.status != "proposed":
            raise ConflictError(f"no pending proposal with id {proposal_id!r}")
        return record  # type: ignore[no-any-return]

    def _item(self, record: LearningRecord) -> Item[Any]:
        store = self._stores.get(record.store)
        schema = store.schema_for(record.kind) if isinstance(store, Store) else None
        return Item.from_record(record, schema or _Any)

    list = syncify(alist)
    approve = syncify(aapprove)
    reject = syncify(areject)


class _Any(BaseModel):
    model_config = {"extra": "allow"}
