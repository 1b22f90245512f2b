"""Shared plumbing for providers built on the official SDKs (openai, anthropic).

Both SDKs retry 429, 5xx, connection errors and timeouts with exponential backoff
(``max_retries``); what is left after those retries is translated here, once, into kern's
error tree by duck typing, so each provider module stays a thin wire adapter.
"""

from __future__ import annotations

import asyncio
import importlib
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Generic, Protocol, TypeVar

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


class _Closable(Protocol):
    async def close(self) -> None: ...


C = TypeVar("C", bound=_Closable)


class SdkClients(Generic[C]):
    """SDK clients made on first use, one per event loop, all closed by ``aclose``.

    An httpx connection pool belongs to the loop that opened it, so a model used from two
    loops (kern's sync facade and the caller's own asyncio code) needs a client per loop.
    Making clients lazily also lets a model be constructed with no key and no network. An
    injected client is used from every loop and never closed: it is the caller's.
    """

    def __init__(self, make: Callable[[], C], injected: C | None = None) -> None:
        self._make = make
        self._injected = injected
        self._clients: dict[asyncio.AbstractEventLoop, C] = {}
        self._lock = threading.Lock()

    def get(self) -> C:
        if self._injected is not None:
            return self._injected
        loop = asyncio.get_running_loop()
        with self._lock:
            for stale in [lp for lp in self._clients if lp.is_closed()]:
                del self._clients[stale]  # its connections died with its loop
            client = self._clients.get(loop)
            if client is None:
                client = self._clients[loop] = self._make()
            return client

    async def aclose(self) -> None:
        current = asyncio.get_running_loop()
        with self._lock:
            clients, self._clients = self._clients, {}
        for loop, client in clients.items():
            if loop is current:
                await client.close()
            elif loop.is_running():  # close it on its own loop, without waiting here
                asyncio.run_coroutine_threadsafe(client.close(), loop)
