"""Migrations on SQLite and PostgreSQL: from empty, from every earlier version with data, re-open,
races, failures."""

from __future__ import annotations

import logging
import multiprocessing
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, delete, insert, inspect, select, update

from kern.db import schema
from kern.db.base import Create, LearningFilter, RunRecord
from kern.db.migrations import (
    _PG_MIGRATION_LOCK,
    MIGRATIONS,
    Migration,
    applied_migrations,
    migrate,
    migration,
    pending_migrations,
)
from kern.db.sql import SqlDb
from kern.errors import ConfigError, StorageError
from tests.backends import Backend, bare_engine, is_postgres, open_db
from tests.test_db_learnings import check_m002, ids, insert_m002_learning, rec, seed_m002

CAROL = "user:carol"

NAMES = [fn.__name__ for fn in MIGRATIONS]
T0 = datetime(2025, 1, 1, tzinfo=UTC)


@pytest.fixture
def path(backend: Backend) -> str:
    """An empty database of the test's engine (a file path or a URL): nothing migrated it."""
    return backend.fresh()


@pytest.fixture
def bare(path: str) -> Iterator[SqlDb]:
    """A database that nothing has migrated yet."""
    with SqlDb(bare_engine(path)) as db:
        yield db


# Data each migration's tables can hold, written right after that migration is applied, and the
# check that it survived every later migration. Every migration needs an entry, so upgrades are
# always tested with data (test_every_migration_is_tested_with_data).


def _seed_m001(db: SqlDb) -> None:
    db.upsert_session("old-session", user_id="alice", agent_id="agent-1")
    db.add_run(
        RunRecord(
            run_id="old-run",
            session_id="old-session",
            user_id="alice",
            agent_id="agent-1",
            status="completed",
            input="hello",
            content="hi",
            messages=[{"role": "user", "content": "hello"}],
            metrics={"input_tokens": 1},
            created_at=T0,
        )
    )


def _check_m001(db: SqlDb) -> None:
    session = db.get_session("old-session")
    assert session is not None
    assert session.user_id == "alice"
    (run,) = db.get_runs("old-session")
    assert (run.run_id, run.content, run.messages) == (
        "old-run",
        "hi",
        [{"role": "user", "content": "hello"}],
    )


def _seed_m003(db: SqlDb) -> None:
    # Carol's, so the events check_m002 counts for Alice stay the same.
    insert_m002_learning(
        db, rec("seed-3", "Carol rows kayaks on lakes", scope=CAROL, user_id="carol")
    )


def _check_m003(db: SqlDb) -> None:
    # Written before or after the full-text index existed, the row is found (by stem).
    assert ids(db.search_text("kayaking", LearningFilter(scopes=[CAROL]))) == ["seed-3"]
    # Written before m004 or after, a row nothing said about time has no validity, no expiry.
    row = db.get_learning("seed-3")
    assert row is not None
    assert (row.valid_from, row.valid_to, row.expires_at, row.pinned, row.superseded_by) == (
        None,
        None,
        None,
        False,
        None,
    )


def _seed_m004(db: SqlDb) -> None:
    db.apply([Create(rec("seed-4", "Carol lives in Lisbon", scope=CAROL, user_id="carol"))])
    with db.transaction() as conn:
        conn.execute(
            update(schema.learnings)
            .where(schema.learnings.c.id == "seed-4")
            .values(
                valid_from=T0,
                valid_to=T0 + timedelta(days=30),
                expires_at=T0 + timedelta(days=60),
                pinned=True,
                superseded_by="seed-4b",
                status="superseded",
            )
        )


def _check_m004(db: SqlDb) -> None:
    row = db.get_learning("seed-4")
    assert row is not None
    assert (row.valid_from, row.valid_to, row.expires_at, row.pinned, row.superseded_by) == (
        T0,
        T0 + timedelta(days=30),
        T0 + timedelta(days=60),
        True,
        "seed-4b",
    )


# A scope with characters FTS5 would split or read as syntax, and a long one.
ODD_SCOPE = 'user/zo%C3%AB "q" ' + "x" * 300


def _seed_m005(db: SqlDb) -> None:
    db.apply([Create(rec("seed-5", "Zoe paddles a canoe", scope=ODD_SCOPE, user_id="zoe"))])


