"""Propose mode, enforced in the data: a proposal is a row with status ``proposed``.

Recall never returns proposed rows as knowledge; they become active only through
``approve`` (API, REST, UI, CLI) or through ``confirm_proposal`` called by the agent in a
*later* run than the one that proposed them — the user has to have seen and answered it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field, create_model

from kern._sync import run_sync
from kern.context import RunContext
from kern.db.base import LearningFilter, LearningRecord, SetStatus, WriteOp
from kern.errors import ConflictError, ToolError
from kern.learn.backend import Get, Read
from kern.learn.items import Item
from kern.learn.stores.base import Store
from kern.tools import Tool

if TYPE_CHECKING:
    from kern.learn.machine import LearningMachine

__all__ = ["Proposals"]


class Proposals:
    def __init__(self, machine: LearningMachine) -> None:
        self._machine = machine

    def list(
        self,
        *,
        user_id: str | None = None,
        store: str | None = None,
        session_id: str | None = None,
        limit: int = 100,
    ) -> list[Item[Any]]:
        """Pending proposals, newest first; ``user_id`` = proposed in that user's runs."""
        where = LearningFilter(
            store=store, user_id=user_id, session_id=session_id, statuses=("proposed",)
        )
        records = self._machine.db.list_learnings(where, limit=limit)
        return [self._item(r) for r in records]

    def approve(self, proposal_id: str, *, run_id: str | None = None) -> Item[Any]:
        """Make a proposal active; a keyed one (a profile field) supersedes the current value."""
        record = self._pending(proposal_id)
        return run_sync(self._approve(record, run_id=run_id, turn_of=None))

    async def _approve(
        self, record: LearningRecord, *, run_id: str | None, turn_of: str | None
    ) -> Item[Any]:
        backend = self._machine.backend
        ops: list[WriteOp] = []
        if record.key is not None:
            where = LearningFilter(store=record.store, scopes=[record.scope], key=record.key)
            current = await backend.answer(Read(where, limit=1))
            ops += [SetStatus(c.id, "superseded", "supersede") for c in current]
        ops.append(SetStatus(record.id, "active", "approve", from_statuses=("proposed",)))
        saved = await backend.apply(ops, run_id=run_id, actor="approval", turn_of=turn_of)
        return self._item(saved[-1])

    def reject(self, proposal_id: str, *, run_id: str | None = None) -> Item[Any]:
        record = self._pending(proposal_id)
        (saved,) = self._machine.db.apply(
            [SetStatus(record.id, "rejected", "reject", from_statuses=("proposed",))],
            run_id=run_id,
            actor="approval",
        )
        return self._item(saved)

    def confirm_tool(self) -> Tool:
        """The agent's way to apply a proposal the user agreed to, in a later turn."""
        arguments: type[BaseModel] = create_model(
            "confirm_proposal_arguments",
            proposal_id=(str, Field(description="The id of a pending proposal")),
        )

        async def confirm_proposal(ctx: RunContext, data: BaseModel) -> str:
            proposal_id: str = data.proposal_id  # type: ignore[attr-defined]
            record = await self._machine.backend.answer(Get(proposal_id))
            store = self._machine.stores.get(record.store) if record else None
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
            # Through the policy: a shared proposal is not the chat turn's to approve.
            await self._approve(record, run_id=ctx.run_id, turn_of=ctx.user_id)
            return f"Proposal {proposal_id} approved and saved."

        return Tool.for_model(
            confirm_proposal,
            name="confirm_proposal",
            description="Save a pending proposal after the user explicitly agreed to it in "
            "their latest message.",
            arguments=arguments,
        )

    def _pending(self, proposal_id: str) -> LearningRecord:
        record = self._machine.db.get_learning(proposal_id)
        if record is None or record.status != "proposed":
            raise ConflictError(f"no pending proposal with id {proposal_id!r}")
        return record

    def _item(self, record: LearningRecord) -> Item[Any]:
        store = self._machine.stores.get(record.store)
        schema = store.schema_for(record.kind) if isinstance(store, Store) else None
        return Item.from_record(record, schema or _Any)


class _Any(BaseModel):
    model_config = {"extra": "allow"}
