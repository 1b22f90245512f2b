"""Learnings, history, full-text search and the job queue (the LearningDb contract) on SQLite and
PostgreSQL."""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import func, insert, select, text

from kern.db import schema
from kern.db.base import (
    Create,
    JobRecord,
    LearningDb,
    LearningFilter,
    LearningRecord,
    LearningStatus,
    Put,
    RunRecord,
    SetStatus,
    Update,
)
from kern.db.migrations import MIGRATIONS, applied_migrations, migrate
from kern.db.sql import SqlDb
from kern.db.sqlite import SqliteDb
from kern.errors import (
    ConfigError,
    ConflictError,
    InvalidArgumentError,
    JobLostError,
    StorageError,
)
from tests.backends import Backend, bare_engine, open_db

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
ALICE = "user:alice"
BOB = "user:bob"
EVERYTHING = LearningFilter(statuses=("active", "proposed", "superseded", "deleted", "rejected"))


class Clock:
    """A clock that stands still until the test moves it."""

    def __init__(self) -> None:
        self.current = T0

    def __call__(self) -> datetime:
        return self.current

    def advance(self, seconds: float) -> None:
        self.current += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def db_clock(clock: Clock) -> Clock:
    return clock


def rec(
    learning_id: str,
    text_: str,
    *,
    scope: str = ALICE,
    user_id: str | None = "alice",
    store: str = "user_memory",
    kind: str = "memory",
    **fields: Any,
) -> LearningRecord:
    return LearningRecord(
        id=learning_id,
        store=store,
        kind=kind,
        scope=scope,
        content={"content": text_},
        text=text_,
        user_id=user_id,
        content_hash=f"hash-{text_}",
        **fields,
    )


def field(
    learning_id: str,
    value: str,
    *,
    scope: str = ALICE,
    user_id: str = "alice",
    run_id: str | None = None,
) -> Put:
    """A keyed profile field."""
    return Put(
        rec(
            learning_id,
            f"location: {value}",
            scope=scope,
            user_id=user_id,
            store="user_profile",
            kind="field",
            key="location",
            run_id=run_id,
        )
    )


def ids(records: Any) -> list[str]:
    return [getattr(r, "record", r).id for r in records]


# -- migration -----------------------------------------------------------------------------------


def _schema_objects(db: SqlDb) -> set[str]:
    """Names of the tables, indexes and triggers in the database."""
    query = (
        "SELECT relname FROM pg_class UNION SELECT tgname FROM pg_trigger"
        if db.engine.dialect.name == "postgresql"
        else "SELECT name FROM sqlite_master"
    )
    with db.transaction(write=False) as conn:
        return set(conn.execute(text(query)).scalars())


def test_migration_2_from_empty_creates_tables_index_and_triggers(db: SqlDb) -> None:
    assert isinstance(db, LearningDb)
    assert applied_migrations(db) == [fn.__name__ for fn in MIGRATIONS]
    assert "m002_learnings" in applied_migrations(db)
    full_text = (
        {"ix_learnings_text_search"}  # a GIN index over a generated tsvector column
        if db.engine.dialect.name == "postgresql"
        else {
            "learnings_fts",
            "learnings_fts_insert",
            "learnings_fts_update",
            "learnings_fts_delete",
        }
    )
    assert {"learnings", "learning_history", "jobs", "uq_learnings_active_key"} | full_text <= (
        _schema_objects(db)
    )


def test_migration_2_upgrades_a_database_at_migration_1_with_data(backend: Backend) -> None:
    path = backend.fresh()
    with SqlDb(bare_engine(path)) as old:
        assert migrate(old, MIGRATIONS[:1]) == ["m001_sessions_and_runs"]
        old.upsert_session("s1", user_id="alice", agent_id=None)
        old.add_run(RunRecord("r1", "s1", "alice", None, "completed", "hi", "hello", [], {}, T0))
    with open_db(path) as db:
        assert applied_migrations(db)[:2] == ["m001_sessions_and_runs", "m002_learnings"]
        assert [r.run_id for r in db.get_runs("s1")] == ["r1"]
        db.apply([Create(rec("m1", "Alice paints watercolours"))])
        assert ids(db.search_text("painting", LearningFilter(scopes=[ALICE]))) == ["m1"]


# Data written right after m002_learnings and checked after every later upgrade (for the
# SEEDS table of tests/test_migrations.py).


def insert_m002_learning(db: SqlDb, record: LearningRecord, **columns: Any) -> None:
    """Write a learning row in the shape migration 2 created (later migrations add columns
    this code must not name: the database under test may not have them yet)."""
    from kern.db.migrations import _M002_LEARNINGS

    values = {
        column.name: getattr(record, column.name)
        for column in _M002_LEARNINGS.c
        if column.name not in ("seq", "embedding")
    }
    values.update(version=1, created_at=T0, updated_at=T0)
    values.update(columns)
    if values.get("embedding") is not None:  # pgvector's column once PostgresDb has opened it
        values["embedding"] = db._embedding_value(values["embedding"])
    with db.transaction() as conn:
        conn.execute(insert(_M002_LEARNINGS).values(**values))


