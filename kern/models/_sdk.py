"""Shared plumbing for providers built on the official SDKs (openai, anthropic).

Both SDKs retry 429, 5xx, connection errors and timeouts with exponential backoff
(``max_retries``); what is left after those retries is translated here, once, into kern's
error tree by duck typing, so each provider module stays a thin wire adapter.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, Callable
from typing import Generic, Protocol, TypeVar

from kern.errors import ModelError, ModelHTTPError, ModelTimeoutError

DEFAULT_MAX_RETRIES = 3
DEFAULT_TIMEOUT = 60.0


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
    """SDK clients made on first use, one per event loop, each closed with its loop.

    An httpx connection pool belongs to the loop that opened it, so a model used from two
    loops (kern's sync facade and the caller's own asyncio code) needs a client per loop.
    Making clients lazily also lets a model be constructed with no key and no network. An
    injected client is used from every loop and never closed: it is the caller's.

    A client is closed by ``aclose``, or else when its loop shuts down: ``asyncio.run`` (and
    ``asyncio.Runner``, pytest-asyncio, uvicorn) finalise every unfinished async generator of
    a loop before closing it, so each client is paired with a generator that waits at its
    ``yield`` and closes the client in ``finally``. A script calling ``asyncio.run`` once per
    request therefore leaves no connection behind.
    """

    def __init__(self, make: Callable[[], C], injected: C | None = None) -> None:
        self._make = make
        self._injected = injected
        self._clients: dict[asyncio.AbstractEventLoop, tuple[C, AsyncGenerator[None]]] = {}
        self._lock = threading.Lock()

    def get(self) -> C:
        if self._injected is not None:
            return self._injected
        loop = asyncio.get_running_loop()
        with self._lock:
            for stale in [lp for lp in self._clients if lp.is_closed()]:
                del self._clients[stale]  # a loop closed without finalising its generators
            entry = self._clients.get(loop)
            if entry is None:
                client = self._make()
                guard = _closed_at_shutdown(client)
                # Started inside this loop, the loop finalises it. The task needs no reference:
                # the loop holds it until its one step, in which the generator reaches ``yield``.
                asyncio.ensure_future(anext(guard))  # noqa: RUF006
                entry = self._clients[loop] = (client, guard)
            return entry[0]

    async def aclose(self) -> None:
        current = asyncio.get_running_loop()
        with self._lock:
            clients, self._clients = self._clients, {}
        for loop, (_, guard) in clients.items():
            if loop is current:
                await guard.aclose()
            elif loop.is_running():  # close it on its own loop, without waiting here
                asyncio.run_coroutine_threadsafe(guard.aclose(), loop)


async def _closed_at_shutdown(client: _Closable) -> AsyncGenerator[None]:
    """Wait at ``yield`` until closed (by ``SdkClients.aclose`` or the loop's shutdown), then
    close ``client``."""
    try:
        yield
    finally:
        await client.close()
