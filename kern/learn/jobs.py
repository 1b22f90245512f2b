"""The extraction job runner: durable jobs, claimed under a lease, run in the background.

Every turn becomes one job row before anything runs (the agent stores it with the turn's run),
so a crash loses nothing: the process that served the turn runs it at once; any process (or
``kern worker``) takes over a job whose lease expired. A failed attempt goes back to the queue
with exponential backoff and is retried in this process once its backoff is over. What a job
does (extraction) is given to the runner; the runner knows only the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from kern.context import RunContext
from kern.db.base import JobRecord, LearningDb
from kern.errors import JobLostError, KernError, short_error
from kern.learn.items import new_id
from kern.learn.stores.base import Turn
from kern.learn.turn import TurnLearning

__all__ = ["EXTRACT_JOB", "JOB_ERROR_LIMIT", "JobRunner", "new_job"]

log = logging.getLogger("kern.learn")

EXTRACT_JOB = "extract"

#: Characters of a failed job's error kept (in the queue, the log line and the run's output).
JOB_ERROR_LIMIT = 500

#: Seconds between two deletions of finished jobs by one runner.
_CLEANUP_INTERVAL = 3600.0

#: What a job does: learn from the turn, applying its writes together with ``job``'s completion.
Work = Callable[[RunContext, Turn, JobRecord], Awaitable[None]]


def new_job(ctx: RunContext, turn: Turn) -> JobRecord:
    """The extraction job of a finished turn (not stored yet)."""
    return JobRecord(
        id=new_id(),
        kind=EXTRACT_JOB,
        payload={"user": turn.user, "assistant": turn.assistant, "input": ctx.input},
        user_id=ctx.user_id,
        session_id=ctx.session_id,
        agent_id=ctx.agent_id,
        run_id=ctx.run_id,
    )


class JobRunner:
    """Runs one machine's extraction jobs; ``db`` is read on use (it may be attached late)."""

    def __init__(
        self,
        db: Callable[[], LearningDb],
        work: Work,
        *,
        lease: float,
        retention: float | None,
        background: bool,
        run_jobs: bool,
    ) -> None:
        self._db = db
        self._work = work
        self.lease = lease
        self.retention = retention
        self.background = background
        self.run_jobs = run_jobs
        self._next_cleanup = 0.0  # time.monotonic() of the next deletion of finished jobs
        self._tasks: dict[str, set[asyncio.Task[Any]]] = {}
        # job id → the status a run's output carries, until this process has run the job.
        self._statuses: dict[str, TurnLearning] = {}
        self._retries: set[asyncio.Task[Any]] = set()  # failed jobs waiting out their backoff
        self._resumed = False

    async def submit(self, job: JobRecord, *, stored: bool) -> TurnLearning:
        """Run ``job`` (in the background) unless workers do; ``stored``: the job is in the
        queue already (else it is stored here first). Returns the job's live status."""
        if not stored:
            await asyncio.to_thread(self._db().enqueue_job, job)
        status = TurnLearning(job.id)
        if not self.run_jobs:
            return status  # a worker claims it
        self._statuses[job.id] = status
        if self.background:
            self._track(job.user_id or "", self._run_claimed(job.id), f"kern-extract-{job.id}")
        else:
            await self._run_claimed(job.id)
        return status

    def _track(self, key: str, work: Awaitable[Any], name: str) -> None:
        task = asyncio.ensure_future(work)
        task.set_name(name)
        tasks = self._tasks.setdefault(key, set())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def wait(self, user_id: str | None, *, timeout: float) -> bool:
        """Wait until ``user_id``'s (or everyone's) jobs are finished, at most ``timeout``
        seconds. Returns whether they all finished."""
        deadline = time.monotonic() + timeout
        loop = asyncio.get_running_loop()
        mine = [
            t
            for uid, tasks in self._tasks.items()
            if user_id is None or uid == user_id
            for t in tasks
            if t.get_loop() is loop
        ]
        if mine:
            await asyncio.wait(mine, timeout=max(0.0, deadline - time.monotonic()))
        # Jobs of other processes (or other event loops): poll the queue. A job backing off
        # after a failure is not waited for: it runs later (``_retry_later``), and waiting for
        # it would stall every turn of its user for the whole timeout.
        while await asyncio.to_thread(
            self._db().count_unfinished_jobs, user_id=user_id, due_only=True
        ):
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    def cancel_retries(self) -> None:
        """Drop the in-process retries (the jobs stay queued: the next process or a worker
        retries them)."""
        for task in list(self._retries):
            with contextlib.suppress(RuntimeError):  # its loop is already closed
                task.get_loop().call_soon_threadsafe(task.cancel)

    async def process_pending(self, *, limit: int | None = None) -> int:
        """Run every runnable job in the queue (left by crashed or exited processes)."""
        done = 0
        while limit is None or done < limit:
            job = await asyncio.to_thread(self._db().claim_job, lease_seconds=self.lease)
            if job is None:
                break
            await self._execute(job)
            done += 1
        return done

    async def resume_unfinished(self) -> None:
        """Once per process, on first use: pick up jobs an earlier process left behind."""
        if self._resumed or not self.run_jobs:
            return
        self._resumed = True
        self._track("*", self.process_pending(), "kern-resume-jobs")

    async def _run_claimed(self, job_id: str) -> None:
        try:
            job = await asyncio.to_thread(
                self._db().claim_job, job_id=job_id, lease_seconds=self.lease
            )
        except KernError as exc:  # the job stays pending; the next process picks it up
            log.error("could not claim extraction job %s: %s", job_id, exc)
            self._settle(job_id, f"could not claim the job: {short_error(exc)}")
            return
        if job is not None:
            await self._execute(job, retry_here=True)
        self._statuses.pop(job_id, None)  # claimed elsewhere: that process reports it

    def _settle(self, job_id: str, error: str | None = None) -> None:
        """Report a job's outcome to the run output that waits for it, if any."""
        status = self._statuses.pop(job_id, None)
        if status is not None:
            status.settle(error)

    async def _execute(self, job: JobRecord, *, retry_here: bool = False) -> None:
        """Run a claimed job; a failure is recorded on the job and never reaches the run.
        ``retry_here``: a turn's own job is retried in this process after its backoff (a
        worker's loop, which claims from the queue, retries it by itself)."""
        ctx = RunContext(
            run_id=job.run_id or "",
            session_id=job.session_id or "",
            user_id=job.user_id or "",
            agent_id=job.agent_id,
            input=str(job.payload.get("input", "")),
        )
        turn = Turn(
            str(job.payload.get("user", "")),
            str(job.payload.get("assistant", "")),
            date=job.created_at,  # relative dates in the turn are resolved against it
        )
        heartbeat = asyncio.create_task(self._keep_lease(job), name=f"kern-lease-{job.id}")
        try:
            await self._work(ctx, turn, job)
            self._settle(job.id)
        except JobLostError:
            log.info("job %s was taken over by another worker; not applied here", job.id)
        except Exception as exc:
            # One bounded line: the log, the stored job and the run's output all show it.
            error = short_error(exc, JOB_ERROR_LIMIT)
            log.warning(
                "extraction job %s failed (attempt %d/%d): %s",
                job.id,
                job.attempts,
                job.max_attempts,
                error,
            )
            self._settle(job.id, error)
            retry = 2.0**job.attempts if job.attempts < job.max_attempts else None
            try:
                await asyncio.to_thread(self._db().fail_job, job, error, retry_in=retry)
            except KernError as storage_exc:
                # The job stays claimed; its lease expires and another process retries it.
                log.error("could not record the failure of job %s: %s", job.id, storage_exc)
            else:
                if retry is not None and retry_here and self.run_jobs:
                    self._retry_later(job.id, retry)
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
        await self._delete_old_jobs()

    def _retry_later(self, job_id: str, delay: float) -> None:
        """Claim the job again once its backoff is over, in this process: no restart or worker
        is needed. If another process claims it first, this claim finds nothing to do. Not a
        job the consistency wait waits for; ``cancel_retries`` drops it (it stays queued)."""

        async def retry() -> None:
            await asyncio.sleep(delay)
            await self._run_claimed(job_id)

        task = asyncio.create_task(retry(), name=f"kern-retry-{job_id}")
        self._retries.add(task)
        task.add_done_callback(self._retries.discard)

    async def _keep_lease(self, job: JobRecord) -> None:
        """Renew the job's claim every third of the lease while it runs, so a slow extraction
        (a model retrying) is not taken over and run a second time."""
        while True:
            await asyncio.sleep(self.lease / 3)
            try:
                held = await asyncio.to_thread(
                    self._db().renew_lease, job, lease_seconds=self.lease
                )
            except KernError as exc:  # the next beat tries again; the lease is still running
                log.warning("could not renew the lease of job %s: %s", job.id, exc)
                continue
            if not held:  # taken over or finished: the apply (if any) will say so
                return

    async def _delete_old_jobs(self) -> None:
        """Delete finished jobs past ``retention``: on this process's first job, then at most
        once an hour (one indexed DELETE, usually of nothing)."""
        if self.retention is None or time.monotonic() < self._next_cleanup:
            return
        self._next_cleanup = time.monotonic() + _CLEANUP_INTERVAL
        try:
            deleted = await asyncio.to_thread(
                self._db().delete_done_jobs, older_than=self.retention
            )
        except KernError as exc:  # housekeeping: the next attempt is in an hour
            log.warning("could not delete finished extraction jobs: %s", exc)
        else:
            if deleted:
                log.info("deleted %d finished extraction job(s)", deleted)
