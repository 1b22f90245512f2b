"""Scope keys: the access key of every learning row, computed from the run context only.

A row is readable by a run exactly when its ``scope`` equals the key the run computes for that
store. Keys of user-scoped data always contain the user id; parts are percent-encoded so an id
containing ``/`` cannot forge another scope.
"""

from __future__ import annotations

from urllib.parse import quote

from kern.context import RunContext

__all__ = ["agent_scope", "namespace_scope", "session_scope", "user_scope"]

USER = "user"


def _part(value: str) -> str:
    return quote(value, safe="")


def user_scope(user_id: str) -> str:
    return f"user/{_part(user_id)}"


def session_scope(user_id: str, session_id: str) -> str:
    return f"{user_scope(user_id)}/session/{_part(session_id)}"


def namespace_scope(namespace: str, user_id: str) -> str:
    """``"user"`` → the user's own scope; ``"global"`` and group names → a shared scope."""
    if namespace == USER:
        return user_scope(user_id)
    return f"ns/{_part(namespace)}"


def agent_scope(namespace: str, ctx: RunContext) -> str:
    """Decision logs are per agent, then shared by namespace like other namespaced stores."""
    return f"agent/{_part(ctx.agent_id or '-')}/{namespace_scope(namespace, ctx.user_id)}"
