"""Proposals (propose mode): list, approve, reject.

Admins see and decide every proposal. A user token sees and decides only proposals made in
that user's runs and in a scope the user can read: the same rule ``confirm_proposal`` applies
when the user agrees in the chat. Any other proposal id is a 404, like a missing one. A
proposal for a shared namespace is approved by an admin only (``kern.learn.policy``); its
user may still reject it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query

from kern.db.base import LearningRecord
from kern.learn.machine import LearningMachine
from kern.learn.policy import is_shared
from kern.server.auth import Admin, Caller, ForUser, Principal
from kern.server.schemas import AnyItem, Id, PathId, item_out
from kern.server.state import ServerState

__all__ = ["proposals_router"]

UserId = PathId
ProposalId = PathId
Limit = Annotated[int, Query(ge=1, le=500)]
Filter = Annotated[Id | None, Query()]


def proposals_router(state: ServerState) -> APIRouter:
    router = APIRouter(tags=["proposals"])

    def machine() -> LearningMachine:
        if state.machine is None:
            raise HTTPException(404, "this agent has no learning machine, so no proposals")
        return state.machine

    def may_decide(principal: Principal, record: LearningRecord) -> bool:
        if principal.is_admin:
            return True
        access = state.accesses.get(record.store)
        return (
            principal.user_id is not None
            and record.user_id == principal.user_id
            and access is not None
            and access.visible(record, principal.user_id)
        )

    def listed(
        principal: Principal,
        user_id: str | None,
        store: str | None,
        session_id: str | None,
        limit: int,
    ) -> list[AnyItem]:
        items = machine().proposals.list(
            user_id=user_id, store=store, session_id=session_id, limit=limit
        )
        if principal.is_admin:
            return [item_out(item, AnyItem, viewer=principal) for item in items]
        records = (state.learning_db.get_learning(item.id) for item in items)
        return [
            item_out(item, AnyItem, viewer=principal)
            for item, record in zip(items, records, strict=True)
            if record is not None and may_decide(principal, record)
        ]

    @router.get("/proposals", response_model=list[AnyItem], summary="Pending proposals (admin)")
    def all_proposals(
        principal: Admin,
        user_id: Filter = None,
        store: Filter = None,
        session_id: Filter = None,
        limit: Limit = 100,
    ) -> list[AnyItem]:
        return listed(principal, user_id, store, session_id, limit)

    @router.get(
        "/users/{user_id}/proposals",
        response_model=list[AnyItem],
        summary="Pending proposals made in the user's runs",
    )
    def user_proposals(
        user_id: UserId,
        principal: ForUser,
        store: Filter = None,
        session_id: Filter = None,
        limit: Limit = 100,
    ) -> list[AnyItem]:
        # Listed as the user would see them, even for an admin caller.
        as_user = Principal("user", user_id)
        return listed(as_user, user_id, store, session_id, limit)

    def decide(
        proposal_id: str, principal: Principal, verdict: Literal["approve", "reject"]
    ) -> Any:
        proposals = machine().proposals
        record = state.learning_db.get_learning(proposal_id)
        if record is None or not may_decide(principal, record):
            raise HTTPException(404, f"no proposal with id {proposal_id!r}")
        if verdict == "approve" and is_shared(record) and not principal.is_admin:
            raise HTTPException(
                403,
                f"{proposal_id} is a proposal for the shared {record.namespace!r} namespace: "
                "only an admin approves shared knowledge (the proposing user may reject it)",
            )
        decided = (proposals.approve if verdict == "approve" else proposals.reject)(proposal_id)
        return item_out(decided, AnyItem, viewer=principal)

    @router.post(
        "/proposals/{proposal_id}/approve",
        response_model=AnyItem,
        summary="Approve: the item becomes active and visible to recall",
    )
    def approve(proposal_id: ProposalId, principal: Caller) -> Any:
        return decide(proposal_id, principal, "approve")

    @router.post(
        "/proposals/{proposal_id}/reject",
        response_model=AnyItem,
        summary="Reject: the item is kept (status rejected) but never recalled",
    )
    def reject(proposal_id: ProposalId, principal: Caller) -> Any:
        return decide(proposal_id, principal, "reject")

    return router
