"""The run context: who and where a run is, passed to tools and learning stores.

It lives at the top of the package (re-exported by ``kern.agent``) because both ``kern.tools``
and ``kern.agent`` need it and neither should import the other to get it. Scope for every
learning read and write is computed from these fields, never from model output.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["DEFAULT_USER_ID", "RunContext"]

#: The user a run belongs to when the caller passes no ``user_id``: single-user scripts still
#: get a profile and memories, and multi-user apps are expected to pass their own ids.
DEFAULT_USER_ID = "default"


@dataclass(frozen=True, slots=True)
class RunContext:
    run_id: str
    session_id: str
    user_id: str = DEFAULT_USER_ID
    agent_id: str | None = None
    #: The user's message of this run.
    input: str = ""
    #: Free-form values the application passes through ``run(..., metadata=...)``.
    metadata: dict[str, Any] = field(default_factory=dict)
