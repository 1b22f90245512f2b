"""``serve``: what ``kern serve --app module:agent`` runs (uvicorn over ``create_app``)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

from kern._extras import require
from kern.agent import Agent
from kern.errors import ConfigError
from kern.server.app import create_app
from kern.server.auth import TokenConfig

__all__ = ["load_app", "serve"]


def load_app(app_spec: str, *, tokens_file: str | Path | None = None) -> Any:
    """``"module:name"`` → an ASGI app. ``name`` may be an ``Agent``, a FastAPI app (served
    as is), or a function with no arguments returning either."""
    module_name, sep, attr = app_spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"--app takes 'module:name' (e.g. 'myapp:agent'), got {app_spec!r}")
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")  # like `python -m`: modules of the working directory
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import {module_name!r}: {exc}") from exc
    target = getattr(module, attr, None)
    if target is None:
        raise ConfigError(f"module {module_name!r} has no attribute {attr!r}")
    if callable(target) and not isinstance(target, Agent) and not _is_asgi_app(target):
        try:
            target = target()
        except TypeError as exc:
            raise ConfigError(
                f"{app_spec!r} is not an Agent or an app, nor a function with no arguments "
                f"returning one ({exc})"
            ) from exc
    if isinstance(target, Agent):
        return create_app(target, tokens=TokenConfig.load(tokens_file))
    if _is_asgi_app(target):
        return target
    raise ConfigError(f"{app_spec!r} is a {type(target).__name__}, not an Agent or an app")


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
    uvicorn.run(app, host=host, port=port, log_level=log_level)


def _is_asgi_app(value: object) -> bool:
    from fastapi import FastAPI

    return isinstance(value, FastAPI)
