"""``serve``: what ``kern serve --app module:agent`` runs (uvicorn over ``create_app``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kern._extras import require
from kern._load import load_spec
from kern.agent import Agent
from kern.server.app import create_app
from kern.server.auth import TokenConfig

__all__ = ["load_app", "serve"]


def load_app(app_spec: str, *, tokens_file: str | Path | None = None) -> Any:
    """``"module:name"`` → an ASGI app. ``name`` may be an ``Agent``, a FastAPI app (served
    as is), or a function with no arguments returning either."""
    target = load_spec(
        app_spec,
        accept=lambda t: isinstance(t, Agent) or _is_asgi_app(t),
        what="an Agent or an app",
    )
    if isinstance(target, Agent):
        return create_app(target, tokens=TokenConfig.load(tokens_file))
    return target


def serve(
    app_spec: str,
    host: str = "127.0.0.1",
    port: int = 8000,
    tokens_file: str | Path | None = None,
    *,
    log_level: str = "info",
) -> None:
    """Serve ``app_spec`` with uvicorn until interrupted. Tokens come from ``tokens_file``
    and/or ``KERN_ADMIN_TOKENS`` / ``KERN_USER_TOKENS``; they are never logged (uvicorn's
    access log has no headers, and the API takes tokens only in the Authorization header)."""
    uvicorn = require("uvicorn", "server")
    app = load_app(app_spec, tokens_file=tokens_file)
    print(startup_message(app, host, port), flush=True)
    uvicorn.run(app, host=host, port=port, log_level=log_level)


def startup_message(app: Any, host: str, port: int) -> str:
    """Where to point a browser and a client: the first thing ``kern serve`` prints."""
    everywhere = host in ("0.0.0.0", "::", "")
    shown = "localhost" if everywhere else host
    base = f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"
    note = " (listening on every interface)" if everywhere else ""
    if not any(getattr(route, "path", None) == "/ui" for route in app.routes):
        return f"kern serve: your app at {base}{note}"
    return (
        f"kern serve: web UI at {base}/ui/ · REST API at {base}/v1{note}\n"
        "Sign in with a token from KERN_ADMIN_TOKENS, KERN_USER_TOKENS or --tokens-file."
    )


def _is_asgi_app(value: object) -> bool:
    from fastapi import FastAPI

    return isinstance(value, FastAPI)
