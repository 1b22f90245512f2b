"""Shared plumbing for providers built on the official SDKs (openai, anthropic).

The SDKs' own retries are turned off (``max_retries=0`` on every client): they retry every
5xx, so a server that answers a request it cannot serve with a deterministic 500 was asked
four times per attempt. ``send_with_retries`` is the one retry loop for all providers: it
retries what can succeed (429, 408, 502–504, a 500 that does not say the request is
unsupported, timeouts and connection errors) with backoff that honours ``Retry-After``, and
nothing else. What is left is translated here, once, into kern's error tree by duck typing;
each error names the URL and says what to do.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import re
import threading
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from typing import Any, Generic, Protocol, TypeVar

from kern.errors import (
    ModelError,
    ModelHTTPError,
    ModelTimeoutError,
    short_error,
)

log = logging.getLogger("kern.models")

DEFAULT_MAX_RETRIES = 3
DEFAULT_TIMEOUT = 60.0
#: First backoff delay in seconds; doubled on each retry (with jitter), at most MAX_BACKOFF.
BASE_BACKOFF = 0.5
MAX_BACKOFF = 8.0
#: A server asking to wait longer than this (Retry-After) is not waited for: the error says so.
MAX_RETRY_AFTER = 60.0
#: Characters of a server's error body kept in an error message.
BODY_EXCERPT = 300

_RETRYABLE_STATUS = frozenset({408, 429, 502, 503, 504})
# Words with which servers say a request cannot be served, as opposed to a passing fault:
# llama-cpp-python answers a response_format it does not know with a 500 carrying pydantic's
# "validation error ... Input should be 'text' or 'json_object'".
_UNSUPPORTED = re.compile(
    r"unsupported|not supported|not implemented|must be one of|input should be|"
    r"validation error|invalid|unknown|unrecognized|not allowed|extra inputs|does not support",
    re.IGNORECASE,
)

T = TypeVar("T")


def says_unsupported(message: str) -> bool:
    """Whether an error body says the request itself cannot be served (so a retry cannot help)."""
    return bool(_UNSUPPORTED.search(message))


def retry_delay(exc: Exception, attempt: int) -> float | None:
    """Seconds to wait before retrying after ``exc`` (``attempt`` = retries so far), or None
    when retrying cannot help: a client error, or a server error that says the request is
    unsupported. Pure, so the policy is tested without a server."""
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        retryable = status in _RETRYABLE_STATUS or (
            status == 500 and not says_unsupported(_message(exc))
        )
        if not retryable:
            return None
        asked = _retry_after(getattr(getattr(exc, "response", None), "headers", None))
        if asked is not None:
            return asked if asked <= MAX_RETRY_AFTER else None
    elif not _transient(exc):
        return None
    delay: float = min(MAX_BACKOFF, BASE_BACKOFF * 2**attempt)
    return delay * (0.75 + random.random() / 2)  # jitter: clients do not retry in lockstep


def _transient(exc: Exception) -> bool:
    name = type(exc).__name__
    return "Timeout" in name or "Connection" in name


def _retry_after(headers: Mapping[str, str] | None) -> float | None:
    """``retry-after-ms`` (OpenAI's) or ``retry-after`` (seconds or an HTTP date)."""
    if headers is None:
        return None
    try:
        milliseconds = headers.get("retry-after-ms")
        if milliseconds is not None:
            return max(0.0, float(milliseconds) / 1000)
        value = headers.get("retry-after")
        if value is None:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            when = email.utils.parsedate_to_datetime(value)
            return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError, OverflowError):
        return None


async def send_with_retries(
    send: Callable[[], Awaitable[T]], *, provider: str, max_retries: int
) -> T:
    """``await send()``, retried up to ``max_retries`` times on what can succeed; SDK errors
    left over are raised as they are (the caller's boundary translates them)."""
    attempt = 0
    while True:
        try:
            return await send()
        except Exception as exc:
            delay = retry_delay(exc, attempt) if attempt < max_retries else None
            if delay is None:
                raise
            attempt += 1
            log.info(
                "%s: %s; retry %d/%d in %.1fs",
                provider,
                short_error(exc, 200),
                attempt,
                max_retries,
                delay,
            )
            await asyncio.sleep(delay)


def translate_error(
    exc: Exception, *, provider: str, hints: Mapping[int, str] | None = None
) -> ModelError:
    """Map an SDK exception (after kern's retries) to a kern ``ModelError`` that names the URL
    and says what to do; ``hints`` adds provider-specific advice per HTTP status."""
    status = getattr(exc, "status_code", None)
    url = _url(exc)
    where = f" from {url}" if url else ""
    if isinstance(status, int):
        body = short_error(_message(exc), BODY_EXCERPT)
        hint = (hints or {}).get(status) or _HINTS.get(status, "")
        if status == 500 and says_unsupported(body):
            hint = "the server cannot serve this request (not retried)"
        message = f"{body}{where}" + (f" — {hint}" if hint else "")
        return ModelHTTPError(message, provider=provider, status_code=status)
    if "Timeout" in type(exc).__name__:
        return ModelTimeoutError(f"request{_to(url)} timed out, after retries", provider=provider)
    if "Connection" in type(exc).__name__:
        return ModelError(
            f"cannot connect{_to(url)}: is the server running and base_url right? "
            f"({short_error(exc, BODY_EXCERPT)})",
            provider=provider,
        )
    return ModelError(short_error(exc, BODY_EXCERPT), provider=provider)


_HINTS = {
    401: "check the API key",
    403: "the key may not use this model or endpoint",
    404: "check base_url and the model id",
    429: "rate limited, after retries; lower the request rate or raise max_retries",
}


def _to(url: str | None) -> str:
    return f" to {url}" if url else ""


def _message(exc: Exception) -> str:
    """The server's own words: the SDKs' parsed ``message``, else the exception text."""
    message = getattr(exc, "message", None)
    return str(message) if message else str(exc)


def _url(exc: Exception) -> str | None:
    request: Any = getattr(exc, "request", None)
    if request is None:
        request = getattr(getattr(exc, "response", None), "request", None)
    try:
        url = getattr(request, "url", None)
    except RuntimeError:  # httpx raises when a response has no request attached
        return None
    return str(url) if url is not None else None


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