def insert_m002_history(db: SqlDb, learning_id: str, action: str, **columns: Any) -> None:
    with db.transaction() as conn:
        conn.execute(
            insert(schema.learning_history).values(
                learning_id=learning_id,
                store=columns.pop("store", "user_memory"),
                scope=ALICE,
                user_id="alice",
                action=action,
                before=None,
                after={"status": "active"},
                created_at=T0,
                **columns,
            )
        )


def seed_m002(db: SqlDb) -> None:
    """What a database at migration 2 held: a deleted memory with a vector, a profile field,
    their three history events and a pending job (written in that version's shape)."""
    insert_m002_learning(
        db,
        rec("seed-m", "Alice sails on weekends"),
        status="deleted",
        version=2,
        embedding=b"\x00" * 8,
    )
    insert_m002_learning(db, field("seed-f", "Paris").record, run_id="r1")
    insert_m002_history(db, "seed-m", "create")
    insert_m002_history(db, "seed-f", "create", store="user_profile", run_id="r1")
    insert_m002_history(db, "seed-m", "delete", run_id="r1")
    db.enqueue_job(job("seed-j"))


def check_m002(db: SqlDb) -> None:
    deleted = db.get_learning("seed-m")
    assert deleted is not None and (deleted.status, deleted.version) == ("deleted", 2)
    (profile,) = db.list_learnings(LearningFilter(store="user_profile", scopes=[ALICE]))
    assert (profile.id, profile.key, profile.text) == ("seed-f", "location", "location: Paris")
    assert [h.action for h in db.history(user_id="alice")] == ["delete", "create", "create"]
    assert db.load_vectors(replace(EVERYTHING, scopes=[ALICE])) == (["seed-m"], [b"\x00" * 8])
    deleted_rows = LearningFilter(scopes=[ALICE], statuses=("deleted",))
    assert ids(db.search_text("sailing", deleted_rows)) == ["seed-m"]
    assert [j.id for j in db.list_jobs(status="pending")] == ["seed-j"]


def test_data_written_after_migration_2_survives_a_reopen(backend: Backend) -> None:
    with backend.open() as db:
        seed_m002(db)
    with backend.open() as db:
        check_m002(db)


# -- writes and history --------------------------------------------------------------------------


def test_create_keeps_a_given_created_at_and_records_history(db: SqlDb, clock: Clock) -> None:
    old = T0 - timedelta(days=400)
    saved = db.apply(
        [Create(rec("m1", "likes tea")), Create(rec("m2", "likes figs", created_at=old))],
        run_id="run-1",
        actor="api",
    )
    assert [(r.id, r.version, r.created_at, r.updated_at) for r in saved] == [
        ("m1", 1, T0, T0),
        ("m2", 1, old, T0),
    ]
    assert saved[0] == db.get_learning("m1")
    assert db.get_learning("m2") == saved[1]
    (event,) = db.history(learning_id="m2")
    assert (event.action, event.before, event.run_id, event.actor, event.user_id) == (
        "create",
        None,
        "run-1",
        "api",
        "alice",
    )
    assert event.after == {
        "content": {"content": "likes figs"},
        "text": "likes figs",
        "status": "active",
        "version": 1,
        "metadata": {},
    }
    with db.transaction(write=False) as conn:  # a missing `before` is SQL NULL, not JSON null
        nulls = conn.execute(
            select(func.count()).where(schema.learning_history.c.before.is_(None))
        ).scalar_one()
    assert nulls == 2


def test_put_inserts_then_updates_the_active_row_of_its_key(db: SqlDb, clock: Clock) -> None:
    (first,) = db.apply([field("f1", "Paris", run_id="run-1")], run_id="run-1")
    assert (first.id, first.version, first.key) == ("f1", 1, "location")
    clock.advance(5)
    (second,) = db.apply([field("f2", "Lisbon", run_id="run-2")], run_id="run-2", actor="tool")
    assert (second.id, second.version, second.text, second.run_id) == (
        "f1",
        2,
        "location: Lisbon",
        "run-2",
    )
    assert second.created_at == T0 and second.updated_at == T0 + timedelta(seconds=5)
    assert db.get_learning("f2") is None
    update, create = db.history(learning_id="f1")
    assert (update.action, create.action) == ("update", "create")
    assert update.before is not None and update.after is not None
    assert (update.before["text"], update.after["text"]) == ("location: Paris", "location: Lisbon")
    assert (update.before["version"], update.after["version"]) == (1, 2)
    # Another scope has its own key.
    (other,) = db.apply([field("f3", "Oslo", scope=BOB)])
    assert other.id == "f3"


def test_put_refuses_a_record_without_key(db: SqlDb) -> None:
    with pytest.raises(InvalidArgumentError, match="key"):
        db.apply([Put(rec("m1", "no key"))])


