"""The job queue: background extraction jobs claimed under a lease."""

from __future__ import annotations

import logging
import secrets
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    RowMapping,
    Select,
    and_,
    delete,
    false,
    func,
    insert,
    or_,
    select,
    update,
)

from kern.db._sqlbase import SqlBase, check_limit, check_seconds
from kern.db.base import (
    JobRecord,
    JobStatus,
)
from kern.db.schema import jobs
from kern.errors import ConflictError, InvalidArgumentError, JobLostError, NotFoundError

__all__ = ["JobsSql", "check_new_job", "complete_job", "insert_job", "runnable_jobs"]

logger = logging.getLogger(__name__)


class JobsSql(SqlBase):
    """The queue of extraction jobs.

    A claim is a lease: ``claim_job`` sets status running, a fresh ``lease_token`` and
    ``lease_until``; ``apply(job=…)`` and ``fail_job`` act only while the token still
    matches. A job is runnable when it is pending and available, or running with an expired
    lease (its worker stopped), and has attempts left. A running job whose lease expired on
    its last attempt can never finish: a claim marks it failed, and it is not "unfinished".
    A job done after a failed attempt keeps that attempt's error (with ``attempts``, its story).
    """

    def enqueue_job(self, job: JobRecord) -> None:
        """Insert ``job`` as pending (whatever its ``status``), available at
        ``job.available_at`` or now; its id must be new."""
        check_new_job(job)
        now = self.now()
        with self.transaction(action=f"enqueue job {job.id!r}") as conn:
            insert_job(conn, job, now)

    def claim_job(
        self, *, job_id: str | None = None, user_id: str | None = None, lease_seconds: float = 60
    ) -> JobRecord | None:
        """Claim one runnable job (``job_id``'s, and/or one of ``user_id``'s), oldest
        available first: running, one more attempt, a new lease of ``lease_seconds``."""
        check_seconds(lease_seconds, "lease_seconds", positive=True)
        now = self.now()
        with self.transaction(action="claim a job") as conn:
            self._fail_abandoned_jobs(conn, now)
            row = self._pick_job(conn, now, job_id=job_id, user_id=user_id)
            if row is None:
                return None
            claimed = replace(
                _job_record(row),
                status="running",
                attempts=row["attempts"] + 1,
                lease_token=secrets.token_hex(16),
                lease_until=now + timedelta(seconds=lease_seconds),
                updated_at=now,
            )
            conn.execute(
                update(jobs)
                .where(jobs.c.id == claimed.id)
                .values(
                    status=claimed.status,
                    attempts=claimed.attempts,
                    lease_token=claimed.lease_token,
                    lease_until=claimed.lease_until,
                    updated_at=now,
                )
            )
        return claimed

    def _pick_job(
        self, conn: Connection, now: datetime, *, job_id: str | None, user_id: str | None
    ) -> RowMapping | None:
        """The job a claim takes, read in the claim's write transaction. Engine-specific only
        in how it keeps two claimers apart: SQLite's write lock already does; Postgres adds
        ``FOR UPDATE SKIP LOCKED``."""
        return conn.execute(runnable_jobs(now, job_id=job_id, user_id=user_id)).mappings().first()

    def _fail_abandoned_jobs(self, conn: Connection, now: datetime) -> None:
        note = "the lease expired during the last attempt (the worker stopped or hung)"
        conn.execute(
            update(jobs)
            .where(_abandoned(now))
            .values(
                status="failed",
                error=func.coalesce(jobs.c.error.concat("; "), "").concat(note),
                lease_token=None,
                lease_until=None,
                updated_at=now,
            )
        )

    def renew_lease(self, job: JobRecord, *, lease_seconds: float) -> bool:
        """Extend ``job``'s claim to ``lease_seconds`` from now, while it is still held."""
        check_seconds(lease_seconds, "lease_seconds", positive=True)
        now = self.now()
        query = (
            update(jobs)
            .where(_held(job))
            .values(lease_until=now + timedelta(seconds=lease_seconds), updated_at=now)
        )
        with self.transaction(action=f"renew the lease of job {job.id!r}") as conn:
            return bool(conn.execute(query).rowcount == 1)

    def fail_job(self, job: JobRecord, error: str, *, retry_in: float | None = None) -> None:
        """Record a failed attempt with ``error``: pending again ``retry_in`` seconds from now,
        or failed for good when ``retry_in`` is None or no attempt is left. A claim no longer
        held is left alone (its new holder owns the job), so this never raises for it."""
        if retry_in is not None:
            check_seconds(retry_in, "retry_in")
        now = self.now()
        with self.transaction(action=f"record the failure of job {job.id!r}") as conn:
            row = conn.execute(select(jobs).where(_held(job)).with_for_update()).mappings().first()
            if row is None:
                logger.info("job %s: failure not recorded, the claim is no longer held", job.id)
                return
            final = retry_in is None or row["attempts"] >= row["max_attempts"]
            conn.execute(
                update(jobs)
                .where(_held(job))
                .values(
                    status="failed" if final else "pending",
                    error=error,
                    lease_token=None,
                    lease_until=None,
                    available_at=(
                        row["available_at"] if final else now + timedelta(seconds=retry_in or 0)
                    ),
                    updated_at=now,
                )
            )

    def count_unfinished_jobs(self, *, user_id: str | None = None, due_only: bool = False) -> int:
        """Jobs (of ``user_id``, or everyone's) that may still finish: pending (a retry that
        is scheduled included) or running, except those abandoned on their last attempt.
        ``due_only`` leaves out retries still backing off: what a run's consistency wait may
        wait for (a job backing off after a failure will not finish within the wait)."""
        now = self.now()
        query = (
            select(func.count())
            .select_from(jobs)
            .where(jobs.c.status.in_(("pending", "running")), ~_abandoned(now))
        )
        if due_only:
            query = query.where(or_(jobs.c.status == "running", jobs.c.available_at <= now))
        if user_id is not None:
            query = query.where(jobs.c.user_id == user_id)
        with self.transaction(write=False, action="count unfinished jobs") as conn:
            return int(conn.execute(query).scalar_one())

    def delete_done_jobs(self, *, older_than: float) -> int:
        """Remove jobs done more than ``older_than`` seconds ago: each holds its turn's text,
        and the queue would otherwise grow by one row per turn forever. Failed jobs stay, with
        their errors, for someone to look at."""
        check_seconds(older_than, "older_than")
        finished_before = self.now() - timedelta(seconds=older_than)
        query = delete(jobs).where(jobs.c.status == "done", jobs.c.updated_at < finished_before)
        with self.transaction(action="delete finished jobs") as conn:
            return int(conn.execute(query).rowcount)

    def retry_job(self, job_id: str) -> JobRecord:
        """Queue a failed job again, with all its attempts (someone fixed the cause: a model
        server, a setting). Its last error stays until the job runs again. ``NotFoundError``
        for an unknown id, ``ConflictError`` unless the job is failed."""
        now = self.now()
        with self.transaction(action=f"retry job {job_id!r}") as conn:
            row = conn.execute(select(jobs).where(jobs.c.id == job_id).with_for_update())
            found = row.mappings().first()
            if found is None:
                raise NotFoundError(f"No job with id {job_id!r}.")
            if found["status"] != "failed":
                raise ConflictError(
                    f"job {job_id!r} is {found['status']}, not failed: only a failed job is retried"
                )
            queued = replace(
                _job_record(found),
                status="pending",
                attempts=0,
                lease_token=None,
                lease_until=None,
                available_at=now,
                updated_at=now,
            )
            conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id)
                .values(
                    status=queued.status,
                    attempts=queued.attempts,
                    lease_token=None,
                    lease_until=None,
                    available_at=now,
                    updated_at=now,
                )
            )
        return queued

    def list_jobs(
        self,
        *,
        status: JobStatus | None = None,
        user_id: str | None = None,
        job_id: str | None = None,
        limit: int = 100,
    ) -> list[JobRecord]:
        """Jobs (with ``status``, of ``user_id``, or the one ``job_id``; or all), newest first."""
        check_limit(limit)
        query = select(jobs).order_by(jobs.c.created_at.desc(), jobs.c.id.desc()).limit(limit)
        if status is not None:
            query = query.where(jobs.c.status == status)
        if user_id is not None:
            query = query.where(jobs.c.user_id == user_id)
        if job_id is not None:
            query = query.where(jobs.c.id == job_id)
        with self.transaction(write=False, action="list jobs") as conn:
            rows = conn.execute(query).mappings().all()
        return [_job_record(row) for row in rows]