def _check_m005(db: SqlDb) -> None:
    # Rows written before m005 (seed-3) and after it are found within their scope only.
    assert ids(db.search_text("canoeing", LearningFilter(scopes=[ODD_SCOPE]))) == ["seed-5"]
    assert db.search_text("canoeing", LearningFilter(scopes=[CAROL])) == []
    assert db.search_text("kayaking", LearningFilter(scopes=[ODD_SCOPE])) == []
    both = LearningFilter(scopes=[CAROL, ODD_SCOPE])
    assert sorted(ids(db.search_text("kayaking canoeing", both))) == ["seed-3", "seed-5"]


def _seed_m006(db: SqlDb) -> None:
    db.apply([Create(rec("seed-6", "Zoe rows a skiff", scope="user:zoe", user_id="zoe"))])


def _check_m006(db: SqlDb) -> None:
    # Every scope holding rows has a token, those written before m006 too (seeded by it).
    with db.transaction(write=False) as conn:
        rows = conn.execute(select(schema.learnings.c.store, schema.learnings.c.scope))
        scopes = {(row.store, row.scope) for row in rows}
        tokens = {(r.store, r.scope): r.token for r in conn.execute(select(schema.learning_scopes))}
    assert scopes and scopes == set(tokens)
    key = next(iter(scopes))
    with db.transaction() as conn:  # any write draws a new one
        conn.execute(
            update(schema.learnings)
            .where(schema.learnings.c.store == key[0], schema.learnings.c.scope == key[1])
            .values(version=schema.learnings.c.version)
        )
    with db.transaction(write=False) as conn:
        table = schema.learning_scopes
        query = select(table.c.token).where(table.c.store == key[0], table.c.scope == key[1])
        assert conn.execute(query).scalar_one() != tokens[key]


def _seed_m007(db: SqlDb) -> None:
    db.apply([Create(rec("seed-7", "Zoe sails a dinghy", scope="user:zoe", user_id="zoe"))])
    db.apply([Create(rec("seed-7x", "Zoe sold the dinghy", scope="user:zoe", user_id="zoe"))])
    with db.transaction() as conn:
        conn.execute(delete(schema.learnings).where(schema.learnings.c.id == "seed-7x"))


def _changed(db: SqlDb) -> dict[str, int]:
    with db.transaction(write=False) as conn:
        rows = conn.execute(select(schema.learnings.c.id, schema.learnings.c.changed))
        return {row.id: row.changed for row in rows}


def _check_m007(db: SqlDb) -> None:
    # Every write marks its rows with a marker later than any earlier one (rows written before
    # m007 have 0), rows written before m007 included, and a delete leaves a tombstone in the
    # row's scope.
    before = _changed(db)
    assert before["seed-7"] > 0
    with db.transaction() as conn:
        conn.execute(
            update(schema.learnings)
            .where(schema.learnings.c.id.in_(["seed-3", "seed-7"]))
            .values(version=schema.learnings.c.version)
        )
    after = _changed(db)
    assert min(after["seed-3"], after["seed-7"]) > max(before.values())
    with db.transaction(write=False) as conn:
        tombstones = conn.execute(select(schema.learning_tombstones)).all()
    assert [(t.store, t.scope, t.id) for t in tombstones] == [
        ("user_memory", "user:zoe", "seed-7x")
    ]
    # Marked by the delete: after the row's insert (seed-7 may have been written again since,
    # by an earlier check), before the update above.
    assert 0 < tombstones[0].changed < min(after["seed-3"], after["seed-7"])


SEEDS: dict[str, tuple[Callable[[SqlDb], None], Callable[[SqlDb], None]]] = {
    "m001_sessions_and_runs": (_seed_m001, _check_m001),
    "m002_learnings": (seed_m002, check_m002),
    "m003_postgres_full_text": (_seed_m003, _check_m003),
    "m004_time": (_seed_m004, _check_m004),
    "m005_scoped_full_text": (_seed_m005, _check_m005),
    "m006_learning_scopes": (_seed_m006, _check_m006),
    "m007_learning_changes": (_seed_m007, _check_m007),
}


def test_every_migration_is_tested_with_data() -> None:
    assert list(SEEDS) == NAMES


