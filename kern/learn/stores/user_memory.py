"""Unstructured observations about one user, one row per memory."""

from __future__ import annotations

from kern.context import RunContext
from kern.learn.config import UserMemoryConfig
from kern.learn.schemas import Memory
from kern.learn.scope import user_scope
from kern.learn.stores.base import ListStore

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
