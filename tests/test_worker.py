"""`kern worker` (kern.learn.worker): draining the queue, exactly once, across processes and
crashes, with retries; on SQLite and PostgreSQL."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from kern._sync import run_sync
from kern.agent import Agent
from kern.db import open_db
from kern.db.base import JobRecord, LearningFilter
from kern.errors import ConfigError
from kern.learn import LearningMachine
from kern.learn.worker import run_worker
from kern.models.base import ModelRequest, ModelResponse
from kern.models.testing import FunctionModel, TestModel
from kern.worker import load_machine
from tests import learning_workers
from tests.backends import Backend
from tests.learning_workers import (
    job_machine,
    remember_what_was_said,
    run_idle_worker_process,
    run_worker_process,
)

MEMORIES = LearningFilter(store="user_memory")


def enqueue(db: Any, count: int, *, users: int = 50) -> list[str]:
    """``count`` extraction jobs, as runs would leave them; returns what each run's user said."""
    said = [f"job-{i:04d}" for i in range(count)]
    for i, text in enumerate(said):
        db.enqueue_job(
            JobRecord(
                id=f"j{i:04d}",
                kind="extract",
                payload={"user": text, "assistant": "ok", "input": text},
                user_id=f"u{i % users}",
                session_id=f"s{i}",
                run_id=f"r{i}",
            )
        )
    return said


def assert_applied_exactly_once(db: Any, said: list[str]) -> None:
    memories = db.list_learnings(MEMORIES, limit=100_000)
    assert Counter(m.text for m in memories) == {f"The user said {s}.": 1 for s in said}
    creates = [h for h in db.history(store="user_memory", limit=100_000) if h.action == "create"]
    assert len(creates) == len(said)
    jobs = db.list_jobs(limit=100_000)
    assert {j.status for j in jobs} == {"done"} and len(jobs) == len(said)
    assert db.count_unfinished_jobs() == 0


def test_an_app_server_with_run_jobs_false_only_enqueues_and_a_worker_learns(db: Any) -> None:
    model = FunctionModel(remember_what_was_said)
    server = LearningMachine(user_memory=True, run_jobs=False, consistency_timeout=0.2)
    agent = Agent(model=model, db=db, learning=server)
    agent.run("I keep bees", user_id="alice", session_id="s1")
    agent.run("I row on Sundays", user_id="alice", session_id="s1")

    assert [r.output_schema for r in model.requests] == [None, None]  # answers only
    assert [j.status for j in db.list_jobs()] == ["pending", "pending"]
    assert not server.wait_for_jobs("alice", timeout=0.2)  # nothing here runs them
    ran = run_sync(run_worker(job_machine(db), concurrency=2, poll_interval=0.05, until_idle=True))
    assert ran == 2
    memories = server.user_memory.list(user_id="alice")
    assert sorted(m.content for m in memories) == [
        "The user said I keep bees.",
        "The user said I row on Sundays.",
    ]
    with pytest.raises(ConfigError, match="choose one"):
        LearningMachine(user_memory=True, run_jobs=False, background=False)


def test_a_slow_extraction_keeps_its_lease_and_runs_once(db: Any) -> None:
    """The claim is renewed while the model takes longer than the lease: no other worker
    takes the job over, so the model is asked once and the memory saved once."""
    extraction_calls = []

    def slow(request: ModelRequest) -> ModelResponse:
        if request.output_schema is not None:
            extraction_calls.append(request)
            time.sleep(4.0)  # four leases of 1 s
        return remember_what_was_said(request)

    # Leases of 1 s, renewed every third of it: a renewal late by a loaded machine's scheduling
    # hiccup still lands inside the lease.
    lm = LearningMachine(user_memory=True, job_lease=1.0)
    agent = Agent(model=FunctionModel(slow), db=db, learning=lm)
    agent.run("I keep bees", user_id="alice", session_id="s1")
    started = time.monotonic()
    while not extraction_calls:  # the job is claimed and its model call under way
        assert time.monotonic() - started < 5
        time.sleep(0.01)
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:  # another worker polling the queue
        assert db.claim_job(lease_seconds=5) is None
        time.sleep(0.05)
    assert lm.wait_for_jobs("alice", timeout=10)
    assert len(extraction_calls) == 1
    memories = lm.user_memory.list(user_id="alice")
    assert [m.content for m in memories] == ["The user said I keep bees."]
    assert [(j.status, j.attempts) for j in db.list_jobs()] == [("done", 1)]