def test_update_is_a_compare_and_swap_on_version(db: SqlDb) -> None:
    db.apply([Create(rec("m1", "likes tea"), embedding=b"\x00" * 8)])
    change = Update("m1", {"content": "likes green tea"}, "likes green tea", "h2", 1, {"n": 1})
    (saved,) = db.apply([change], run_id="run-2")
    assert (saved.version, saved.text, saved.metadata, saved.run_id) == (
        2,
        "likes green tea",
        {"n": 1},
        "run-2",
    )
    assert db.load_vectors(EVERYTHING) == ([], [])  # the old text's vector is dropped
    before = db.history(learning_id="m1")

    with pytest.raises(ConflictError, match="version 2, not 1"):
        db.apply([replace(change, text="stale write")])
    assert db.get_learning("m1") == saved
    assert db.history(learning_id="m1") == before

    db.apply([SetStatus("m1", "deleted", "delete")])
    with pytest.raises(ConflictError, match="is deleted"):
        db.apply([replace(change, expected_version=None)])
    with pytest.raises(ConflictError, match="does not exist"):
        db.apply([replace(change, id="nope")])


def test_a_conflict_rolls_back_every_op_of_the_apply(db: SqlDb) -> None:
    db.apply([Create(rec("m1", "likes tea"))])
    with pytest.raises(ConflictError):
        db.apply(
            [
                Create(rec("m2", "new memory")),
                SetStatus("m1", "deleted", "delete"),
                Update("m1", {"content": "x"}, "x", "hx", expected_version=1),
            ]
        )
    assert ids(db.list_learnings(EVERYTHING)) == ["m1"]
    assert db.get_learning("m1") is not None and db.get_learning("m1").status == "active"  # type: ignore[union-attr]
    assert len(db.history()) == 1


def test_set_status_moves_only_from_the_allowed_statuses(db: SqlDb) -> None:
    db.apply([Create(rec("m1", "likes tea")), Create(rec("p1", "a proposal", status="proposed"))])
    (deleted,) = db.apply([SetStatus("m1", "deleted", "prune")], actor="curator")
    assert (deleted.status, deleted.version) == ("deleted", 2)
    event = db.history(learning_id="m1")[0]
    assert (event.action, event.actor) == ("prune", "curator")
    assert (event.before or {})["status"] == "active" and (event.after or {})["status"] == "deleted"
    with pytest.raises(ConflictError, match="expected one of"):
        db.apply([SetStatus("m1", "deleted", "delete")])
    with pytest.raises(ConflictError):
        db.apply([SetStatus("p1", "active", "approve")])  # only from "active" by default
    (restored,) = db.apply([SetStatus("m1", "active", "restore", from_statuses=("deleted",))])
    assert (restored.status, restored.version) == ("active", 3)
    (approved,) = db.apply([SetStatus("p1", "active", "approve", from_statuses=("proposed",))])
    assert approved.status == "active"


def test_a_keyed_proposal_is_approved_by_superseding_the_current_value(db: SqlDb) -> None:
    db.apply([field("f1", "Paris")])
    proposal = replace(field("f2", "Rome").record, status="proposed")
    db.apply([Create(proposal)])  # proposed rows do not hold the key
    approve = SetStatus("f2", "active", "approve", from_statuses=("proposed",))
    with pytest.raises(ConflictError, match="'f1' is the active value"):
        db.apply([approve])
    db.apply([SetStatus("f1", "superseded", "supersede"), approve])
    active = db.list_learnings(LearningFilter(store="user_profile", scopes=[ALICE], key="location"))
    assert [(r.id, r.text) for r in active] == [("f2", "location: Rome")]


def test_partial_unique_index_allows_one_active_row_per_key(db: SqlDb) -> None:
    db.apply([field("f1", "Paris")])
    with pytest.raises(StorageError, match=r"(?i)unique"):
        db.apply([Create(field("f2", "Rome").record)])
    statuses: tuple[LearningStatus, ...] = ("deleted", "proposed", "superseded")
    for i, status in enumerate(statuses):
        db.apply([Create(replace(field(f"x{i}", "Rome").record, status=status))])
    db.apply([Create(field("b1", "Oslo", scope=BOB).record)])
    with pytest.raises(StorageError), db.transaction() as conn:  # also below kern's own checks
        conn.execute(text("UPDATE learnings SET status = 'active' WHERE id = 'x0'"))
    assert db.count_learnings(LearningFilter(key="location")) == 2


def test_bad_values_are_storage_errors_and_write_nothing(db: SqlDb) -> None:
    naive = rec("m2", "naive", created_at=datetime(2025, 1, 1))
    # Refused before the transaction, by kern's own check (not a generic storage failure).
    with pytest.raises(InvalidArgumentError, match="created_at has no time zone"):
        db.apply([Create(rec("m1", "fine")), Create(naive)])
    with pytest.raises(StorageError, match=r"(?i)unique"):
        db.apply([Create(rec("m3", "a")), Create(rec("m3", "b"))])
    assert db.count_learnings(EVERYTHING) == 0
    with pytest.raises(InvalidArgumentError, match="not a learning write operation"):
        db.apply(["not an op"])  # type: ignore[list-item]


