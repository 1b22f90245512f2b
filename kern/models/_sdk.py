"""Shared plumbing for providers built on the official SDKs (openai, anthropic).

Both SDKs retry 429, 5xx, connection errors and timeouts with exponential backoff
(``max_retries``); what is left after those retries is translated here, once, into kern's
error tree by duck typing, so each provider module stays a thin wire adapter.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from kern.errors import MissingDependencyError, ModelError, ModelHTTPError, ModelTimeoutError

DEFAULT_MAX_RETRIES = 3
DEFAULT_TIMEOUT = 60.0


def require(module: str, extra: str) -> ModuleType:
    """Import an optional dependency or explain which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(module, extra) from exc


def translate_error(exc: Exception, *, provider: str) -> ModelError:
    """Map an SDK exception (after its own retries) to a kern ``ModelError``."""
    name = type(exc).__name__
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        message = getattr(exc, "message", None) or str(exc)
        return ModelHTTPError(str(message), provider=provider, status_code=status)
    if "Timeout" in name:
        return ModelTimeoutError("request timed out after retries", provider=provider)
    if "Connection" in name:
        return ModelError(f"cannot connect: {exc}", provider=provider)
    return ModelError(f"{name}: {exc}", provider=provider)
