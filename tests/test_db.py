"""Sessions and runs: the Db contract on SQLite and PostgreSQL, concurrency, failures."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import threading
from contextlib import closing
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.pool import QueuePool

from kern.db.base import Db, RunRecord
from kern.db.schema import runs, sessions
from kern.db.sql import SqlDb
from kern.db.sqlite import SqliteDb
from kern.errors import ConfigError, InvalidArgumentError, StorageError
from tests.backends import Backend, open_db

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


class StepClock:
    """A clock that moves one second forward on every reading."""

    def __init__(self) -> None:
        self.current = T0

    def __call__(self) -> datetime:
        self.current += timedelta(seconds=1)
        return self.current


def make_run(session_id: str, run_id: str, **overrides: Any) -> RunRecord:
    fields: dict[str, Any] = {
        "run_id": run_id,
        "session_id": session_id,
        "user_id": "alice",
        "agent_id": "agent-1",
        "status": "completed",
        "input": f"input of {run_id}",
        "content": f"answer to {run_id}",
        "messages": [{"role": "user", "content": f"input of {run_id}"}],
        "metrics": {"input_tokens": 3},
        "created_at": T0,
    }
    fields.update(overrides)
    return RunRecord(**fields)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "deep" / "er" / "kern.db"


@pytest.fixture
def db_clock() -> StepClock:
    return StepClock()


# -- opening (SQLite; PostgresDb's own are in tests/test_postgres.py) -------------------------


def test_sqlite_db_satisfies_the_db_protocol(path: Path) -> None:
    with SqliteDb(db_file=path) as db:
        assert isinstance(db, Db)
        assert repr(db) == f"SqliteDb(db_file={str(path)!r})"


def test_open_creates_parent_folders_and_configures_connections(path: Path) -> None:
    assert not path.parent.exists()
    with SqliteDb(db_file=str(path), busy_timeout_ms=1234) as db:
        assert path.is_file()
        with db.transaction(write=False) as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 1234
    # WAL is a property of the file: any other client sees it.
    with closing(sqlite3.connect(path)) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_default_file_is_resolved_against_the_directory_at_construction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with SqliteDb() as db:
        assert Path(db.db_file) == tmp_path / "tmp" / "agents.db"
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        monkeypatch.chdir(elsewhere)
        db.upsert_session("s1", user_id="alice", agent_id=None)
    assert (tmp_path / "tmp" / "agents.db").is_file()
    assert not (elsewhere / "tmp").exists()


@pytest.mark.parametrize("bad", [-1, 1.5, True])
def test_bad_busy_timeout_is_a_config_error(path: Path, bad: Any) -> None:
    with pytest.raises(ConfigError, match="busy_timeout_ms"):
        SqliteDb(db_file=path, busy_timeout_ms=bad)


def test_empty_db_file_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="db_file"):
        SqliteDb(db_file="")


# -- sessions --------------------------------------------------------------------------------


def test_upsert_creates_then_touches_a_session(db: SqlDb) -> None:
    created = db.upsert_session("s1", user_id="alice", agent_id="agent-1")
    assert (created.session_id, created.user_id, created.agent_id) == ("s1", "alice", "agent-1")
    assert created.created_at == created.updated_at
    assert created.created_at.tzinfo == UTC
    assert created.metadata == {}

    touched = db.upsert_session("s1", user_id="alice", agent_id="agent-1")
    assert touched.created_at == created.created_at
    assert touched.updated_at > created.updated_at
    assert db.get_session("s1") == touched
    assert db.get_session("nope") is None


def test_a_session_cannot_be_continued_as_another_user(db: SqlDb) -> None:
    db.upsert_session("s1", user_id="alice", agent_id=None)
    for other in ("bob", None):
        with pytest.raises(StorageError, match="belongs to another user"):
            db.upsert_session("s1", user_id=other, agent_id=None)
    session = db.get_session("s1")
    assert session is not None
    assert session.user_id == "alice"


def test_an_anonymous_session_is_adopted_by_the_first_named_user_and_agent(db: SqlDb) -> None:
    db.upsert_session("s1", user_id=None, agent_id=None)
    adopted = db.upsert_session("s1", user_id="alice", agent_id="agent-1")
    assert (adopted.user_id, adopted.agent_id) == ("alice", "agent-1")
    # The agent id, unlike the owner, is kept: several agents may share a session.
    again = db.upsert_session("s1", user_id="alice", agent_id="agent-2")
    assert again.agent_id == "agent-1"


def test_upsert_works_without_insert_returning(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # SQLite older than 3.35 has no RETURNING; the insert's rowcount decides instead.
    with SqliteDb(db_file=path, clock=StepClock()) as db:
        monkeypatch.setattr(db.engine.dialect, "insert_returning", False)
        created = db.upsert_session("s1", user_id=None, agent_id=None)
        touched = db.upsert_session("s1", user_id="alice", agent_id=None)
        assert touched.user_id == "alice"
        assert touched.updated_at > created.updated_at


def test_list_sessions_filters_by_user_most_recently_active_first(db: SqlDb) -> None:
    db.upsert_session("a1", user_id="alice", agent_id=None)
    db.upsert_session("b1", user_id="bob", agent_id=None)
    db.upsert_session("a2", user_id="alice", agent_id=None)
    db.upsert_session("a3", user_id="alice", agent_id=None)
    db.upsert_session("a1", user_id="alice", agent_id=None)  # a1 is active again

    assert [s.session_id for s in db.list_sessions(user_id="alice")] == ["a1", "a3", "a2"]
    assert [s.session_id for s in db.list_sessions(user_id="alice", limit=2)] == ["a1", "a3"]
    assert [s.session_id for s in db.list_sessions(user_id="bob")] == ["b1"]
    assert [s.session_id for s in db.list_sessions()] == ["a1", "a3", "a2", "b1"]
    assert db.list_sessions(user_id="carol") == []
    assert db.list_sessions(limit=0) == []
    with pytest.raises(InvalidArgumentError, match="limit"):
        db.list_sessions(limit=-1)


def test_concurrent_upserts_of_one_new_session_all_succeed(db: SqlDb) -> None:
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def upsert() -> None:
        barrier.wait()
        try:
            db.upsert_session("shared", user_id="alice", agent_id=None)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=upsert) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert [s.session_id for s in db.list_sessions()] == ["shared"]


# -- runs ------------------------------------------------------------------------------------


def test_runs_come_back_in_order_and_limit_keeps_the_most_recent(db: SqlDb) -> None:
    db.upsert_session("s1", user_id="alice", agent_id="agent-1")
    # Equal timestamps on purpose: the order must not depend on the clock.
    for i in range(5):
        db.add_run(make_run("s1", f"r{i}", created_at=T0))

    assert [r.run_id for r in db.get_runs("s1")] == ["r0", "r1", "r2", "r3", "r4"]
    assert [r.run_id for r in db.get_runs("s1", limit=2)] == ["r3", "r4"]
    assert [r.run_id for r in db.get_runs("s1", limit=10)] == ["r0", "r1", "r2", "r3", "r4"]
    assert db.get_runs("s1", limit=0) == []
    assert db.get_runs("other") == []
    with pytest.raises(InvalidArgumentError, match="limit"):
        db.get_runs("s1", limit=-1)


def test_get_runs_filters_by_status(db: SqlDb) -> None:
    db.upsert_session("s1", user_id="alice", agent_id=None)
    db.add_run(make_run("s1", "ok-1"))
    db.add_run(make_run("s1", "bad", status="failed", content=None, error="model timed out"))
    db.add_run(make_run("s1", "ok-2"))

    assert [r.run_id for r in db.get_runs("s1")] == ["ok-1", "ok-2"]
    assert [r.run_id for r in db.get_runs("s1", status=None)] == ["ok-1", "bad", "ok-2"]
    (failed,) = db.get_runs("s1", status="failed")
    assert (failed.content, failed.error) == (None, "model timed out")
    assert [r.run_id for r in db.get_runs("s1", status=None, limit=2)] == ["bad", "ok-2"]


def test_a_run_round_trips_exactly(db: SqlDb) -> None:
    db.upsert_session("s1", user_id="alice", agent_id="agent-1")
    messages = [
        {"role": "user", "content": 'Grüße, 東京 👋 "quoted" \\ back'},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "c1", "name": "search", "arguments": '{"q": "x"}'}],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "[]", "is_error": False},
    ]
    metrics = {"input_tokens": 12, "duration_s": 0.25, "steps": [1, 2], "nested": {"a": None}}
    created_at = datetime(2025, 3, 4, 5, 6, 7, 891011, tzinfo=timezone(timedelta(hours=2)))
    run = make_run("s1", "r1", messages=messages, metrics=metrics, created_at=created_at)
    db.add_run(run)

    (stored,) = db.get_runs("s1")
    assert stored == run  # datetimes compare by instant
    assert stored.created_at.tzinfo == UTC
    assert stored.created_at == datetime(2025, 3, 4, 3, 6, 7, 891011, tzinfo=UTC)


def test_a_run_needs_an_existing_session(db: SqlDb) -> None:
    with pytest.raises(StorageError, match="session does not exist"):
        db.add_run(make_run("missing", "r1"))
    with db.transaction(write=False) as conn:
        assert conn.execute(select(func.count()).select_from(runs)).scalar() == 0


def test_runs_are_append_only_a_run_id_is_stored_once(db: SqlDb) -> None:
    db.upsert_session("s1", user_id="alice", agent_id=None)
    db.add_run(make_run("s1", "r1", content="first"))
    with pytest.raises(StorageError, match="r1"):
        db.add_run(make_run("s1", "r1", content="second"))
    assert [r.content for r in db.get_runs("s1")] == ["first"]


def test_unstorable_values_raise_storage_error_and_store_nothing(db: SqlDb) -> None:
    db.upsert_session("s1", user_id="alice", agent_id=None)
    with pytest.raises(StorageError, match="not JSON serializable"):
        db.add_run(make_run("s1", "r1", metrics={"when": object()}))
    with pytest.raises(StorageError, match="not JSON compliant"):  # NaN: Postgres refuses it
        db.add_run(make_run("s1", "r1", metrics={"ratio": float("nan")}))
    with pytest.raises(StorageError, match="naive datetime"):
        db.add_run(make_run("s1", "r2", created_at=datetime(2025, 1, 1)))
    assert db.get_runs("s1", status=None) == []


# -- transactions ----------------------------------------------------------------------------


def test_transaction_rolls_back_on_error(db: SqlDb) -> None:
    def insert_then_fail() -> None:
        with db.transaction() as conn:
            conn.execute(
                sessions.insert().values(session_id="s1", created_at=T0, updated_at=T0, metadata={})
            )
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        insert_then_fail()
    assert db.get_session("s1") is None


def test_readers_are_not_blocked_by_a_writer_and_writers_time_out_clearly(path: Path) -> None:
    with SqliteDb(db_file=path, busy_timeout_ms=100) as db:
        db.upsert_session("s1", user_id="alice", agent_id=None)
        db.add_run(make_run("s1", "r1"))
        with closing(sqlite3.connect(path, isolation_level=None)) as other:
            other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
            try:
                assert [r.run_id for r in db.get_runs("s1")] == ["r1"]  # WAL: reads go on
                with pytest.raises(StorageError, match=r"locked.*busy_timeout_ms=100"):
                    db.add_run(make_run("s1", "r2"))
            finally:
                other.execute("ROLLBACK")
        db.add_run(make_run("s1", "r2"))
        assert [r.run_id for r in db.get_runs("s1")] == ["r1", "r2"]


def test_a_closed_db_raises_storage_error(backend: Backend) -> None:
    db = backend.open()
    db.close()
    db.close()  # idempotent
    assert db.closed
    with pytest.raises(StorageError, match="closed"):
        db.get_session("s1")
    with pytest.raises(StorageError, match="closed"):
        db.add_run(make_run("s1", "r1"))


def test_a_file_that_is_not_a_database_raises_storage_error(path: Path) -> None:
    path.parent.mkdir(parents=True)
    path.write_bytes(b"this is not a database, just some text " * 100)
    with pytest.raises(StorageError, match="not a database"):
        SqliteDb(db_file=path)


def test_an_unwritable_folder_raises_storage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    with pytest.raises(StorageError, match="could not create the folder"):
        SqliteDb(db_file=blocker / "sub" / "kern.db")


# -- concurrency -----------------------------------------------------------------------------

RUNS_PER_WRITER = 10


def append_runs(target: str, writer: str, barrier: Any) -> None:
    """One writer: upsert the shared session and append its runs, like an agent would.

    Module-level so spawned processes can import it.
    """
    with open_db(target) as db:
        barrier.wait()
        for i in range(RUNS_PER_WRITER):
            db.upsert_session("shared", user_id="alice", agent_id=None)
            db.add_run(make_run("shared", f"{writer}-{i:03d}"))


def _assert_all_runs_present(db: SqlDb, writers: list[str]) -> None:
    stored = [r.run_id for r in db.get_runs("shared")]
    assert len(stored) == len(writers) * RUNS_PER_WRITER
    for writer in writers:
        own = [run_id for run_id in stored if run_id.startswith(f"{writer}-")]
        # Every run is there, in the order its writer appended them.
        assert own == [f"{writer}-{i:03d}" for i in range(RUNS_PER_WRITER)]


def test_threads_and_processes_append_to_one_session_without_losing_a_run(
    backend: Backend,
) -> None:
    ctx = multiprocessing.get_context("spawn")
    thread_writers = [f"thread{i}" for i in range(8)]
    process_writers = [f"process{i}" for i in range(4)]
    barrier = ctx.Barrier(len(thread_writers) + len(process_writers), timeout=60)
    with backend.open() as db:
        processes = [
            ctx.Process(target=append_runs, args=(backend.target, name, barrier))
            for name in process_writers
        ]
        for p in processes:
            p.start()
        errors: list[BaseException] = []

        def run_thread(name: str) -> None:
            try:
                append_runs(backend.target, name, barrier)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=run_thread, args=(n,)) for n in thread_writers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        for p in processes:
            p.join(timeout=60)
        assert errors == []
        assert [p.exitcode for p in processes] == [0] * len(processes)
        _assert_all_runs_present(db, thread_writers + process_writers)


def test_threads_share_one_in_memory_database() -> None:
    with SqliteDb(db_file=":memory:") as db, SqliteDb(db_file=":memory:") as other:
        db.upsert_session("shared", user_id="alice", agent_id=None)
        writers = [f"thread{i}" for i in range(8)]
        barrier = threading.Barrier(len(writers))
        errors: list[BaseException] = []

        def write(writer: str) -> None:
            try:
                barrier.wait()
                for i in range(RUNS_PER_WRITER):
                    db.add_run(make_run("shared", f"{writer}-{i:03d}"))
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=write, args=(w,)) for w in writers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert errors == []
        _assert_all_runs_present(db, writers)
        assert other.get_session("shared") is None  # each :memory: db is its own


def _idle_connections(db: SqliteDb) -> int:
    pool = db.engine.pool
    assert isinstance(pool, QueuePool)
    return pool.checkedin()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_opens_its_own_connections(path: Path) -> None:
    with SqliteDb(db_file=path) as db:
        _fork_and_append(db)


def _fork_and_append(db: SqliteDb) -> None:
    # SQLite connections must not cross a fork: the child drops the pooled ones it inherited.
    db.upsert_session("s1", user_id="alice", agent_id=None)
    assert _idle_connections(db) == 1
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            if _idle_connections(db) == 0:
                db.add_run(make_run("s1", "from-child"))
                code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert _idle_connections(db) == 1  # the parent keeps its own
    db.add_run(make_run("s1", "from-parent"))
    assert [r.run_id for r in db.get_runs("s1")] == ["from-child", "from-parent"]