# -- reads ---------------------------------------------------------------------------------------


def test_list_count_and_filters(db: SqlDb, clock: Clock) -> None:
    for i in range(5):
        db.apply([Create(rec(f"m{i}", f"memory {i}", session_id=f"s{i % 2}"))], run_id=f"r{i}")
        clock.advance(60)
    db.apply(
        [
            Create(rec("k1", "a fact", kind="fact")),
            Create(rec("b1", "bob's", scope=BOB, user_id="bob")),
        ]
    )
    db.apply([SetStatus("m4", "deleted", "delete")])
    mine = LearningFilter(store="user_memory", scopes=[ALICE])
    assert ids(db.list_learnings(mine)) == ["k1", "m3", "m2", "m1", "m0"]
    assert ids(db.list_learnings(mine, newest_first=False, limit=2, offset=1)) == ["m1", "m2"]
    assert db.count_learnings(mine) == 5
    assert ids(db.list_learnings(replace(mine, kinds=["fact"]))) == ["k1"]
    assert ids(db.list_learnings(replace(mine, statuses=("deleted",)))) == ["m4"]
    assert ids(db.list_learnings(replace(mine, session_id="s1"))) == ["m3", "m1"]
    assert ids(db.list_learnings(replace(mine, run_id="r2"))) == ["m2"]
    window = replace(
        mine, created_after=T0 + timedelta(minutes=1), created_before=T0 + timedelta(minutes=3)
    )
    assert ids(db.list_learnings(window)) == ["m2", "m1"]
    assert db.list_learnings(replace(mine, scopes=[])) == []
    assert ids(db.list_learnings(LearningFilter(scopes=[ALICE, BOB], kinds=["memory"]))) == [
        "b1",
        "m3",
        "m2",
        "m1",
        "m0",
    ]
    assert db.count_learnings(LearningFilter(user_id="alice")) == 5
    with pytest.raises(InvalidArgumentError, match="limit"):
        db.list_learnings(mine, limit=-1)


def test_history_filters_newest_first(db: SqlDb) -> None:
    db.apply([Create(rec("m1", "one")), Create(rec("b1", "bob", scope=BOB, user_id="bob"))])
    db.apply([field("f1", "Paris"), SetStatus("m1", "deleted", "delete")])
    assert [(h.learning_id, h.action) for h in db.history(user_id="alice")] == [
        ("m1", "delete"),
        ("f1", "create"),
        ("m1", "create"),
    ]
    assert [h.learning_id for h in db.history(store="user_profile")] == ["f1"]
    assert len(db.history(limit=2)) == 2
    assert [h.action for h in db.history(learning_id="m1", user_id="alice")] == ["delete", "create"]


def test_load_vectors_returns_filtered_rows_that_have_one(db: SqlDb) -> None:
    vector = bytes(range(16))
    db.apply(
        [
            Create(rec("m1", "with vector"), embedding=vector),
            Create(rec("m2", "without vector")),
            Create(rec("b1", "bob's vector", scope=BOB), embedding=b"\x01" * 16),
            Create(rec("d1", "deleted", status="deleted"), embedding=b"\x02" * 16),
        ]
    )
    assert db.load_vectors(LearningFilter(scopes=[ALICE])) == (["m1"], [vector])


# -- full-text search ----------------------------------------------------------------------------


def test_search_finds_words_with_stemming_and_ranks_by_bm25(db: SqlDb) -> None:
    db.apply(
        [
            Create(rec("m1", "Alice paints watercolours on Sundays")),
            Create(rec("m2", "Alice is running a marathon in spring")),
            Create(rec("m3", "Alice works at Netflix as an engineer")),
            Create(rec("m4", "Netflix engineer, Netflix office, Netflix badge")),
        ]
    )
    mine = LearningFilter(scopes=[ALICE])
    assert ids(db.search_text("painting", mine)) == ["m1"]
    assert ids(db.search_text("Who runs marathons?", mine)) == ["m2"]
    hits = db.search_text("netflix", mine)
    assert ids(hits) == ["m4", "m3"]
    assert hits[0].score > hits[1].score
    assert ids(db.search_text("netflix engineer", mine, limit=1)) == ["m4"]
    assert db.search_text("netflix", mine, limit=0) == []
    assert db.search_text("kayak", mine) == []


def test_rare_words_outrank_common_ones(db: SqlDb) -> None:
    """BM25's inverse document frequency on both engines: a name in most rows adds almost
    nothing, so the one row with the rare word comes first, though it is the longest."""
    verbs = ["sings", "dances", "reads", "cooks"]
    db.apply(
        [Create(rec(f"c{i}", f"Caroline {verb}")) for i, verb in enumerate(verbs)]
        + [Create(rec("p1", "Melanie adopted a fluffy puppy from the shelter yesterday"))]
    )
    hits = db.search_text("Caroline's puppy", LearningFilter(scopes=[ALICE]))
    assert ids(hits)[0] == "p1"
    assert sorted(ids(hits)) == ["c0", "c1", "c2", "c3", "p1"]


