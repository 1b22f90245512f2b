"""Users: who am I, who is there, a user's profile, sessions and search; export, import and
forget (every row of the user, in every store, with vectors and history)."""

from __future__ import annotations

import functools
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Query
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, create_model

from kern.db.base import SessionRecord
from kern.db.userdata import ImportResult, UserExport, export_user, import_user, list_users
from kern.learn.imports import import_check
from kern.server.auth import Admin, Caller, ForUser
from kern.server.schemas import (
    AnyItem,
    ForgetResult,
    Me,
    PathId,
    ProfileFieldInfo,
    SearchResults,
    SessionInfo,
    StoreInfo,
    UserInfo,
    item_out,
    profile_fields,
    short,
)
from kern.server.state import ServerState, annotate, validated

__all__ = ["users_router"]

UserId = PathId
SessionId = PathId


def users_router(state: ServerState) -> APIRouter:
    router = APIRouter(tags=["users"])

    @router.get("/me", response_model=Me, summary="The caller: admin, or the token's user")
    def me(principal: Caller) -> Me:
        return Me(role=principal.role, user_id=principal.user_id)

    @router.get("/users", response_model=list[UserInfo], summary="Every known user (admin)")
    def users(
        principal: Admin, limit: Annotated[int, Query(ge=1, le=10_000)] = 1000
    ) -> list[UserInfo]:
        return [UserInfo(user_id=u) for u in list_users(state.db, limit=limit)]

    @router.get("/stores", response_model=list[StoreInfo], summary="The enabled stores")
    def stores(principal: Caller) -> list[StoreInfo]:
        return [
            StoreInfo(
                name=name,
                kinds=access.kinds,
                mode=str(access.store.mode.value),
                namespace=access.store.namespace,
                shared=access.shared("any-user"),
                per_session=access.per_session,
                writable=state.models[name].create is not None,
                schemas={k: access.store.schema_for(k).model_json_schema() for k in access.kinds},
            )
            for name, access in state.accesses.items()
        ]

    _profile_routes(router, state)
    _session_routes(router, state)

    @router.get(
        "/users/{user_id}/search",
        response_model=SearchResults,
        summary="Search every store the user can read",
    )
    def search(
        user_id: UserId,
        principal: ForUser,
        q: Annotated[str, Query(min_length=1, max_length=1000)],
        limit: Annotated[int, Query(ge=1, le=100)] = 10,
    ) -> SearchResults:
        results: dict[str, list[AnyItem]] = {}
        for name, access in state.accesses.items():
            items, _ = access.list(
                user_id, statuses=("active",), kinds=None, query=q, limit=limit, offset=0
            )
            results[name] = [item_out(i, AnyItem, viewer=principal) for i in items]
        return SearchResults(query=q, results=results)

    @router.get(
        "/users/{user_id}/export",
        response_model=UserExport,
        summary="Everything stored about the user, as one JSON document",
    )
    async def export(user_id: UserId, principal: ForUser) -> UserExport:
        await _settle(state, user_id)
        return await run_in_threadpool(export_user, state.one_db, user_id)

    @router.post(
        "/users/{user_id}/import",
        response_model=ImportResult,
        status_code=201,
        summary="Restore an export into a user with no data (admin)",
    )
    def import_(
        user_id: UserId, principal: Admin, body: Annotated[UserExport, Body()]
    ) -> ImportResult:
        stores = state.machine.stores if state.machine is not None else {}
        return import_user(state.one_db, user_id, body, check=import_check(stores))

    @router.delete(
        "/users/{user_id}",
        response_model=ForgetResult,
        summary="Forget the user: every row in every store, vectors, history, runs, sessions",
    )
    async def forget(user_id: UserId, principal: ForUser) -> ForgetResult:
        await _settle(state, user_id)
        # A user token forgets the user's own data; what they wrote in a shared namespace
        # stays (detached), as they could not delete it directly. An admin forgets it all.
        removed = await run_in_threadpool(
            functools.partial(state.forget, user_id, keep_shared=not principal.is_admin)
        )
        return ForgetResult(user_id=user_id, rows_removed=removed)

    return router


async def _settle(state: ServerState, user_id: str) -> None:
    """Let the user's extraction jobs finish (bounded) so none writes after an export or a
    forget; what a still-running job writes afterwards is the risk this bounds."""
    if state.machine is not None:
        await state.machine.await_for_jobs(user_id)


