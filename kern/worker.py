"""``kern worker``: the process that runs extraction jobs for an app (``docs/scaling.md``).

A worker needs the app's ``LearningMachine`` (the same stores, schemas and extraction model), so
it loads it from the app's code: ``--app module:name``, where ``name`` is a ``LearningMachine``,
an ``Agent`` with learning, or a function taking the worker's database and returning either.
The loops it runs are ``kern.learn.worker.run_worker``; this module is the process around them
(the app's code, the database URL, signals), above the agent layer like ``kern serve``.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from kern._sync import run_sync
from kern.agent import Agent
from kern.db import open_db
from kern.db.base import LearningDb
from kern.errors import ConfigError
from kern.learn.machine import LearningMachine
from kern.learn.worker import run_worker

__all__ = ["load_machine", "serve"]

log = logging.getLogger("kern.worker")


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

    if callable(target) and not isinstance(target, LearningMachine | Agent):
        if db is None:
            raise ConfigError(f"{spec!r} is a factory: give the worker a database (--db URL)")
        params = inspect.signature(target).parameters
        target = target(db) if params else target()
    if isinstance(target, Agent):
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
