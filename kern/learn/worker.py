"""Extraction workers: loops that drain the durable job queue (``kern worker`` runs them).

Every run writes one extraction job (``LearningMachine.learn``). The process that served the run
starts it at once; workers take every other runnable job: those of app processes that stopped
or crashed (once the job's lease expires), retries that are due, and, at scale, all of them.

What makes several workers safe (see ``kern.db.sql``): a claim is a lease; Postgres hands each
job to one claimer (``FOR UPDATE SKIP LOCKED``), SQLite serialises claims; a job's writes commit
in the same transaction as its completion, and only while the claim is still held, so a job is
applied once even when its worker was killed mid-job and another took it over. A failed attempt
goes back to the queue with exponential backoff (``LearningMachine``), up to ``max_attempts``.
The ``kern worker`` process around these loops (loading the app, signals) is ``kern.worker``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time

from kern.errors import ConfigError, KernError
from kern.learn.machine import LearningMachine

__all__ = ["run_worker"]

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
