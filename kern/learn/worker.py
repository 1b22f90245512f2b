"""Extraction workers: processes that drain the durable job queue (``kern worker``).

Every run writes one extraction job (``LearningMachine.learn``). The process that served the run
starts it at once; workers take every other runnable job: those of app processes that stopped
or crashed (once the job's lease expires), retries that are due, and, at scale, all of them.

A worker needs the app's ``LearningMachine`` (the same stores, schemas and extraction model), so
it loads it from the app's code: ``--app module:name``, where ``name`` is a ``LearningMachine``,
an ``Agent`` with learning, or a function taking the worker's database and returning either.

What makes several workers safe (see ``kern.db.sql``): a claim is a lease; Postgres hands each
job to one claimer (``FOR UPDATE SKIP LOCKED``), SQLite serialises claims; a job's writes commit
in the same transaction as its completion, and only while the claim is still held, so a job is
applied once even when its worker was killed mid-job and another took it over. A failed attempt
goes back to the queue with exponential backoff (``LearningMachine``), up to ``max_attempts``.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from kern._sync import run_sync
from kern.db import open_db
from kern.db.base import LearningDb
from kern.errors import ConfigError, KernError
from kern.learn.machine import LearningMachine

__all__ = ["load_machine", "run_worker", "serve"]

log = logging.getLogger("kern.worker")

# After an error reaching the database, wait this long (doubling, up to the poll interval x 30)
# before claiming again: a restarting database is not hammered by every worker at once.
_ERROR_PAUSE = 0.5


async def run_worker(
    machine: LearningMachine,
    *,
    concurrency: int = 4,
    poll_interval: float = 1.0,
    stop: threading.Event | None = None,
    until_idle: bool = False,
) -> int:
    """Run extraction jobs from ``machine``'s queue, ``concurrency`` at a time, until ``stop``
    is set (each loop finishes its current job first) or, with ``until_idle``, until no job is
    left unfinished. An idle loop polls every ``poll_interval`` seconds. Returns the number of
    jobs run (applied, failed or handed over)."""
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ConfigError(f"concurrency must be a positive integer, got {concurrency!r}")
    if not poll_interval > 0:
        raise ConfigError(
            f"poll_interval must be a positive number of seconds, got {poll_interval}"
        )
    stop = stop or threading.Event()
    db = machine.db  # fails now, clearly, if the machine has no database
    done = [0] * concurrency

    async def loop(index: int) -> None:
        pause = _ERROR_PAUSE
        while not stop.is_set():
            try:
                ran = await machine.aprocess_pending(limit=1)
                if not ran and until_idle and not await asyncio.to_thread(db.count_unfinished_jobs):
                    return
            except KernError as exc:  # the database is unreachable: retry later, do not die
                log.error("worker %d: %s; retrying in %.1fs", index, exc, pause)
                await _sleep(pause, stop)
                pause = min(pause * 2, poll_interval * 30)
                continue
            pause = _ERROR_PAUSE
            done[index] += ran
            if not ran:
                await _sleep(poll_interval, stop)

    await asyncio.gather(*(loop(i) for i in range(concurrency)))
    return sum(done)


async def _sleep(seconds: float, stop: threading.Event) -> None:
    """Sleep up to ``seconds``, waking early when ``stop`` is set."""
    # A threading.Event (set from a signal handler or another thread), so it is polled.
    deadline = time.monotonic() + seconds
    while not stop.is_set() and (left := deadline - time.monotonic()) > 0:  # noqa: ASYNC110
        await asyncio.sleep(min(left, 0.05))


def serve(
    *,
    db_url: str | None,
    app: str,
    concurrency: int = 4,
    poll_interval: float = 1.0,
    until_idle: bool = False,
) -> int:
    """``kern worker``: load the app's machine, run until SIGTERM or SIGINT (or idle), close.

    SIGTERM and SIGINT stop claiming; jobs in progress finish before the process exits. A
    worker killed outright loses nothing: its jobs are retried once their lease expires.
    """
    db = open_db(db_url) if db_url else None
    try:
        machine = load_machine(app, db)
        stop = threading.Event()
        restore = _stop_on_signals(stop)
        try:
            log.info(
                "kern worker: %d concurrent jobs, lease %.0fs, database %r",
                concurrency,
                machine.job_lease,
                machine.db,
            )
            count = run_sync(
                run_worker(
                    machine,
                    concurrency=concurrency,
                    poll_interval=poll_interval,
                    stop=stop,
                    until_idle=until_idle,
                )
            )
        finally:
            restore()
        log.info("kern worker: stopped after %d jobs", count)
        return count
    finally:
        if db is not None:
            db.close()


def _stop_on_signals(stop: threading.Event) -> Callable[[], None]:
    """Set ``stop`` on SIGTERM and SIGINT (main thread only); returns the undo."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handle(signum: int, frame: FrameType | None) -> None:
        log.info("kern worker: %s, finishing the jobs in progress", signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGTERM, signal.SIGINT)}

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return restore


def load_machine(spec: str, db: LearningDb | None = None) -> LearningMachine:
    """The app's ``LearningMachine`` named by ``"module:name"`` (see the module docstring).

    With ``db``, a factory receives it, and a machine that has no database of its own is given
    it; a machine or agent that already has a database must not be given another.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(
            f"--app takes 'module:name' (e.g. 'myapp.learning:machine'), got {spec!r}"
        )
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")  # like `python -m`: modules of the working directory
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import {module_name!r}: {exc}") from exc
    for part in attr.split("."):
        if not hasattr(target, part):
            raise ConfigError(f"{module_name!r} has no attribute {attr!r}")
        target = getattr(target, part)

    if callable(target) and not isinstance(target, LearningMachine) and not _is_agent(target):
        if db is None:
            raise ConfigError(f"{spec!r} is a factory: give the worker a database (--db URL)")
        params = inspect.signature(target).parameters
        target = target(db) if params else target()
    if _is_agent(target):
        machine = target.get_learning_machine()
        if machine is None:
            raise ConfigError(f"the agent {spec!r} has no learning (Agent(learning=...))")
        target = machine
    if not isinstance(target, LearningMachine):
        raise ConfigError(
            f"{spec!r} is a {type(target).__name__}, not a LearningMachine, an Agent or a "
            "function returning one"
        )
    _attach_db(target, db, spec)
    target.model  # noqa: B018 - fails now, clearly, when there is no extraction model
    return target


def _is_agent(target: object) -> bool:
    """An ``Agent`` (or anything that hands out its learning machine the same way), recognised
    without importing ``kern.agent``: the worker sits below the agent layer."""
    return not isinstance(target, type) and callable(getattr(target, "get_learning_machine", None))


def _attach_db(machine: LearningMachine, db: LearningDb | None, spec: str) -> None:
    try:
        own = machine.db
    except ConfigError:
        own = None
    if db is None and own is None:
        raise ConfigError(f"{spec!r} has no database: pass --db URL")
    if db is not None and own is None:
        machine.attach(db=db, model=machine.model, agent_id=machine.agent_id)
    elif db is not None and own is not db:
        raise ConfigError(
            f"{spec!r} already has a database ({own!r}); drop --db, or make {spec!r} a function "
            "that takes the database"
        )
