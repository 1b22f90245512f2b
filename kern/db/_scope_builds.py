"""Search snapshots of large scopes, built in the background.

Rebuilding a scope's snapshot (``kern.db._scopes.ScopeRows``) after a write reads the whole
scope: ~1 s for a 100,000-item shared namespace on PostgreSQL. A search that paid it inline
took seconds, and a namespace written to every few seconds (many users' agents adding what
they learned) gave every other search such a wait. ``ScopeBuilds`` runs such builds in
threads instead, at most one per scope at a time, while searches read the database; the
snapshot serves once it is built, and only under the token it was read with (the cache's
check, unchanged), so nothing stale is ever served.

A build that fails is said in one WARNING line and not tried again for that scope for
``RETRY_SECONDS`` (its searches read the database meanwhile): a broken read repeated by
every search would cost each of them a failed scope read and the log a line each.
``close`` stops taking builds and joins the running ones.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable

from kern.db._scopes import ScopeKey

__all__ = ["RETRY_SECONDS", "ScopeBuilds"]

logger = logging.getLogger(__name__)

#: How long a scope whose build failed is not built again (its searches read the database).
RETRY_SECONDS = 30.0

#: How long ``close`` waits for a running build (one scope read) before giving up on it.
JOIN_SECONDS = 60.0


class ScopeBuilds:
    """Snapshot builds running in daemon threads, one per scope at a time; thread-safe."""

    def __init__(self, owner: str) -> None:
        self._owner = owner
        self._lock = threading.Lock()
        self._running: dict[ScopeKey, threading.Thread] = {}
        self._failed: dict[ScopeKey, float] = {}
        self._stopping = False
        _LIVE.add(self)

    @property
    def stopping(self) -> bool:
        """True once ``close`` was called: a running build stops at its next step."""
        return self._stopping

    def running(self, key: ScopeKey) -> bool:
        with self._lock:
            return key in self._running

    def start(self, key: ScopeKey, build: Callable[[], object]) -> bool:
        """Run ``build`` in a thread unless one runs for ``key`` already, the last one failed
        less than ``RETRY_SECONDS`` ago, or ``close`` was called; True if it started."""
        with self._lock:
            failed = self._failed.get(key)
            if failed is not None and time.monotonic() - failed < RETRY_SECONDS:
                return False
            if self._stopping or key in self._running:
                return False
            thread = threading.Thread(
                target=self._run, args=(key, build), name="kern-scope-build", daemon=True
            )
            self._running[key] = thread
            self._failed.pop(key, None)
        thread.start()
        return True

    def _run(self, key: ScopeKey, build: Callable[[], object]) -> None:
        try:
            build()
        except Exception as exc:
            with self._lock:
                self._failed[key] = time.monotonic()
            if not self._stopping:
                logger.warning(
                    "%s: building the search snapshot of %s %r failed (%s: %s); its searches "
                    "read the database, and it is built again in %.0f s at the earliest",
                    self._owner,
                    key[0],
                    key[1],
                    type(exc).__name__,
                    exc,
                    RETRY_SECONDS,
                )
            logger.debug("the failed build of %r", key, exc_info=True)
        finally:
            with self._lock:
                self._running.pop(key, None)

    def wait(self, timeout: float = JOIN_SECONDS) -> None:
        """Until the builds running now have finished (tests, benchmarks, ``close``)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            threads = list(self._running.values())
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def close(self) -> None:
        """Take no more builds and join the running ones (each stops after its current
        statement); one that does not end within ``JOIN_SECONDS`` is left to its daemon
        thread, with a WARNING."""
        self._stopping = True
        self.wait()
        with self._lock:
            left = [key for key, thread in self._running.items() if thread.is_alive()]
        if left:
            logger.warning(
                "%s: closed while the search snapshots of %s were still being built",
                self._owner,
                ", ".join(f"{store} {scope!r}" for store, scope in left),
            )

    def _forget_threads(self) -> None:
        """In a forked child: the parent's threads do not exist there."""
        self._lock = threading.Lock()
        self._running = {}


_LIVE: weakref.WeakSet[ScopeBuilds] = weakref.WeakSet()


def _after_fork() -> None:
    for builds in list(_LIVE):
        builds._forget_threads()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
