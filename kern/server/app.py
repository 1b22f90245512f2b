"""``create_app``: the REST API (under ``/v1``), its OpenAPI document and the web UI (``/ui``)."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kern import __version__
from kern.agent import Agent
from kern.errors import ConfigError, KernError, TooLargeError
from kern.limits import MAX_IMPORT_BYTES, MAX_REQUEST_BYTES
from kern.server.auth import BearerAuth, TokenConfig
from kern.server.errors import install_error_handlers
from kern.server.items import items_router
from kern.server.jobs import jobs_router
from kern.server.proposals import proposals_router
from kern.server.runs import runs_router
from kern.server.schemas import ErrorBody
from kern.server.state import ServerState
from kern.server.users import users_router

__all__ = ["UI_DIR", "create_app"]

log = logging.getLogger("kern.server")

UI_DIR = Path(__file__).with_name("ui")

_DESCRIPTION = """\
Run a learning agent and manage what it learned. The web UI is at `/ui/`.

**Tokens.** Every `/v1` endpoint needs `Authorization: Bearer <token>` (401 otherwise). An
*admin token* acts on any user. A *user token* is bound to one `user_id`: a path naming
another user is refused (403), and ids of another user's items are unknown (404).

**Shared namespaces.** Entity memory, learned knowledge and the decision log may be shared
(namespace `global` or a group). A user token reads the shared items its user's scope
includes (without who produced them); only admin tokens create, change or delete shared
items. Another user's proposals are never shown to a user token.

**Proposals** are approved or rejected by an admin or by the user whose run proposed them.
**Import** is admin-only; **export** and **forget** are for the user or an admin.

**Jobs** (extraction after each turn): admins list all of them, a user token its user's own;
a failed job is retried by an admin or by its user.
"""

# The UI loads only its own files and talks only to this server.
_UI_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def create_app(agent: Agent, *, tokens: TokenConfig, ui: bool = True) -> FastAPI:
    """A FastAPI app serving ``agent``: runs, learnings, proposals, users, and the UI.

    Tokens: ``TokenConfig.load()`` reads ``KERN_ADMIN_TOKENS`` / ``KERN_USER_TOKENS`` (or a
    file). The app does not own the agent or its database: closing them is the caller's job.
    """
    if not isinstance(agent, Agent):
        raise ConfigError(f"create_app needs a kern Agent, got {type(agent).__name__}")
    if not isinstance(tokens, TokenConfig) or not len(tokens):
        raise ConfigError(
            "no API tokens configured: set KERN_ADMIN_TOKENS (and/or KERN_USER_TOKENS="
            "'token:user_id,…') or pass a tokens file; every endpoint needs a token"
        )
    state = ServerState.build(agent)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        if state.machine is not None:  # let background extraction finish (bounded)
            try:
                await state.machine.await_for_jobs()
            except KernError as exc:  # jobs are durable: the next process resumes them
                log.warning("could not wait for extraction jobs at shutdown: %s", exc)

    app = FastAPI(
        title="kern",
        version=__version__,
        description=_DESCRIPTION,
        lifespan=lifespan,
    )
    errors: dict[int | str, dict[str, object]] = {
        401: {"model": ErrorBody, "description": "No token, or an unknown one"},
        403: {"model": ErrorBody, "description": "The token may not do this"},
    }
    v1 = APIRouter(prefix="/v1", responses=errors)
    for router in (
        users_router(state),
        runs_router(state),
        items_router(state),
        proposals_router(state),
        jobs_router(state),
    ):
        v1.include_router(router)
    app.include_router(v1)
    install_error_handlers(app)
    app.state.kern = state

    if ui:
        if not (UI_DIR / "index.html").is_file():
            raise ConfigError(f"the web UI files are missing from {UI_DIR}; pass ui=False")
        app.mount("/ui", StaticFiles(directory=UI_DIR, html=True), name="ui")

        @app.get("/", include_in_schema=False)
        def root() -> RedirectResponse:
            return RedirectResponse("/ui/")

    app.add_middleware(BodyLimit)  # inside BearerAuth: an unknown token is 401 before 413
    app.add_middleware(BearerAuth, tokens=tokens)
    app.add_middleware(SecurityHeaders)
    return app


class BodyLimit:
    """Refuse (413) a request body over ``kern.limits.MAX_REQUEST_BYTES`` before any of it is
    parsed (``MAX_IMPORT_BYTES`` for a user import, a whole export). A declared
    ``Content-Length`` is judged at once; a body without one is read up to the limit and then
    handed on, so no route ever holds more than the limit in memory."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        limit = MAX_IMPORT_BYTES if path.endswith("/import") else MAX_REQUEST_BYTES
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit():
            if int(declared) > limit:
                await _too_large(send, int(declared), limit)
                return
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                await self.app(scope, _replay([message]), send)
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > limit:
                await _too_large(send, size, limit, at_least=True)
                return
            if not message.get("more_body", False):
                break
        body = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        await self.app(scope, _replay([body], then=receive), send)


def _replay(messages: list[Message], then: Receive | None = None) -> Receive:
    async def receive() -> Message:
        if messages:
            return messages.pop(0)
        if then is not None:
            return await then()
        return {"type": "http.disconnect"}

    return receive


async def _too_large(send: Send, size: int, limit: int, *, at_least: bool = False) -> None:
    received = f"more than {limit:,}" if at_least else f"{size:,}"
    detail = (
        f"the request body is too large: {received} bytes, the limit is {limit:,} (kern.limits)"
    )
    body = json.dumps({"detail": detail, "error": TooLargeError.__name__}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class SecurityHeaders:
    """``nosniff`` everywhere, ``no-store`` on API answers (personal data), a strict content
    security policy on the UI."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-content-type-options", b"nosniff"))
                headers.append((b"referrer-policy", b"no-referrer"))
                if path.startswith("/v1") and not any(k == b"cache-control" for k, _ in headers):
                    headers.append((b"cache-control", b"no-store"))
                if path.startswith("/ui"):
                    headers.append((b"content-security-policy", _UI_POLICY.encode()))
                    headers.append((b"x-frame-options", b"DENY"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