HOSTILE = [
    '"',
    '""',
    "NEAR(a b)",
    "*",
    "-",
    "-netflix",
    "",
    "   ",
    "a AND",
    "OR",
    "NOT NOT",
    "^x",
    "col:netflix",
    "text:netflix",
    "((((",
    '"unbalanced',
    "a' OR 1=1 --",
    "netflix*",
    "{x y}: z",
    "😀 ☕",
    "\x00",
    "x" * 5000,
    " ".join(["netflix"] * 500),
    "NEAR/2",
    "+ - * ^ : ( )",
]


def test_hostile_queries_never_raise(db: SqlDb) -> None:
    db.apply([Create(rec("m1", "Alice works at Netflix near the beach, and not in AND mode"))])
    for query in HOSTILE:
        hits = db.search_text(query, LearningFilter(scopes=[ALICE]))
        assert all(h.record.id == "m1" for h in hits), query
    assert ids(db.search_text("-netflix", LearningFilter(scopes=[ALICE]))) == ["m1"]


def test_operator_words_are_searched_as_plain_words(db: SqlDb) -> None:
    db.apply([Create(rec("m1", "The house near the river")), Create(rec("m2", "A quiet house"))])
    assert ids(db.search_text("NEAR", LearningFilter(scopes=[ALICE]))) == ["m1"]


def test_fuzzed_queries_never_raise(db: SqlDb) -> None:
    db.apply([Create(rec("m1", "Alice works at Netflix"))])
    mine = LearningFilter(scopes=[ALICE])

    @settings(max_examples=150, deadline=None)
    @given(query=st.text(max_size=40))
    def check(query: str) -> None:
        assert isinstance(db.search_text(query, mine), list)

    check()


def test_the_filter_is_applied_inside_the_search(db: SqlDb) -> None:
    # Many better-matching rows of other scopes, statuses and kinds: a filter applied after
    # the LIMIT would return nothing for Alice.
    noise: list[Any] = [
        Create(rec(f"b{i}", "jazz jazz jazz concert", scope=BOB, user_id="bob")) for i in range(60)
    ]
    noise += [Create(rec(f"d{i}", "jazz jazz concert", status="deleted")) for i in range(10)]
    noise += [Create(rec(f"p{i}", "jazz jazz concert", status="proposed")) for i in range(10)]
    noise += [Create(rec(f"f{i}", "jazz jazz concert", kind="fact")) for i in range(10)]
    db.apply([*noise, Create(rec("mine", "went to a jazz concert"))])
    where = LearningFilter(store="user_memory", scopes=[ALICE], kinds=["memory"])
    assert ids(db.search_text("jazz concert", where, limit=5)) == ["mine"]
    proposed = db.search_text("jazz", replace(where, statuses=("proposed",)), limit=50)
    assert sorted(ids(proposed)) == sorted(f"p{i}" for i in range(10))
    assert db.search_text("jazz", replace(where, scopes=["user:carol"])) == []


def _fts_matches(db: SqlDb, word: str) -> int:
    """Rows the full-text index itself (not ``search_text``) finds for ``word``, any status."""
    query = (
        "SELECT count(*) FROM learnings WHERE text_search @@ to_tsquery('kern_english', :w)"
        if db.engine.dialect.name == "postgresql"
        else "SELECT count(*) FROM learnings_fts WHERE learnings_fts MATCH :w"
    )
    with db.transaction(write=False) as conn:
        return int(conn.execute(text(query), {"w": word}).scalar_one())


def test_sqlite_full_text_index_is_bounded_by_scope(tmp_path: Path) -> None:
    """SQLite's index holds each row's scope as one token (migration m005), so a search's
    ``MATCH`` lists the scope's rows only instead of every matching row of the table (what
    made a user's recall at 1M stored items take 300+ ms, benchmarks/scale.md)."""
    db = SqliteDb(tmp_path / "kern.db")
    db.apply(
        [Create(rec(f"b{i}", "jazz concert", scope=BOB, user_id="bob")) for i in range(5)]
        + [Create(rec("a1", "jazz concert"))]
    )
    match = "text: jazz AND scope: " + ALICE.encode().hex().upper()
    assert _fts_matches(db, match) == 1 and _fts_matches(db, "jazz") == 6
    db.apply([Update("a1", {"content": "blues"}, "blues", "h")])
    assert _fts_matches(db, match) == 0
    assert ids(db.search_text("jazz", LearningFilter(scopes=[BOB]), limit=2)) == ["b0", "b1"]
    db.close()


