"""Insights that transfer across users, shared by namespace."""

from __future__ import annotations

from typing import ClassVar

from kern.context import RunContext
from kern.learn.config import LearnedKnowledgeConfig
from kern.learn.schemas import Learning
from kern.learn.scope import namespace_scope
from kern.learn.stores.listing import ListStore

__all__ = ["LearnedKnowledgeStore"]


class LearnedKnowledgeStore(ListStore[Learning]):
    name = "learned_knowledge"
    config_class = LearnedKnowledgeConfig
    kind = "learning"
    noun = "learning"
    plural = "learnings"
    text_field: ClassVar[str] = "learning"
    tool_names: ClassVar[dict[str, str]] = {"add": "save_learning"}

    def scope(self, ctx: RunContext) -> str:
        return namespace_scope(self.namespace or "global", ctx.user_id)

    def extraction_guidance(self) -> str:
        return (
            "general insights from this exchange that would help with OTHER users or future "
            "tasks (how to solve a kind of problem, a pitfall, a working approach); never "
            "personal details about this user."
        )
