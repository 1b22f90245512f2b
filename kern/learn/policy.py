"""The write policy of shared namespaces, in one place.

A shared namespace (``"global"`` or a group) holds knowledge every user's agent relies on, so a
user's turn — its extraction, its agentic and propose tools, a chat confirmation, the MCP
tools — may *add* to it but never change or remove what another user wrote, and never approve
a shared proposal (that is for an admin or the app's own code). The app's code and admins
(the direct API, the REST API with an admin token, the curator, an import) are trusted.

Pure: write operations and the rows they touch in, the refusal (or the operations to apply)
out. The learning layer calls ``check_turn_writes`` on every write of a user's turn before
the one apply, whatever path the write came from.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from kern.db.base import (
    Close,
    Create,
    LearningRecord,
    Put,
    SetStatus,
    Supersede,
    Update,
    WriteOp,
)
from kern.errors import ToolError

__all__ = [
    "SharedWriteError",
    "check_turn_writes",
    "is_shared",
    "shared_as_proposals",
    "turn_write_problem",
]


class SharedWriteError(ToolError):
    """A user's turn tried to change or approve shared knowledge it may only add to. A
    ``ToolError``: a tool call that hits it gets the message back, the model can explain."""


def is_shared(record: LearningRecord) -> bool:
    """Whether ``record`` lives in a namespace other users read (not a user's own rows)."""
    return record.namespace is not None and record.namespace != "user"


def check_turn_writes(
    ops: Sequence[WriteOp],
    current: Mapping[str, LearningRecord],
    user_id: str,
    *,
    strict: bool = True,
) -> tuple[list[WriteOp], list[str]]:
    """The writes of ``user_id``'s turn the policy allows, and why it refused the others.

    ``strict``: the first forbidden operation raises ``SharedWriteError`` (a tool call gets the
    message back); extraction is not strict: one forbidden operation must not fail the whole
    turn's learning. ``current`` holds the rows that ``Update`` and ``SetStatus`` operations
    name (missing ones are left to the database, which refuses them as conflicts).
    """
    kept: list[WriteOp] = []
    refused: list[str] = []
    for op in ops:
        if (problem := turn_write_problem(op, current, user_id)) is None:
            kept.append(op)
        elif strict:
            raise SharedWriteError(problem)
        else:
            refused.append(problem)
    return kept, refused


def turn_write_problem(
    op: WriteOp, current: Mapping[str, LearningRecord], user_id: str
) -> str | None:
    """Why the policy refuses ``op`` in ``user_id``'s turn, or ``None``."""
    if isinstance(op, Create | Put | Supersede):
        if is_shared(op.record) and op.record.user_id != user_id:
            return (
                "Refused: a shared item records the user who wrote it, and this turn is "
                f"{user_id!r}'s."
            )
        if not isinstance(op, Supersede):
            return None
    row = current.get(op.id)
    if row is None or not is_shared(row):
        return None
    if isinstance(op, SetStatus) and op.status == "active" and row.status == "proposed":
        return (
            f"Refused: {row.id} is a proposal for the shared {row.namespace!r} namespace; "
            "only an admin or the application approves shared knowledge, not a chat turn."
        )
    if row.user_id != user_id:
        verb = "change" if isinstance(op, Update | Supersede | Close) else "remove"
        return (
            f"Refused: {row.id} is shared knowledge another user wrote; a user's turn may "
            f"add to the shared {row.namespace!r} namespace but not {verb} others' items."
        )
    return None


def shared_as_proposals(ops: Sequence[WriteOp]) -> list[WriteOp]:
    """The option ``shared_writes="propose"``: every shared item a user's turn creates becomes
    a proposal, invisible to recall until an admin or the app approves it."""
    return [
        Create(replace(op.record, status="proposed"), op.embedding)
        if isinstance(op, Create) and is_shared(op.record) and op.record.status == "active"
        else op
        for op in ops
    ]
