"""Decisions the agent made, with reasoning, alternatives, confidence and later outcome."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, Field, create_model

from kern._sync import syncify
from kern.context import RunContext
from kern.db.base import LearningRecord, WriteOp
from kern.learn.backend import Flow
from kern.learn.config import DecisionLogConfig, LearningMode
from kern.learn.items import Item
from kern.learn.schemas import Decision
from kern.learn.scope import agent_scope
from kern.learn.stores.listing import ListStore
from kern.tools import Tool

__all__ = ["DecisionLogStore"]


class DecisionLogStore(ListStore[Decision]):
    name = "decision_log"
    config_class = DecisionLogConfig
    kind = "decision"
    noun = "decision"
    plural = "decisions"
    text_field: ClassVar[str] = "decision"
    tool_names: ClassVar[dict[str, str]] = {"add": "log_decision"}

    def scope(self, ctx: RunContext) -> str:
        return agent_scope(self.namespace or "global", ctx)

    async def arecord_outcome(
        self, decision_id: str, outcome: str, *, user_id: str | None = None
    ) -> Item[Decision]:
        """Attach what happened to a logged decision."""
        ctx = self._context(user_id)
        return self._item(await self.backend.run(self._outcome(ctx, decision_id, outcome, "api")))

    record_outcome = syncify(arecord_outcome)

    def _outcome(
        self, ctx: RunContext, decision_id: str, outcome: str, actor: str
    ) -> Flow[LearningRecord]:
        def with_outcome(current: LearningRecord) -> WriteOp:
            decision = self.schema.model_validate(current.content)
            return self._update(current, decision.model_copy(update={"outcome": outcome}))

        return self._change(ctx, decision_id, with_outcome, actor)

    def get_tools(self, ctx: RunContext) -> list[Tool]:
        tools = super().get_tools(ctx)
        if self.mode is LearningMode.AGENTIC:
            tools.append(self._outcome_tool())
        return tools

    def _outcome_tool(self) -> Tool:
        arguments = create_model(
            "record_decision_outcome_arguments",
            id=(str, Field(description="The id of the logged decision")),
            outcome=(str, Field(description="How the decision turned out")),
        )

        def record_decision_outcome(ctx: RunContext, data: BaseModel) -> Flow[str]:
            saved = yield from self._outcome(ctx, data.id, data.outcome, "tool")  # type: ignore[attr-defined]
            return f"Outcome recorded for decision {saved.id}."

        return self._tool(
            record_decision_outcome,
            name="record_decision_outcome",
            description="Record how an earlier decision turned out, by id.",
            arguments=arguments,
        )

    def extraction_guidance(self) -> str:
        return (
            "significant decisions the ASSISTANT made in this exchange (a recommendation, a "
            "choice between options) with reasoning, alternatives and confidence; record an "
            "outcome on a stored decision (update by number) when the user reports one."
        )