def test_a_worker_runs_every_job_then_stops_when_idle(db: Any) -> None:
    said = enqueue(db, 30)
    ran = run_sync(run_worker(job_machine(db), concurrency=3, poll_interval=0.05, until_idle=True))
    assert ran == 30
    assert_applied_exactly_once(db, said)


def test_four_worker_processes_drain_the_queue_each_job_applied_exactly_once(
    db: Any, backend: Backend
) -> None:
    # 1,000 on PostgreSQL, the scale-out engine; SQLite's single writer gets a shorter queue.
    said = enqueue(db, 1000 if backend.postgres else 200)
    spawn = multiprocessing.get_context("spawn")
    workers = [
        spawn.Process(
            target=run_worker_process, args=(backend.target, "tests.learning_workers:job_machine")
        )
        for _ in range(4)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=240)
    assert [w.exitcode for w in workers] == [0] * 4
    assert_applied_exactly_once(db, said)
    # Every job was claimed once: no lease expired, nobody did a job twice.
    assert {j.attempts for j in db.list_jobs(limit=2000)} == {1}


def test_a_worker_killed_mid_job_is_replaced_after_the_lease_without_duplicates(
    db: Any, backend: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    said = enqueue(db, 1)
    flag = tmp_path / "inside-apply"
    monkeypatch.setenv("KERN_TEST_FLAG", str(flag))
    spawn = multiprocessing.get_context("spawn")
    doomed = spawn.Process(
        target=run_worker_process,
        args=(backend.target, "tests.learning_workers:hanging_job_machine", 1),
    )
    doomed.start()
    try:
        deadline = time.monotonic() + 60
        while not flag.exists():  # its transaction has written, and not committed
            assert time.monotonic() < deadline and doomed.is_alive(), "the worker never applied"
            time.sleep(0.02)
        assert doomed.pid is not None
        os.kill(doomed.pid, signal.SIGKILL)
        doomed.join(timeout=30)
    finally:
        if doomed.is_alive():
            doomed.kill()
    (orphan,) = db.list_jobs()
    assert (orphan.status, orphan.attempts) == ("running", 1)  # orphaned, under its lease (2 s)
    assert orphan.lease_until is not None
    assert db.count_learnings(MEMORIES) == 0  # the killed transaction left nothing

    # When the survivor took the job over, read from its claims (not from the time the test
    # took, which a loaded machine stretches past the lease before the survivor even starts).
    claimed_at = []
    claim = db.claim_job

    def recorded_claim(**kwargs: Any) -> JobRecord | None:
        job = claim(**kwargs)
        if job is not None:
            claimed_at.append(job.updated_at)
        return job

    monkeypatch.setattr(db, "claim_job", recorded_claim)
    survivor = job_machine(db)
    assert run_sync(run_worker(survivor, poll_interval=0.05, until_idle=True)) == 1
    assert len(claimed_at) == 1 and claimed_at[0] > orphan.lease_until  # after the lease
    assert_applied_exactly_once(db, said)
    (job,) = db.list_jobs()
    assert job.attempts == 2


def test_a_failed_attempt_is_retried_after_a_backoff(db: Any) -> None:
    said = enqueue(db, 1)
    calls: list[float] = []

    def flaky(request: ModelRequest) -> ModelResponse:
        if request.output_schema is not None:
            calls.append(time.monotonic())
            if len(calls) == 1:
                raise RuntimeError("provider overloaded")
        return remember_what_was_said(request)

    machine = LearningMachine(db=db, model=FunctionModel(flaky), user_memory=True)
    assert run_sync(run_worker(machine, poll_interval=0.05, until_idle=True)) == 2
    assert calls[1] - calls[0] >= 1.9  # 2 ** attempts seconds after the first failure
    assert_applied_exactly_once(db, said)
    (job,) = db.list_jobs()
    assert (job.attempts, job.error) == (2, "RuntimeError: provider overloaded")


def test_sigterm_stops_an_idle_worker_cleanly(backend: Backend) -> None:
    spawn = multiprocessing.get_context("spawn")
    ready = spawn.Event()
    worker = spawn.Process(target=run_idle_worker_process, args=(backend.target, ready))
    worker.start()
    try:
        assert ready.wait(timeout=120), "the worker never installed its signal handlers"
        assert worker.is_alive() and worker.pid is not None
        os.kill(worker.pid, signal.SIGTERM)
        worker.join(timeout=60)
        assert worker.exitcode == 0
    finally:
        if worker.is_alive():
            worker.kill()


def test_a_stop_event_ends_the_loops_after_their_current_job(db: Any) -> None:
    stop = threading.Event()
    said = enqueue(db, 3)

    def stop_after_one(request: ModelRequest) -> ModelResponse:
        stop.set()  # while the first job is in progress
        return remember_what_was_said(request)

    machine = LearningMachine(db=db, model=FunctionModel(stop_after_one), user_memory=True)
    assert run_sync(run_worker(machine, concurrency=1, poll_interval=0.05, stop=stop)) == 1
    assert [m.text for m in db.list_learnings(MEMORIES)] == [f"The user said {said[0]}."]


# -- loading the app -----------------------------------------------------------------------------


@pytest.fixture
def app_module(monkeypatch: pytest.MonkeyPatch) -> Any:
    """``tests.learning_workers`` (what ``--app tests.learning_workers:NAME`` imports), with
    attributes a test sets through ``app_module.NAME = …`` undone afterwards."""

    class Setter:
        def __setattr__(self, name: str, value: Any) -> None:
            monkeypatch.setattr(learning_workers, name, value, raising=False)

    return Setter()


def test_load_machine_accepts_a_factory_a_machine_or_an_agent(db: Any, app_module: Any) -> None:
    assert load_machine("tests.learning_workers:job_machine", db).db is db
    app_module.machine_without_db = lone = LearningMachine(model=TestModel(), user_memory=True)
    assert load_machine("tests.learning_workers:machine_without_db", db) is lone
    assert lone.db is db
    app_module.agent = agent = Agent(model=TestModel(), db=db, learning=True)
    assert load_machine("tests.learning_workers:agent") is agent.get_learning_machine()
    app_module.agent_factory = lambda database: Agent(model=TestModel(), db=database, learning=True)
    assert load_machine("tests.learning_workers:agent_factory", db).db is db


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no_colon", "module:name"),
        ("tests.nowhere:x", "cannot import"),
        ("tests.learning_workers:missing", "no attribute"),
        ("tests.learning_workers:plain_agent", "no learning"),
        ("tests.learning_workers:a_number", "not a LearningMachine"),
        ("tests.learning_workers:machine_without_model", "no model"),
    ],
)
def test_load_machine_explains_what_is_wrong(
    db: Any, app_module: Any, spec: str, message: str
) -> None:
    app_module.plain_agent = Agent(model=TestModel())
    app_module.a_number = 42
    app_module.machine_without_model = LearningMachine(user_memory=True)
    with pytest.raises(ConfigError, match=message):
        load_machine(spec, db)


