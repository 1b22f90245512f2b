"""Extraction jobs: list them (pending, running, done, failed with the error) and retry a
failed one. A failing job is where a learning that did not happen shows up, so the UI lists
them next to what was learned.

Admins see every job; a user token sees and retries only its own user's jobs (any other id is
a 404, like a missing one).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, HTTPException, Query
from fastapi.concurrency import run_in_threadpool

from kern.db.base import JobRecord, JobStatus
from kern.server.auth import Admin, Caller, ForUser, Principal
from kern.server.schemas import Id, JobInfo, PathId, job_out
from kern.server.state import ServerState

__all__ = ["jobs_router"]

UserId = PathId
JobId = PathId
Limit = Annotated[int, Query(ge=1, le=500)]


def jobs_router(state: ServerState) -> APIRouter:
    router = APIRouter(tags=["jobs"])

    @router.get(
        "/jobs", response_model=list[JobInfo], summary="Extraction jobs, newest first (admin)"
    )
    def all_jobs(
        principal: Admin,
        status: JobStatus | None = None,
        user_id: Annotated[Id | None, Query()] = None,
        limit: Limit = 100,
    ) -> list[JobInfo]:
        jobs = state.learning_db.list_jobs(status=status, user_id=user_id, limit=limit)
        return [job_out(j) for j in jobs]

    @router.get(
        "/users/{user_id}/jobs",
        response_model=list[JobInfo],
        summary="The user's extraction jobs, newest first",
    )
    def user_jobs(
        user_id: UserId, principal: ForUser, status: JobStatus | None = None, limit: Limit = 100
    ) -> list[JobInfo]:
        jobs = state.learning_db.list_jobs(status=status, user_id=user_id, limit=limit)
        return [job_out(j) for j in jobs]

    def find(job_id: str, principal: Principal) -> JobRecord:
        found = state.learning_db.list_jobs(job_id=job_id, limit=1)
        if not found or not (principal.is_admin or found[0].user_id == principal.user_id):
            raise HTTPException(404, f"no job with id {job_id!r}")
        return found[0]

    @router.post(
        "/jobs/{job_id}/retry",
        response_model=JobInfo,
        summary="Queue a failed job again, with all its attempts (409 unless it failed)",
    )
    async def retry(job_id: JobId, principal: Caller, background: BackgroundTasks) -> JobInfo:
        await run_in_threadpool(find, job_id, principal)
        queued = await run_in_threadpool(state.learning_db.retry_job, job_id)
        machine = state.machine
        if machine is not None and machine.run_jobs:
            # This process runs jobs itself (no separate worker): run one now, after the
            # answer, rather than at the next turn.
            background.add_task(machine.aprocess_pending, limit=1)
        return job_out(queued)

    return router