def _profile_routes(router: APIRouter, state: ServerState) -> None:
    profile_access = next((a for a in state.accesses.values() if a.is_profile), None)
    if profile_access is None:
        return
    access = profile_access
    fields_model = state.models[access.name].item
    profile_model: type[BaseModel] = create_model(
        "Profile",
        profile=(access.store.schema, ...),
        fields=(list[fields_model], ...),  # type: ignore[valid-type]
        schema_fields=(list[ProfileFieldInfo], ...),
    )
    described = profile_fields(access.store.schema)

    def read(user_id: str) -> BaseModel:
        items, _ = access.list(
            user_id, statuses=("active",), kinds=None, query=None, limit=500, offset=0
        )
        values = {i.data.field: i.data.value for i in items}
        return profile_model.model_validate(
            {
                "profile": values,
                "fields": [item_out(i, fields_model) for i in items],
                "schema_fields": described,
            }
        )

    def get_profile(user_id: UserId, principal: ForUser) -> Any:
        return read(user_id)

    router.add_api_route(
        "/users/{user_id}/profile",
        get_profile,
        methods=["GET"],
        response_model=profile_model,
        summary="The user's profile (typed by the profile schema) and its field items",
    )

    def patch_profile(user_id: UserId, principal: ForUser, body: Any) -> Any:
        values = body.model_dump(exclude_unset=True)
        if any(v is None for v in values.values()):
            raise HTTPException(422, "a profile value cannot be null: delete the field instead")
        if values:
            validated(access.profile_updates, values)
            for field, value in values.items():
                access.set_profile_field(user_id, field, value)
        return read(user_id)

    router.add_api_route(
        "/users/{user_id}/profile",
        annotate(patch_profile, body=Annotated[access.profile_updates, Body()]),
        methods=["PATCH"],
        response_model=profile_model,
        summary="Set profile fields (only those sent)",
    )


def _session_info(state: ServerState, session: SessionRecord) -> SessionInfo:
    """The session with its message count and first user message (one read of its runs)."""
    said = [
        m
        for run in state.db.get_runs(session.session_id)
        for m in run.messages
        if m.get("role") in ("user", "assistant") and m.get("content")
    ]
    first = next((str(m["content"]) for m in said if m.get("role") == "user"), None)
    return SessionInfo(
        session_id=session.session_id,
        agent_id=session.agent_id,
        created_at=session.created_at,
        updated_at=session.updated_at,
        message_count=len(said),
        preview=short(first, 120),
    )


def _session_routes(router: APIRouter, state: ServerState) -> None:
    @router.get(
        "/users/{user_id}/sessions",
        response_model=list[SessionInfo],
        summary="The user's sessions, most recent first",
    )
    def sessions(
        user_id: UserId, principal: ForUser, limit: Annotated[int, Query(ge=1, le=1000)] = 100
    ) -> list[SessionInfo]:
        return [
            _session_info(state, s) for s in state.db.list_sessions(user_id=user_id, limit=limit)
        ]

    @router.get(
        "/users/{user_id}/sessions/{session_id}/messages",
        response_model=list[dict[str, Any]],
        summary="The session's messages, oldest first",
    )
    def messages(user_id: UserId, session_id: SessionId, principal: ForUser) -> Any:
        session = state.db.get_session(session_id)
        if session is None or session.user_id != user_id:
            raise HTTPException(404, f"no session {session_id!r} for this user")
        return [m for run in state.db.get_runs(session_id) for m in run.messages]

    context_access = next((a for a in state.accesses.values() if a.is_session_context), None)
    if context_access is None:
        return
    access = context_access
    key: str = getattr(access.store, "key", "context")

    def session_context(user_id: UserId, session_id: SessionId, principal: ForUser) -> Any:
        item = access.current(user_id, key, session_id)
        if item is None:
            raise HTTPException(404, f"no context stored for session {session_id!r}")
        return item.data

    router.add_api_route(
        "/users/{user_id}/sessions/{session_id}/context",
        session_context,
        methods=["GET"],
        response_model=access.store.schema,
        summary="The session's context (summary, goal, plan, progress …)",
    )