def test_load_machine_needs_exactly_one_database(
    db: Any, backend: Backend, app_module: Any
) -> None:
    with pytest.raises(ConfigError, match="give the worker a database"):
        load_machine("tests.learning_workers:job_machine")
    app_module.machine_without_db = LearningMachine(model=TestModel(), user_memory=True)
    with pytest.raises(ConfigError, match="pass --db"):
        load_machine("tests.learning_workers:machine_without_db")
    app_module.agent = Agent(model=TestModel(), db=db, learning=True)
    other = backend.open(backend.fresh(migrated=True))
    try:
        with pytest.raises(ConfigError, match="already has a database"):
            load_machine("tests.learning_workers:agent", other)
    finally:
        other.close()


def test_open_db_takes_a_path_a_sqlite_url_or_a_postgres_url(tmp_path: Path) -> None:
    for url in (str(tmp_path / "a.db"), f"sqlite:///{tmp_path / 'b.db'}"):
        db = open_db(url)
        try:
            assert type(db).__name__ == "SqliteDb"
        finally:
            db.close()
    with pytest.raises(ConfigError, match="postgresql://"):
        open_db("mysql://localhost/kern")


def test_bad_settings_are_config_errors(db: Any) -> None:
    machine = job_machine(db)
    with pytest.raises(ConfigError, match="concurrency"):
        run_sync(run_worker(machine, concurrency=0))
    with pytest.raises(ConfigError, match="poll_interval"):
        run_sync(run_worker(machine, poll_interval=0))
