"""The sync facade's engine: one private event loop on a daemon thread.

Sync entry points (``Agent.run``, ``print_response``, store methods) submit their coroutine to
this loop and wait. Compared with ``asyncio.run`` per call this (a) works inside a running
event loop such as Jupyter's, (b) keeps background work — extraction jobs started by one run —
alive between sync calls, and (c) reuses SDK connection pools across calls.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import contextvars
import functools
import inspect
import logging
import queue
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

from kern.errors import ConfigError

T = TypeVar("T")
P = ParamSpec("P")
log = logging.getLogger("kern")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None


def background_loop() -> asyncio.AbstractEventLoop:
    """The shared loop, started on first use."""
    global _loop, _thread
    with _lock:
        if _loop is None:
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="kern-loop", daemon=True)
            thread.start()
            _loop, _thread = loop, thread
        return _loop


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion from synchronous code and return its result."""
    loop = background_loop()
    if threading.current_thread() is _thread:
        coro.close()
        raise ConfigError(
            "a sync kern method was called from inside kern's own event loop; "
            "use the async method (e.g. `await agent.arun(...)`) there"
        )
    return asyncio.run_coroutine_threadsafe(coro, loop).result()


def syncify(method: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, T]:
    """The sync twin of an async method, by the naming rule ``aname`` → ``name``:
    ``add = syncify(aadd)`` in a class body. Same signature; runs through ``run_sync``."""

    @functools.wraps(method)
    def sync(*args: P.args, **kwargs: P.kwargs) -> T:
        return run_sync(method(*args, **kwargs))

    name = method.__name__.removeprefix("a")
    sync.__name__, sync.__qualname__ = name, method.__qualname__[: -len(method.__name__)] + name
    sync.__doc__ = f"Synchronous ``{method.__name__}``: {method.__doc__ or ''}".strip()
    return sync


#: Threads for plug-point code (sync tools, custom stores' plain hooks), apart from the loop's
#: default pool, which does kern's leaf work (database calls, a local model's forward pass).
#: Plug-point code may call kern's sync API, which waits on leaf work: with one shared pool,
#: as many such calls at once as the pool has threads would hold every thread it waits for.
_plug_threads = ThreadPoolExecutor(thread_name_prefix="kern-plug")


async def call_any(function: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """Call a sync or async callable from async code; sync ones run in a worker thread.

    Plug points (tools, custom stores, embedders) accept both kinds; this is the one place
    that tells them apart, so blocking code never stalls the event loop. Sync ones run on
    their own threads (``_plug_threads``), so they may call kern's sync API.
    """
    if inspect.iscoroutinefunction(function):
        return await function(*args, **kwargs)
    call = functools.partial(contextvars.copy_context().run, function, *args, **kwargs)
    result = await asyncio.get_running_loop().run_in_executor(_plug_threads, call)
    if inspect.isawaitable(result):  # a sync callable that returned an awaitable
        return await result
    return result


_DONE = object()


def iterate_sync(agen: AsyncIterator[T]) -> Iterator[T]:
    """Drive an async iterator on the shared loop and yield its items synchronously.

    Items cross threads through a queue; closing the returned generator early cancels the
    producer so no work is left running.
    """
    loop = background_loop()
    items: queue.Queue[Any] = queue.Queue()

    async def pump() -> None:
        try:
            async for item in agen:
                items.put(item)
        except BaseException as exc:  # handed to the consumer thread and re-raised there
            items.put(exc)
        finally:
            items.put(_DONE)

    future = asyncio.run_coroutine_threadsafe(pump(), loop)
    try:
        while (item := items.get()) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        future.cancel()


def _other_tasks() -> list[asyncio.Task[Any]]:
    """The unfinished tasks of the running loop, but the one asking."""
    current = asyncio.current_task()
    return [t for t in asyncio.all_tasks() if t is not current]


def wait_for_background(timeout: float = 10.0) -> None:
    """Wait (bounded) for background tasks on the shared loop, e.g. extraction jobs.

    Jobs are durable, so anything still unfinished is resumed by the next process; waiting
    avoids needless resumption in short scripts and lets tests close databases cleanly.
    """
    loop = _loop
    if loop is None or not loop.is_running() or threading.current_thread() is _thread:
        return

    async def wait_for_tasks() -> None:
        pending = _other_tasks()
        if pending:
            await asyncio.wait(pending, timeout=timeout)

    with contextlib.suppress(Exception):  # best effort (also runs at interpreter exit)
        asyncio.run_coroutine_threadsafe(wait_for_tasks(), loop).result(timeout=timeout + 1)


#: How long an exiting process waits for its background work (extraction jobs) to finish.
EXIT_WAIT = 10.0


def _finish_at_exit() -> None:
    """At interpreter exit: wait (bounded) for background work, then stop what is left with
    one log line. Left running, it would fail on the executors that exit shuts down and print
    a misleading job failure and a traceback; stopped, an extraction job stays queued and the
    next process or ``kern worker`` runs it once its lease expires."""
    wait_for_background(EXIT_WAIT)
    loop = _loop
    if loop is None or not loop.is_running():
        return

    async def stop_the_rest() -> int:
        rest = _other_tasks()
        for task in rest:
            task.cancel()
        if rest:
            await asyncio.wait(rest, timeout=1.0)
        return len(rest)

    with contextlib.suppress(Exception):
        stopped = asyncio.run_coroutine_threadsafe(stop_the_rest(), loop).result(timeout=2.0)
        if stopped:
            log.warning(
                "exiting with background work unfinished after %.0f s (%d task(s)): "
                "extraction jobs stay queued; the next process or `kern worker` runs them",
                EXIT_WAIT,
                stopped,
            )


# Registered with threading (not only atexit) so it runs *before* concurrent.futures shuts its
# worker threads down at interpreter exit: background jobs still need ``asyncio.to_thread``.
_register = getattr(threading, "_register_atexit", atexit.register)
_register(_finish_at_exit)
