"""Reliability under contention: a write waits for SQLite's lock past one busy-handler wait,
and a turn's run and its extraction job are stored together or not at all."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from kern._sync import wait_for_background
from kern.agent import Agent
from kern.db.schema import jobs, runs
from kern.db.sql import SqlDb
from kern.db.sqlite import SqliteDb
from kern.errors import StorageError
from kern.learn import LearningMachine
from kern.models.testing import TestModel


def test_a_write_waits_for_the_lock_longer_than_one_busy_wait(tmp_path: Path) -> None:
    """SQLite's busy handler gives up after 5 s; under 16 processes some writers waited
    longer and their turns failed with "database is locked". The write is retried."""
    path = tmp_path / "kern.db"
    with SqliteDb(db_file=path) as db:
        db.upsert_session("s1", user_id="alice", agent_id=None)
        other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock for 6 s
        release = threading.Timer(6.0, lambda: other.execute("ROLLBACK"))
        release.start()
        try:
            db.upsert_session("s2", user_id="alice", agent_id=None)
        finally:
            release.join()
            other.close()
        assert db.get_session("s2") is not None


def count(db: SqlDb, table: Any) -> int:
    with db.transaction(write=False) as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_a_stored_turn_always_has_its_extraction_job(
    sqlite_db: SqliteDb, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The job is stored with the run, not after it: a failure to enqueue separately (the
    database locked in between) can no longer leave a completed run that is never learned."""
    lm = LearningMachine(user_memory=True, run_jobs=False)
    agent = Agent(model=TestModel("ok"), db=sqlite_db, learning=lm)

    def locked(*args: Any, **kwargs: Any) -> None:
        raise StorageError("could not enqueue job: database is locked")

    monkeypatch.setattr(sqlite_db, "enqueue_job", locked)
    agent.run("I like tea", user_id="alice", session_id="s1")
    (job,) = sqlite_db.list_jobs()
    (run,) = sqlite_db.get_runs("s1")
    assert job.run_id == run.run_id and job.status == "pending"


def test_a_run_whose_job_cannot_be_stored_is_not_stored_either(
    sqlite_db: SqliteDb, monkeypatch: pytest.MonkeyPatch
) -> None:
    lm = LearningMachine(user_memory=True, run_jobs=False)
    agent = Agent(model=TestModel("ok"), db=sqlite_db, learning=lm)

    def fail(conn: Any, job: Any, now: Any) -> None:
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr("kern.db._sessions.insert_job", fail)
    with pytest.raises(StorageError, match="locked"):
        agent.run("I like tea", user_id="alice", session_id="s1")
    assert (count(sqlite_db, runs), count(sqlite_db, jobs)) == (0, 0)


def test_a_failed_extraction_is_retried_in_process_and_never_stalls_recall(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One transient failure used to leave the job pending until a restart or a worker, and
    every later turn of the user waited its whole consistency timeout for it."""
    import json
    import time

    from kern.errors import ModelError
    from kern.models.base import ModelRequest, ModelResponse
    from kern.models.testing import FunctionModel

    calls: list[str] = []

    def respond(request: ModelRequest) -> ModelResponse:
        if request.output_schema is None:
            return ModelResponse("noted")
        calls.append("extract")
        if len(calls) == 1:
            raise ModelError("the provider is overloaded", provider="fake")
        memory = {"content": "The user likes tea."}
        return ModelResponse(json.dumps({"user_memory": {"add": [memory]}}))

    # The checks of the backoff (2 s) must not depend on how fast a loaded machine runs them:
    # the database's clock stands still and the in-process retry's claim waits until they are
    # done. Then time runs again (past the backoff by now) and the retry goes ahead.
    stopped_at: datetime | None = datetime.now(UTC)
    checked = threading.Event()
    db = SqliteDb(db_file=tmp_path / "kern.db", clock=lambda: stopped_at or datetime.now(UTC))
    claim = db.claim_job

    def claim_after_the_checks(**kwargs: Any) -> Any:
        if calls:  # after the failed attempt: the retry
            assert checked.wait(60)
        return claim(**kwargs)

    monkeypatch.setattr(db, "claim_job", claim_after_the_checks)
    try:
        lm = LearningMachine(user_memory=True, consistency_timeout=120)
        agent = Agent(model=FunctionModel(respond), db=db, learning=lm)
        agent.run("I like tea", user_id="alice", session_id="s1")
        assert lm.wait_for_jobs(user_id="alice", timeout=60)  # the failed attempt finished …
        (job,) = db.list_jobs()
        assert (job.status, job.attempts) == ("pending", 1)  # … and the job is backing off
        # Recall does not wait for a job that is backing off (it would for 120 s).
        assert db.count_unfinished_jobs(user_id="alice", due_only=True) == 0
        assert lm.wait_for_jobs(user_id="alice", timeout=60)
        stopped_at = None
        checked.set()
        # The retry runs in this process once the backoff is over: no restart, no worker.
        deadline = time.monotonic() + 60
        while db.list_jobs()[0].status != "done" and time.monotonic() < deadline:
            time.sleep(0.1)
        (job,) = db.list_jobs()
        assert (job.status, job.attempts) == ("done", 2)
        assert [m.content for m in lm.user_memory.list(user_id="alice")] == ["The user likes tea."]
        agent.close()
    finally:
        checked.set()
        wait_for_background()
        db.close()
