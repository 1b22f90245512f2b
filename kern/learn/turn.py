"""What became of a turn's learning: queued, done, or failed with the error.

The run returns before its extraction job has run (it runs in the background), so the run's
output carries this small live object; the job runner settles it once the job ends. A failed
extraction never fails the run, and this is where it stays visible to the caller.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Literal, TypeAlias

from kern._sync import syncify

__all__ = ["TurnLearning", "TurnLearningState"]

TurnLearningState: TypeAlias = Literal["queued", "done", "failed"]


class TurnLearning:
    """The state of one turn's extraction job: ``"queued"`` until it ends, then ``"done"`` or
    ``"failed"`` (with ``error``, one bounded line). A failed job keeps its retries: a later
    process or ``kern worker`` may still run it; this status reports the attempt made here.

    Jobs left to a worker (``LearningMachine(run_jobs=False)``) stay ``"queued"`` here; their
    outcome is in the job queue (``kern learnings jobs``).
    """

    __slots__ = ("_settled", "error", "job_id", "state")

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self.state: TurnLearningState = "queued"
        self.error: str | None = None
        # A threading event: jobs may be settled on another thread's event loop.
        self._settled = threading.Event()

    @property
    def failed(self) -> bool:
        return self.state == "failed"

    def settle(self, error: str | None = None) -> None:
        """Record the job's outcome (called by the job runner)."""
        self.error = error
        self.state = "failed" if error is not None else "done"
        self._settled.set()

    async def await_for(self, timeout: float | None = None) -> TurnLearningState:
        """Wait (at most ``timeout`` seconds) until the job has ended; return the state."""
        await asyncio.to_thread(self._settled.wait, timeout)
        return self.state

    wait_for = syncify(await_for)

    def __repr__(self) -> str:
        error = f", error={self.error!r}" if self.error else ""
        return f"TurnLearning({self.state!r}, job_id={self.job_id!r}{error})"