def test_search_follows_updates_and_deletions(db: SqlDb) -> None:
    db.apply([Create(rec("m1", "likes oolong tea")), field("f1", "Paris")])
    mine = LearningFilter(scopes=[ALICE])
    db.apply([Update("m1", {"content": "likes espresso"}, "likes espresso", "h")])
    assert db.search_text("oolong", mine) == []
    assert ids(db.search_text("espresso", mine)) == ["m1"]
    assert _fts_matches(db, "oolong") == 0  # the index itself follows text changes
    db.apply([field("f2", "Lisbon")])
    assert ids(db.search_text("lisbon", mine)) == ["f1"] and db.search_text("paris", mine) == []
    db.apply([SetStatus("m1", "deleted", "delete")])
    assert db.search_text("espresso", mine) == []
    assert ids(db.search_text("espresso", replace(mine, statuses=("deleted",)))) == ["m1"]
    db.delete_user("alice")
    assert _fts_matches(db, "espresso") == 0 and _fts_matches(db, "lisbon") == 0


# -- deleting a user -----------------------------------------------------------------------------


def _populate(db: SqlDb, user: str) -> None:
    scope = f"user:{user}"
    db.upsert_session(f"{user}-s", user_id=user, agent_id=None)
    db.add_run(RunRecord(f"{user}-r", f"{user}-s", user, None, "completed", "hi", "ok", [], {}, T0))
    db.apply(
        [
            Create(
                rec(f"{user}-m", f"{user} likes sailing", scope=scope, user_id=user),
                embedding=b"\x00" * 8,
            ),
            Create(
                rec(
                    f"{user}-k",
                    f"{user} shared insight about sailing",
                    scope="global",
                    user_id=user,
                    store="learned_knowledge",
                    kind="learning",
                )
            ),
            field(f"{user}-f", "Paris", scope=scope, user_id=user),
        ]
    )
    db.apply([Update(f"{user}-m", {"content": "x"}, f"{user} likes sailing boats", "h")])
    db.apply([Create(rec(f"{user}-v", "vector", scope=scope, user_id=user), embedding=b"1234")])
    db.enqueue_job(JobRecord(id=f"{user}-j", kind="extract", payload={}, user_id=user))


def test_delete_user_removes_everything_of_the_user_and_nothing_else(db: SqlDb) -> None:
    _populate(db, "alice")
    _populate(db, "bob")
    with db.transaction() as conn:  # an event about Alice's row that does not name her
        conn.execute(
            insert(schema.learning_history).values(
                learning_id="alice-m",
                store="user_memory",
                scope="user:alice",
                action="update",
                user_id=None,
                created_at=T0,
            )
        )
    tables = ("learnings", "learning_history", "jobs", "runs", "sessions")
    before = {name: _count_rows(db, name) for name in tables}

    assert _fts_matches(db, "alice") == 2
    assert db.delete_user("alice") == 13
    assert {name: before[name] - _count_rows(db, name) for name in tables} == {
        "learnings": 4,
        "learning_history": 6,
        "jobs": 1,
        "runs": 1,
        "sessions": 1,
    }
    assert db.count_learnings(replace(EVERYTHING, user_id="alice")) == 0
    assert all(h.user_id == "bob" for h in db.history(limit=1000))
    assert db.list_sessions(user_id="alice") == [] and db.get_runs("alice-s") == []
    assert [j.id for j in db.list_jobs()] == ["bob-j"]
    assert db.load_vectors(LearningFilter(scopes=["user:alice"])) == ([], [])
    assert {h.record.user_id for h in db.search_text("sailing", LearningFilter())} == {"bob"}
    assert _fts_matches(db, "alice") == 0  # gone from the full-text index too
    # Bob is untouched.
    assert db.count_learnings(LearningFilter(user_id="bob")) == 4
    assert len(db.history(user_id="bob")) == 5
    assert db.load_vectors(LearningFilter(user_id="bob")) == (["bob-v"], [b"1234"])
    assert [r.run_id for r in db.get_runs("bob-s")] == ["bob-r"]
    assert db.delete_user("alice") == 0
    with pytest.raises(InvalidArgumentError, match="user id"):
        db.delete_user("")


def _count_rows(db: SqlDb, table: str) -> int:
    with db.transaction(write=False) as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


# -- jobs ----------------------------------------------------------------------------------------


def job(job_id: str = "j1", **fields: Any) -> JobRecord:
    return JobRecord(id=job_id, kind="extract", payload={"input": "hi"}, user_id="alice", **fields)


def test_claim_lease_expiry_and_reclaim(db: SqlDb, clock: Clock) -> None:
    db.enqueue_job(job())
    assert db.count_unfinished_jobs(user_id="alice") == 1
    assert db.count_unfinished_jobs(user_id="bob") == 0
    first = db.claim_job(lease_seconds=30)
    assert first is not None and first.lease_token
    assert (first.status, first.attempts, first.lease_until) == (
        "running",
        1,
        T0 + timedelta(seconds=30),
    )
    assert db.list_jobs(status="running") == [first]
    assert db.claim_job() is None  # the lease holds
    assert db.claim_job(job_id="j1") is None
    clock.advance(31)  # the worker stopped: another one takes the job over
    second = db.claim_job(job_id="j1", lease_seconds=30)
    assert second is not None and (second.attempts, second.status) == (2, "running")
    assert second.lease_token != first.lease_token
    assert db.count_unfinished_jobs() == 1

    with pytest.raises(JobLostError):
        db.apply([Create(rec("m1", "from the stale worker"))], job=first)
    assert db.count_learnings(EVERYTHING) == 0 and db.history() == []
    assert db.list_jobs()[0].status == "running"

    db.apply([Create(rec("m1", "from the current worker"))], job=second)
    (done,) = db.list_jobs()
    assert (done.status, done.lease_token) == ("done", None)
    assert db.count_unfinished_jobs() == 0
    with pytest.raises(JobLostError):  # applying twice is refused
        db.apply([], job=second)
    assert db.count_learnings(EVERYTHING) == 1
    assert db.claim_job() is None