def test_from_empty_applies_every_migration_in_order(bare: SqlDb) -> None:
    assert applied_migrations(bare) == []
    assert pending_migrations(bare) == NAMES
    assert migrate(bare) == NAMES
    assert applied_migrations(bare) == NAMES
    assert pending_migrations(bare) == []


# Columns only one engine has, outside kern.db.schema (like SQLite's learnings_fts table).
ENGINE_COLUMNS = {"postgresql": {"learnings": {"text_search"}}}


def test_migrated_schema_matches_the_declared_tables(bare: SqlDb) -> None:
    migrate(bare)
    extra = ENGINE_COLUMNS.get(bare.engine.dialect.name, {})
    with bare.transaction(write=False) as conn:
        inspector = inspect(conn)
        for table in schema.metadata.sorted_tables:
            columns = {
                c["name"]: c
                for c in inspector.get_columns(table.name)
                if c["name"] not in extra.get(table.name, ())
            }
            assert list(columns) == [c.name for c in table.columns], table.name
            for column in table.columns:
                assert columns[column.name]["nullable"] == column.nullable, column
            indexes = {ix["name"] for ix in inspector.get_indexes(table.name)}
            assert indexes >= {ix.name for ix in table.indexes}, table.name


@pytest.mark.parametrize("applied", range(len(MIGRATIONS) + 1), ids=lambda k: f"after-{k}")
def test_upgrade_from_every_earlier_version_keeps_data(
    bare: SqlDb, path: str, applied: int
) -> None:
    migrate(bare, MIGRATIONS[:applied])
    for name in NAMES[:applied]:
        seed, _ = SEEDS[name]
        seed(bare)
    bare.close()

    with open_db(path) as db:  # opening upgrades
        assert applied_migrations(db) == NAMES
        for name in NAMES[:applied]:
            _, check = SEEDS[name]
            check(db)


def test_reopen_is_a_no_op_that_takes_no_write_lock(path: str) -> None:
    with open_db(path) as db, db.transaction(write=False) as conn:
        first = conn.execute(select(schema.kern_migrations)).all()
    with _schema_lock_held_elsewhere(path) as options, open_db(path, **options) as db:
        assert migrate(db) == []
        with db.transaction(write=False) as conn:
            assert conn.execute(select(schema.kern_migrations)).all() == first


@contextmanager
def _schema_lock_held_elsewhere(path: str) -> Iterator[dict[str, Any]]:
    """Another connection holds the lock migrations take (SQLite's write lock, kern's Postgres
    advisory lock); yields open_db arguments under which waiting for it fails fast."""
    if not is_postgres(path):
        with closing(sqlite3.connect(path, isolation_level=None)) as other:
            other.execute("BEGIN IMMEDIATE")
            try:
                yield {"busy_timeout_ms": 50}
            finally:
                other.execute("ROLLBACK")
        return
    engine = bare_engine(path)
    try:
        with engine.connect() as other:
            other.exec_driver_sql(f"SELECT pg_advisory_lock({_PG_MIGRATION_LOCK})")
            yield {"connect_args": {"options": "-c lock_timeout=200"}}
    finally:
        engine.dispose()


# Stand-ins for future migrations, module-level so spawned processes can import them.


def m900_add_title(conn: Connection) -> None:
    conn.exec_driver_sql("ALTER TABLE sessions ADD COLUMN title VARCHAR")
    conn.exec_driver_sql("UPDATE sessions SET title = 'untitled'")


def m901_slow_table(conn: Connection) -> None:
    conn.exec_driver_sql("CREATE TABLE slow (id INTEGER PRIMARY KEY)")
    time.sleep(0.3)  # keep the write lock long enough for the other openers to queue


def test_an_appended_migration_upgrades_a_database_with_data(path: str) -> None:
    with open_db(path) as db:
        _seed_m001(db)
        assert pending_migrations(db, [*MIGRATIONS, m900_add_title]) == ["m900_add_title"]
        assert migrate(db, [*MIGRATIONS, m900_add_title]) == ["m900_add_title"]
        assert applied_migrations(db) == [*NAMES, "m900_add_title"]
        _check_m001(db)
        with db.transaction(write=False) as conn:
            titles = conn.exec_driver_sql("SELECT title FROM sessions").scalars().all()
        assert titles == ["untitled"]
        assert migrate(db, [*MIGRATIONS, m900_add_title]) == []


