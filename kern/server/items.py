"""``/users/{user_id}/stores/{store}/items``: learnings CRUD and history, one router per store.

Routes are registered per store (not with a ``{store}`` parameter) so each store's OpenAPI
operations carry its own item, create and patch models.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel

from kern.server.access import StoreAccess
from kern.server.auth import ForUser, Principal
from kern.server.schemas import (
    HistoryEvent,
    Id,
    ItemBase,
    PathId,
    Status,
    StoreModels,
    item_out,
)
from kern.server.state import ServerState, annotate, owner_filter, validated

__all__ = ["items_router"]

UserId = PathId
ItemId = PathId
Limit = Annotated[int, Query(ge=1, le=500)]
Offset = Annotated[int, Query(ge=0, le=1_000_000)]
Search = Annotated[str | None, Query(max_length=1000, description="Search text (hybrid)")]


def items_router(state: ServerState) -> APIRouter:
    router = APIRouter()
    for name, access in state.accesses.items():
        _store_routes(router, state, access, state.models[name])

    # Any other store name: a clear 404 instead of the router's bare "Not Found".
    @router.api_route(
        "/users/{user_id}/stores/{store}/items{rest:path}",
        methods=["GET", "POST", "PATCH", "DELETE"],
        include_in_schema=False,
    )
    def unknown_store(user_id: UserId, store: PathId, rest: str, principal: ForUser) -> None:
        state.access(store)
        raise HTTPException(404, "no such route (see /openapi.json)")

    return router


def _store_routes(
    router: APIRouter, state: ServerState, access: StoreAccess, models: StoreModels
) -> None:
    base = f"/users/{{user_id}}/stores/{access.name}/items"
    tags: list[str | Enum] = [f"store {access.name}"]
    schema = access.store.schema_for

    def out(item: Any, viewer: Principal) -> ItemBase:
        return item_out(item, models.item, viewer=viewer)

    def list_items(
        user_id: UserId,
        principal: ForUser,
        status: Status = "active",
        kind: Any = None,
        q: Search = None,
        session_id: Annotated[Id | None, Query()] = None,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> Any:
        items, total = access.list(
            user_id,
            statuses=(status,),
            kinds=[kind] if kind else None,
            query=q,
            limit=limit,
            offset=offset,
            session_id=session_id,
            owner=owner_filter(principal, user_id, status),
        )
        return models.page(
            items=[out(i, principal) for i in items], total=total, limit=limit, offset=offset
        )

    router.add_api_route(
        base,
        annotate(list_items, kind=Annotated[models.kind_type | None, Query()]),
        methods=["GET"],
        response_model=models.page,
        tags=tags,
        summary=f"List or search {access.name} items",
        operation_id=f"list_{access.name}_items",
    )

    def get_item(user_id: UserId, item_id: ItemId, principal: ForUser) -> Any:
        return out(access.item(state.record(access, principal, user_id, item_id)), principal)

    router.add_api_route(
        base + "/{item_id}",
        get_item,
        methods=["GET"],
        response_model=models.item,
        tags=tags,
        summary=f"One {access.name} item (any status)",
        operation_id=f"get_{access.name}_item",
    )

    def item_history(
        user_id: UserId, item_id: ItemId, principal: ForUser, limit: Limit = 100
    ) -> list[HistoryEvent]:
        record = state.record(access, principal, user_id, item_id)
        events = access.db.history(learning_id=record.id, limit=limit)
        changes = [HistoryEvent.model_validate(e, from_attributes=True) for e in events]
        if not principal.is_admin and record.user_id != principal.user_id:
            # A shared item of another user: what changed, not in which of their runs.
            changes = [e.model_copy(update={"run_id": None}) for e in changes]
        return changes

    router.add_api_route(
        base + "/{item_id}/history",
        item_history,
        methods=["GET"],
        response_model=list[HistoryEvent],
        tags=tags,
        summary=f"Every change of a {access.name} item, newest first",
        operation_id=f"{access.name}_item_history",
    )

    if models.create is None or models.patch is None:
        return  # a custom store without a write API here: read-only

    def create_item(user_id: UserId, principal: ForUser, body: Any) -> Any:
        session_id = getattr(body, "session_id", None)
        state.check_session(user_id, session_id)
        state.check_writable(access, principal, user_id, session_id or "")
        if access.is_profile:
            value = _profile_value(access, body.field, body.value)
            item = access.set_profile_field(user_id, body.field, value)
        elif access.is_session_context:
            changes = body.data.model_dump(exclude_unset=True)
            item = access.merge_session_context(user_id, body.session_id, changes)
        else:
            item = access.create(
                user_id,
                body.kind,
                body.data,
                session_id=session_id,
                metadata=body.metadata,
                created_at=body.created_at,
            )
        assert item is not None
        return out(item, principal)

    router.add_api_route(
        base,
        annotate(create_item, body=models.create),
        methods=["POST"],
        status_code=201,
        response_model=models.item,
        tags=tags,
        summary=f"Create a {access.name} item"
        + (" (sets a field)" if access.is_profile else "")
        + (" (merges into the session's context)" if access.is_session_context else ""),
        operation_id=f"create_{access.name}_item",
    )

    def patch_item(user_id: UserId, item_id: ItemId, principal: ForUser, body: Any) -> Any:
        record = state.record(access, principal, user_id, item_id)
        state.check_writable(access, principal, user_id, record.session_id or "")
        metadata = getattr(body, "metadata", None)
        if access.is_profile:
            field = str(record.content.get("field"))
            data: BaseModel = validated(
                schema(record.kind),
                {"field": field, "value": _profile_value(access, field, body.value)},
            )
        else:
            changes = body.data.model_dump(exclude_unset=True) if body.data is not None else {}
            data = validated(schema(record.kind), {**record.content, **changes})
        item = access.update(record, data, metadata=metadata, expected_version=body.version)
        return out(item, principal)

    router.add_api_route(
        base + "/{item_id}",
        annotate(patch_item, body=models.patch),
        methods=["PATCH"],
        response_model=models.item,
        tags=tags,
        summary=f"Change a {access.name} item (only the fields sent)",
        operation_id=f"patch_{access.name}_item",
    )

    def delete_item(user_id: UserId, item_id: ItemId, principal: ForUser) -> Any:
        record = state.record(access, principal, user_id, item_id)
        state.check_writable(access, principal, user_id, record.session_id or "")
        return out(access.delete(record), principal)

    def restore_item(user_id: UserId, item_id: ItemId, principal: ForUser) -> Any:
        record = state.record(access, principal, user_id, item_id)
        state.check_writable(access, principal, user_id, record.session_id or "")
        return out(access.restore(record), principal)

    router.add_api_route(
        base + "/{item_id}/restore",
        restore_item,
        methods=["POST"],
        response_model=models.item,
        tags=tags,
        summary=f"Restore a deleted {access.name} item (409 if it is not deleted, or if its "
        "key has another active value now)",
        operation_id=f"restore_{access.name}_item",
    )

    router.add_api_route(
        base + "/{item_id}",
        delete_item,
        methods=["DELETE"],
        response_model=models.item,
        tags=tags,
        summary=f"Delete a {access.name} item (kept in history)",
        operation_id=f"delete_{access.name}_item",
    )


def _profile_value(access: StoreAccess, field: str, value: Any) -> Any:
    """A profile field's value, validated (and normalised) by the profile schema."""
    if value is None:
        raise HTTPException(422, "a profile value cannot be null: delete the field instead")
    return validated(access.profile_updates, {field: value}).model_dump(mode="json")[field]