def runnable_jobs(now: datetime, *, job_id: str | None, user_id: str | None) -> Select[Any]:
    """Jobs a claim may take now, oldest available first (one row)."""
    query = (
        select(jobs)
        .where(
            jobs.c.attempts < jobs.c.max_attempts,
            or_(
                and_(jobs.c.status == "pending", jobs.c.available_at <= now),
                and_(jobs.c.status == "running", jobs.c.lease_until < now),
            ),
        )
        .order_by(jobs.c.available_at, jobs.c.created_at, jobs.c.id)
        .limit(1)
    )
    if job_id is not None:
        query = query.where(jobs.c.id == job_id)
    if user_id is not None:
        query = query.where(jobs.c.user_id == user_id)
    return query


def complete_job(conn: Connection, job: JobRecord, now: datetime) -> None:
    """Mark ``job`` done in ``conn``'s transaction, or raise ``JobLostError`` if its claim is
    no longer held (``apply(job=…)`` calls it first, so a lost claim writes nothing)."""
    result = conn.execute(
        update(jobs)
        .where(_held(job))
        .values(status="done", lease_token=None, lease_until=None, updated_at=now)
    )
    if result.rowcount != 1:
        raise JobLostError(
            f"job {job.id!r} is no longer held by this claim (its lease expired and another "
            "worker took it, or it is finished); nothing was applied"
        )