def test_a_renewed_lease_keeps_the_job_from_being_taken_over(db: SqlDb, clock: Clock) -> None:
    db.enqueue_job(job())
    first = db.claim_job(lease_seconds=30)
    assert first is not None
    clock.advance(20)
    assert db.renew_lease(first, lease_seconds=30)
    clock.advance(20)  # past the first lease, within the renewed one
    assert db.claim_job() is None
    clock.advance(11)  # the renewed lease expired: the worker stopped renewing
    second = db.claim_job()
    assert second is not None and second.attempts == 2
    assert not db.renew_lease(first, lease_seconds=30)  # the old claim cannot come back
    db.apply([], job=second)
    assert not db.renew_lease(second, lease_seconds=30)  # finished


def test_done_jobs_are_deleted_once_old_and_failed_ones_kept(db: SqlDb, clock: Clock) -> None:
    for job_id in ("old", "failed", "new", "pending"):
        db.enqueue_job(job(job_id, max_attempts=1))
    old = db.claim_job(job_id="old")
    assert old is not None
    db.apply([], job=old)
    failed = db.claim_job(job_id="failed")
    assert failed is not None
    db.fail_job(failed, "ModelError: boom")
    clock.advance(3600)
    new = db.claim_job(job_id="new")
    assert new is not None
    db.apply([], job=new)

    assert db.delete_done_jobs(older_than=1800) == 1
    remaining = {j.id: j.status for j in db.list_jobs()}
    assert remaining == {"failed": "failed", "new": "done", "pending": "pending"}
    assert db.delete_done_jobs(older_than=1800) == 0
    clock.advance(1801)
    assert db.delete_done_jobs(older_than=1800) == 1
    with pytest.raises(InvalidArgumentError, match="older_than"):
        db.delete_done_jobs(older_than=-1)


def test_claim_picks_available_jobs_oldest_first_by_id_or_user(db: SqlDb, clock: Clock) -> None:
    db.enqueue_job(job("later", available_at=T0 + timedelta(seconds=10)))
    clock.advance(1)
    db.enqueue_job(job("a"))
    clock.advance(1)
    db.enqueue_job(replace(job("b"), user_id="bob"))
    assert db.claim_job(job_id="later") is None  # not available yet
    assert db.claim_job(user_id="bob").id == "b"  # type: ignore[union-attr]
    assert db.claim_job().id == "a"  # type: ignore[union-attr]
    assert db.claim_job() is None
    clock.advance(10)
    assert db.claim_job().id == "later"  # type: ignore[union-attr]
    with pytest.raises(StorageError, match=r"(?i)unique"):
        db.enqueue_job(job("a"))
    with pytest.raises(InvalidArgumentError, match="attempts"):
        db.enqueue_job(job("z", max_attempts=0))
    with pytest.raises(InvalidArgumentError, match="lease_seconds"):
        db.claim_job(lease_seconds=0)


def test_fail_job_retries_then_fails_with_the_error_kept(db: SqlDb, clock: Clock) -> None:
    db.enqueue_job(job(max_attempts=3))
    claim = db.claim_job()
    assert claim is not None
    db.fail_job(claim, "RuntimeError: provider exploded", retry_in=10)
    (pending,) = db.list_jobs()
    assert (pending.status, pending.error, pending.attempts, pending.lease_token) == (
        "pending",
        "RuntimeError: provider exploded",
        1,
        None,
    )
    assert pending.available_at == T0 + timedelta(seconds=10)
    assert db.count_unfinished_jobs(user_id="alice") == 1  # a scheduled retry is unfinished
    assert db.claim_job() is None
    db.fail_job(claim, "late report from the old claim", retry_in=1)  # not held: ignored
    assert db.list_jobs()[0].error == "RuntimeError: provider exploded"

    clock.advance(10)
    again = db.claim_job()
    assert again is not None and again.attempts == 2
    db.fail_job(again, "ValueError: bad output")  # no retry: failed for good
    (failed,) = db.list_jobs(status="failed")
    assert (failed.error, failed.attempts) == ("ValueError: bad output", 2)
    assert db.count_unfinished_jobs() == 0
    assert db.claim_job() is None


def test_fail_job_on_the_last_attempt_fails_even_with_a_retry(db: SqlDb, clock: Clock) -> None:
    db.enqueue_job(job(max_attempts=2))
    for attempt in (1, 2):
        claim = db.claim_job()
        assert claim is not None and claim.attempts == attempt
        db.fail_job(claim, f"boom {attempt}", retry_in=0)
    (final,) = db.list_jobs()
    assert (final.status, final.error) == ("failed", "boom 2")


