"""``POST /users/{user_id}/runs``: one turn with the agent, as JSON or as server-sent events."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from kern.agent import (
    ContentDelta,
    RunCompleted,
    RunEvent,
    RunOutput,
    RunStarted,
    ToolCallCompleted,
    ToolCallStarted,
)
from kern.errors import KernError
from kern.learn.items import Item
from kern.learn.turn import TurnLearning
from kern.models.base import message_to_dict
from kern.server.access import StoreAccess
from kern.server.auth import ForUser
from kern.server.errors import error_status
from kern.server.schemas import (
    PathId,
    RecalledItem,
    RunLearning,
    RunRequest,
    RunResponse,
    profile_fields,
)
from kern.server.state import ServerState

__all__ = ["run_response", "runs_router", "sse"]

log = logging.getLogger("kern.server")

UserId = PathId

_SSE_DOC = (
    "With `stream: true` the answer is `text/event-stream`: events `run_started`, "
    "`content_delta` ({text}), `tool_call_started`, `tool_call_completed`, then "
    "`run_completed` (a RunResponse) or `error` ({error, detail, status})."
)


def run_response(output: RunOutput, state: ServerState | None = None) -> RunResponse:
    return RunResponse(
        run_id=output.run_id,
        session_id=output.session_id,
        user_id=output.user_id,
        content=output.content,
        recalled=output.recalled,
        recalled_items=[_recalled(item, state) for item in output.recalled_items],
        learning=_learning(output.learning),
        metrics=output.metrics.to_dict(),
        messages=[message_to_dict(m) for m in output.messages],
    )


def _learning(learning: TurnLearning | None) -> RunLearning | None:
    if learning is None:
        return None
    return RunLearning(job_id=learning.job_id, state=learning.state, error=learning.error)


def _recalled(item: Item[Any], state: ServerState | None) -> RecalledItem:
    access = state.accesses.get(item.store) if state is not None else None
    content = item.content
    if item.score is not None:
        reason = f"matched the message (search score {item.score:.2f})"
    elif access is not None and access.is_profile:
        reason = "profile field: always included"
        content = _profile_line(access, item)
    elif access is not None and access.is_session_context:
        reason = "this session's context: always included"
    elif access is not None and access.is_list:
        reason = "one of the most recent (no search match)"
    else:
        reason = "included by the store"
    return RecalledItem(
        id=item.id,
        store=item.store,
        kind=item.kind,
        content=content,
        score=item.score,
        reason=reason,
    )


def _profile_line(access: StoreAccess, item: Item[Any]) -> str:
    """A profile field as a person reads it: "Communication style: short answers"."""
    name = str(getattr(item.data, "field", ""))
    labels = {f.name: f.label for f in profile_fields(access.store.schema)}
    value = getattr(item.data, "value", None)
    shown = "; ".join(map(str, value)) if isinstance(value, list) else str(value)
    return f"{labels.get(name, name)}: {shown}"


def sse(event: str, data: Any) -> str:
    """One server-sent event; the JSON is on one line, so no ``data`` line can be forged."""
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def _event(event: RunEvent, state: ServerState) -> str:
    if isinstance(event, RunStarted):
        return sse("run_started", {"run_id": event.run_id, "session_id": event.session_id})
    if isinstance(event, ContentDelta):
        return sse("content_delta", {"text": event.text})
    if isinstance(event, ToolCallStarted):
        call = event.call
        return sse("tool_call_started", {"id": call.id, "name": call.name})
    if isinstance(event, ToolCallCompleted):
        call = event.call
        return sse(
            "tool_call_completed",
            {
                "id": call.id,
                "name": call.name,
                "content": event.content,
                "is_error": event.is_error,
            },
        )
    assert isinstance(event, RunCompleted)
    return sse("run_completed", run_response(event.output, state).model_dump(mode="json"))


def runs_router(state: ServerState) -> APIRouter:
    router = APIRouter(tags=["runs"])

    @router.post(
        "/users/{user_id}/runs",
        response_model=RunResponse,
        summary="Run one turn with the agent",
        description=_SSE_DOC,
        responses={
            200: {
                "content": {
                    "text/event-stream": {"schema": {"type": "string"}},
                }
            }
        },
    )
    async def create_run(user_id: UserId, principal: ForUser, body: RunRequest) -> Any:
        session_id = body.session_id or uuid.uuid4().hex
        # Checked before anything streams, so a refusal is a proper 403.
        await run_in_threadpool(state.check_session, user_id, session_id)
        if not body.stream:
            output = await state.agent.arun(
                body.message, user_id=user_id, session_id=session_id, metadata=body.metadata
            )
            return run_response(output, state)
        events = state.agent.arun(
            body.message,
            user_id=user_id,
            session_id=session_id,
            stream=True,
            metadata=body.metadata,
        )
        return StreamingResponse(
            _stream(events, state),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    return router


async def _stream(events: AsyncIterator[RunEvent], state: ServerState) -> AsyncIterator[str]:
    """The run's events; a failure after the 200 went out becomes an ``error`` event."""
    try:
        async for event in events:
            yield _event(event, state)
    except KernError as exc:
        yield sse(
            "error",
            {"error": type(exc).__name__, "detail": str(exc), "status": error_status(exc)},
        )
    except Exception:
        log.exception("a streamed run failed")
        yield sse("error", {"error": "InternalError", "detail": "internal error", "status": 500})