def test_a_failed_migration_is_rolled_back_and_stays_pending(path: str) -> None:
    def m902_broken(conn: Connection) -> None:
        conn.exec_driver_sql("CREATE TABLE half_done (id INTEGER PRIMARY KEY)")
        raise RuntimeError("bug in the migration")

    def m902_fixed(conn: Connection) -> None:
        conn.exec_driver_sql("CREATE TABLE half_done (id INTEGER PRIMARY KEY)")

    m902_fixed.__name__ = "m902_broken"

    with open_db(path) as db:
        with pytest.raises(StorageError, match=r"m902_broken failed.*bug in the migration"):
            migrate(db, [*MIGRATIONS, m902_broken])
        assert applied_migrations(db) == NAMES
        with db.transaction(write=False) as conn:
            assert not inspect(conn).has_table("half_done")  # DDL rolled back too

        with pytest.raises(StorageError, match=r"apply migration m902_broken.*syntax error"):
            migrate(db, [*MIGRATIONS, _named("m902_broken", "CREATE TABLE ((")])

        assert migrate(db, [*MIGRATIONS, m902_fixed]) == ["m902_broken"]
        assert applied_migrations(db) == [*NAMES, "m902_broken"]


def _named(name: str, sql: str) -> Migration:
    def run(conn: Connection) -> None:
        conn.exec_driver_sql(sql)

    run.__name__ = name
    return run


def test_migration_names_must_be_unique(bare: SqlDb) -> None:
    with pytest.raises(ConfigError, match="already registered"):
        migration(MIGRATIONS[0])
    assert [fn.__name__ for fn in MIGRATIONS] == NAMES
    with pytest.raises(ConfigError, match="unique"):
        migrate(bare, [MIGRATIONS[0], MIGRATIONS[0]])


def test_migrations_from_a_newer_kern_are_reported_not_fatal(
    path: str, caplog: pytest.LogCaptureFixture
) -> None:
    with open_db(path) as db, db.transaction() as conn:
        conn.execute(insert(schema.kern_migrations).values(name="m999_future", applied_at=T0))
    with caplog.at_level(logging.WARNING, logger="kern.db.migrations"):
        open_db(path).close()
    assert "m999_future" in caplog.text


# -- concurrent openers ------------------------------------------------------------------------


def open_and_migrate(target: str, barrier: Any, results: Any) -> None:
    """Open a fresh database and migrate it, racing other openers. Module-level for spawn."""
    barrier.wait()
    with SqlDb(bare_engine(target)) as db:
        results.put(migrate(db, [*MIGRATIONS, m901_slow_table]))


def _assert_each_migration_applied_once(path: str, applied_lists: list[list[str]]) -> None:
    everything = [*NAMES, "m901_slow_table"]
    assert sorted(name for applied in applied_lists for name in applied) == sorted(everything)
    with SqlDb(bare_engine(path)) as db, db.transaction(write=False) as conn:
        names = conn.execute(select(schema.kern_migrations.c.name)).scalars().all()
        assert sorted(names) == sorted(everything)
        if not is_postgres(path):
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_two_processes_migrating_a_fresh_database_both_succeed(path: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(2, timeout=60)
    results = ctx.Queue()
    processes = [
        ctx.Process(target=open_and_migrate, args=(path, barrier, results)) for _ in range(2)
    ]
    for p in processes:
        p.start()
    applied = [results.get(timeout=60) for _ in processes]
    for p in processes:
        p.join(timeout=60)
    results.close()
    results.join_thread()
    assert [p.exitcode for p in processes] == [0, 0]
    _assert_each_migration_applied_once(path, applied)


def test_threads_opening_a_fresh_database_at_once_all_succeed(path: str) -> None:
    class Results(list[list[str]]):
        put = list.append

    barrier = threading.Barrier(4)
    results = Results()
    errors: list[BaseException] = []

    def opener() -> None:
        try:
            open_and_migrate(path, barrier, results)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=opener) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    _assert_each_migration_applied_once(path, list(results))