def _abandoned(now: datetime) -> ColumnElement[bool]:
    """Running, lease expired, no attempt left: no worker will ever finish it."""
    return and_(
        jobs.c.status == "running",
        jobs.c.lease_until < now,
        jobs.c.attempts >= jobs.c.max_attempts,
    )


def _held(job: JobRecord) -> ColumnElement[bool]:
    """``job``'s claim is still the current one."""
    if job.lease_token is None:
        return false()  # never claimed: held by nobody
    return and_(
        jobs.c.id == job.id, jobs.c.status == "running", jobs.c.lease_token == job.lease_token
    )


def _job_record(row: RowMapping) -> JobRecord:
    return JobRecord(**{c.name: row[c.name] for c in jobs.c})


def check_new_job(job: JobRecord) -> None:
    if job.max_attempts < 1 or not 0 <= job.attempts < job.max_attempts:
        raise InvalidArgumentError(
            f"a job needs 0 <= attempts < max_attempts, got {job.attempts}/{job.max_attempts}"
        )


def insert_job(conn: Connection, job: JobRecord, now: datetime) -> None:
    """Insert ``job`` as pending in the caller's transaction (``enqueue_job``, or
    ``add_run`` storing a turn with its extraction job)."""
    conn.execute(
        insert(jobs).values(
            id=job.id,
            kind=job.kind,
            payload=job.payload,
            user_id=job.user_id,
            session_id=job.session_id,
            agent_id=job.agent_id,
            run_id=job.run_id,
            status="pending",
            attempts=job.attempts,
            max_attempts=job.max_attempts,
            error=job.error,
            lease_token=None,
            lease_until=None,
            available_at=job.available_at or now,
            created_at=job.created_at or now,
            updated_at=now,
        )
    )