def test_a_job_abandoned_on_its_last_attempt_is_failed_not_waited_for(
    db: SqlDb, clock: Clock
) -> None:
    db.enqueue_job(job(max_attempts=1))
    assert db.claim_job(lease_seconds=5) is not None
    assert db.count_unfinished_jobs() == 1
    clock.advance(6)
    assert db.count_unfinished_jobs() == 0  # nobody can finish it
    assert db.claim_job() is None
    (failed,) = db.list_jobs()
    assert failed.status == "failed" and "lease expired" in (failed.error or "")


def test_threads_claim_each_job_exactly_once(db: SqlDb) -> None:
    for i in range(40):
        db.enqueue_job(job(f"j{i:02}"))
    claimed: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        while (claim := db.claim_job()) is not None:
            db.apply([], job=claim)
            with lock:
                claimed.append(claim.id)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(claimed) == [f"j{i:02}" for i in range(40)]
    assert {j.status for j in db.list_jobs()} == {"done"}


# -- concurrent writers --------------------------------------------------------------------------

EACH = 25


def write_many(target: str, worker: str, count: int, barrier: Any = None) -> None:
    """``count`` transactions, each a Put on the shared key and a new memory (Create), the two
    kinds of write that contend. Module-level for spawn."""
    with open_db(target, busy_timeout_ms=60_000) as db:
        if barrier is not None:
            barrier.wait()  # every writer starts together
        for i in range(count):
            put = field(f"{worker}-f{i}", f"{worker}-{i}")
            db.apply([put, Create(rec(f"{worker}-m{i}", f"memory {worker} {i}"))], actor=worker)


def test_concurrent_threads_and_processes_lose_no_write(backend: Backend) -> None:
    spawn = multiprocessing.get_context("spawn")
    barrier = spawn.Barrier(12, timeout=60)  # usable by the parent's threads too
    processes = [
        spawn.Process(target=write_many, args=(backend.target, f"p{n}", EACH, barrier))
        for n in range(4)
    ]
    for p in processes:
        p.start()
    errors: list[BaseException] = []

    def thread_writer(n: int) -> None:
        try:
            write_many(backend.target, f"t{n}", EACH, barrier)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=thread_writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    for p in processes:
        p.join(timeout=120)
    assert errors == []
    assert [p.exitcode for p in processes] == [0] * 4

    total = 12 * EACH
    writers = [*(f"p{n}" for n in range(4)), *(f"t{n}" for n in range(8))]
    with backend.open() as db:
        (location,) = db.list_learnings(LearningFilter(store="user_profile", key="location"))
        assert location.version == total
        assert db.count_learnings(replace(EVERYTHING, store="user_profile")) == 1
        assert len(db.history(learning_id=location.id, limit=10_000)) == total
        memories = db.list_learnings(LearningFilter(store="user_memory"), limit=10_000)
        assert {m.id for m in memories} == {f"{w}-m{i}" for w in writers for i in range(EACH)}
        assert len(memories) == total
        assert len(db.history(store="user_memory", limit=10_000)) == total
        assert len(db.search_text("memory", LearningFilter(), limit=1000)) == total


def test_caller_mistakes_are_kern_errors_and_change_nothing(db: SqlDb) -> None:
    """Each argument the database layer refuses raises ``InvalidArgumentError`` (a
    ``ConfigError``, so the server answers 400) naming the argument, before any write."""
    db.enqueue_job(job("held"))
    claim = db.claim_job()
    assert claim is not None
    mistakes: list[tuple[str, Callable[[], object]]] = [
        ("limit", lambda: db.list_jobs(limit=True)),
        ("limit", lambda: db.history(limit=-1)),
        ("offset", lambda: db.list_learnings(EVERYTHING, offset=-1)),
        ("limit", lambda: db.search_text("dog", EVERYTHING, limit=-5)),
        ("limit", lambda: db.search_vectors(b"1234", EVERYTHING, limit=-1)),
        ("lease_seconds", lambda: db.renew_lease(claim, lease_seconds=float("nan"))),
        ("retry_in", lambda: db.fail_job(claim, "boom", retry_in=-1)),
        ("attempts", lambda: db.enqueue_job(job("bad", attempts=2, max_attempts=2))),
        ("user id", lambda: db.delete_user(None)),  # type: ignore[arg-type]
        ("key", lambda: db.apply([Put(rec("m1", "no key"))])),
        ("write operation", lambda: db.apply([Create(rec("m2", "ok")), "drop table"])),  # type: ignore[list-item]
    ]
    for argument, call in mistakes:
        with pytest.raises(InvalidArgumentError, match=argument) as raised:
            call()
        assert isinstance(raised.value, ConfigError)
    assert db.count_learnings(EVERYTHING) == 0
    assert [(j.id, j.status, j.error) for j in db.list_jobs()] == [("held", "running", None)]
