"""Unstructured observations about one user, one row per memory."""

from __future__ import annotations

from dataclasses import replace

from kern.context import RunContext
from kern.learn.backend import Flow
from kern.learn.config import UserMemoryConfig
from kern.learn.schemas import Memory
from kern.learn.scope import user_scope
from kern.learn.stores.base import Recalled
from kern.learn.stores.listing import ListStore
from kern.learn.timeline import time_scope

__all__ = ["UserMemoryStore"]


class UserMemoryStore(ListStore[Memory]):
    name = "user_memory"
    config_class = UserMemoryConfig
    kind = "memory"
    noun = "memory"
    plural = "memories"

    def scope(self, ctx: RunContext) -> str:
        return user_scope(ctx.user_id)

    def extraction_guidance(self) -> str:
        return (
            "observations about the user worth remembering in later conversations "
            "(preferences, circumstances, plans, history) that are not profile fields; "
            "update or delete stored ones by number instead of adding near-duplicates."
        )

    def recall(self, ctx: RunContext) -> Flow[Recalled]:
        """The memories most relevant to the message, topped up with the most recent ones.

        Questions like "what do you know about me?" share no words with any memory; the
        top-up keeps them answerable. It never exceeds ``limit``, so recall stays bounded
        however many memories a user has.
        """
        recalled = yield from super().recall(ctx)
        assert recalled.at is not None  # a list store's recall says when it recalled for
        now = time_scope(recalled.at)
        items = yield from self._topped_up(ctx, recalled.items, self.config.limit, now)
        return replace(recalled, items=items)
