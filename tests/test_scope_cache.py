"""Search's in-memory snapshots of scopes (``kern.db._scopes``), on SQLite and PostgreSQL: the
same results as the database gives, never a stale row whoever writes, and a bounded size."""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import random
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select, text

from kern.db._scopes import ROW_BYTES, ScopeCache, ScopeRows
from kern.db.base import Create, LearningFilter, LearningRecord, SetStatus, Update
from kern.db.schema import learning_scopes
from kern.db.sql import SqlDb
from kern.learn import LearningMachine
from kern.learn.scope import user_scope
from tests.backends import Backend, bare_engine, open_db

T0 = datetime(2024, 3, 1, 18, 0, tzinfo=UTC)
ALICE = user_scope("alice")
MEMORIES = LearningFilter(store="user_memory", scopes=[ALICE])
GAP = timedelta(minutes=30)


def memory(n: int, text_: str, *, session: str | None = "s1", **fields: object) -> LearningRecord:
    values: dict[str, object] = {
        "id": f"m{n:03d}",
        "store": "user_memory",
        "kind": "memory",
        "scope": ALICE,
        "content": {"memory": text_},
        "text": text_,
        "user_id": "alice",
        "session_id": session,
        "content_hash": f"h{n}",
        "created_at": T0 + timedelta(minutes=n),
    }
    values.update(fields)
    return LearningRecord(**values)  # type: ignore[arg-type]


def vector(seed: int) -> bytes:
    return np.random.default_rng(seed).standard_normal(8).astype(np.float32).tobytes()


def cached(db: SqlDb) -> ScopeRows | None:
    cache = db._scope_cache
    assert cache is not None
    return cache._snapshots.get(("user_memory", ALICE))


def search(db: SqlDb, query: str = "dog") -> tuple[list[str], list[str], list[str]]:
    """What search reads of alice's memories: neighbours of the text hits, vector hits."""
    hits = [key for key, _ in db.search_text_scores(query, MEMORIES)]
    rows = db.load_neighbours(MEMORIES, hits, around=hits, gap=GAP) if hits else []
    near = [key for key, _ in db.search_vectors(vector(0), MEMORIES, limit=5)]
    return hits, [row.id for row in rows], near


def warm(db: SqlDb) -> None:
    """Search until the scope's snapshot, vectors included, is in memory."""
    for _ in range(3):
        search(db)
    snapshot = cached(db)
    assert snapshot is not None and snapshot.vectors is not None


def numpy_db(backend: Backend, target: str, **options: Any) -> SqlDb:
    """``target`` opened with vectors scored in numpy (on PostgreSQL too: no pgvector), the
    path whose vectors a snapshot holds."""
    extra = {"pgvector": False} if backend.postgres else {}
    return backend.open(target, **extra, **options)


@pytest.fixture
def target(backend: Backend) -> str:
    return backend.fresh()


@pytest.fixture
def vdb(backend: Backend, target: str) -> Iterator[SqlDb]:
    with numpy_db(backend, target) as db:
        yield db


@pytest.fixture
def seeded(vdb: SqlDb) -> SqlDb:
    db = vdb
    db.apply(
        [
            Create(memory(1, "I adopted a dog last month"), embedding=vector(1)),
            Create(memory(2, "What breed is he?"), embedding=vector(2)),
            Create(memory(3, "A golden retriever"), embedding=vector(3)),
            Create(memory(4, "The dog sleeps a lot", session=None), embedding=vector(4)),
            Create(memory(5, "Work was busy", session="s2"), embedding=vector(5)),
        ]
    )
    return db


# --- never stale ---------------------------------------------------------------------------------


def test_a_write_through_another_database_object_is_seen_by_the_next_search(
    seeded: SqlDb, backend: Backend, target: str
) -> None:
    warm(seeded)
    before = search(seeded)
    with numpy_db(backend, target) as other:  # its own engine and connections
        other.apply(
            [
                Create(memory(6, "My dog loves the beach", session="s2"), embedding=vector(0)),
                SetStatus("m003", status="deleted", from_statuses=("active",), action="delete"),
            ]
        )
    hits, rows, near = search(seeded)
    assert "m006" in hits and "m006" in rows and near[0] == "m006"
    assert "m005" in rows  # the new row's session came with it
    assert "m003" not in rows and "m003" not in near
    assert (hits, rows, near) != before
    with numpy_db(backend, target, search_cache_mb=0) as uncached:
        assert search(uncached) == (hits, rows, near)


def test_a_hand_written_update_from_another_connection_is_seen(seeded: SqlDb, target: str) -> None:
    warm(seeded)
    engine = bare_engine(target)  # not kern's write path: the trigger alone keeps up
    with engine.begin() as conn:
        conn.execute(text("UPDATE learnings SET session_id = 's2' WHERE id = 'm002'"))
    engine.dispose()
    for _ in range(2):  # read from the database, then from a new snapshot
        _, rows, _ = search(seeded)
        assert "m002" not in rows  # no longer in the session of the dog turns
    snapshot = cached(seeded)
    assert snapshot is not None and snapshot.rows[snapshot.index["m002"]].session_id == "s2"


def _add_memory_in_another_process(target: str) -> None:
    with open_db(target) as db:
        lm = LearningMachine(db=db, user_memory=True)
        lm.user_memory.add("Our dog Rex turned three", user_id="alice", session_id="s9")
        lm.close()


def test_a_write_from_another_process_is_seen_by_the_next_search(
    db: SqlDb, backend: Backend
) -> None:
    lm = LearningMachine(db=db, user_memory=True)
    lm.user_memory.add("I adopted a dog last month", user_id="alice", session_id="s1")
    for _ in range(3):
        assert len(lm.user_memory.search("dog", user_id="alice")) == 1
    assert cached(db) is not None
    process = multiprocessing.get_context("spawn").Process(
        target=_add_memory_in_another_process, args=(backend.target,)
    )
    process.start()
    process.join(120)
    assert process.exitcode == 0
    found = [item.content for item in lm.user_memory.search("dog", user_id="alice")]
    assert "Our dog Rex turned three" in found
    lm.close()


def test_every_write_draws_a_new_token_for_the_scopes_it_touches(seeded: SqlDb) -> None:
    def tokens() -> dict[tuple[str, str], str]:
        with seeded.transaction(write=False) as conn:
            return {(r[0], r[1]): r[2] for r in conn.execute(select(learning_scopes)).all()}

    first = tokens()
    assert set(first) == {("user_memory", ALICE)}
    seeded.apply([Update("m001", content={"memory": "x"}, text="x", content_hash="x")])
    second = tokens()
    assert second[("user_memory", ALICE)] != first[("user_memory", ALICE)]
    with seeded.transaction() as conn:  # a row moved to another scope changes both
        conn.execute(text("UPDATE learnings SET scope = 'elsewhere' WHERE id = 'm002'"))
    third = tokens()
    assert third[("user_memory", ALICE)] != second[("user_memory", ALICE)]
    assert ("user_memory", "elsewhere") in third
    with seeded.transaction() as conn:
        conn.execute(text("UPDATE learnings SET status = 'active' WHERE id = 'none'"))
    assert tokens() == third  # nothing written, nothing drawn


def test_forgetting_a_user_removes_the_tokens_of_the_scopes_it_empties(db: SqlDb) -> None:
    lm = LearningMachine(db=db, user_memory=True, learned_knowledge=True)
    lm.user_memory.add("I adopted a dog", user_id="alice")
    lm.learned_knowledge.add("Ask about pets first", user_id="alice")
    lm.learned_knowledge.add("Keep answers short", user_id="bob")
    for _ in range(2):
        lm.user_memory.search("dog", user_id="alice")
    db.delete_user("alice")
    with db.transaction(write=False) as conn:
        left = {(r[0], r[1]) for r in conn.execute(select(learning_scopes)).all()}
    assert left == {("learned_knowledge", "ns/global")}  # bob's row is still there
    # No token, no snapshot: the search reads the (empty) scope from the database.
    assert lm.user_memory.search("dog", user_id="alice") == []
    lm.close()


# --- the same answers as the database -------------------------------------------------------------


def _random_rows(rng: random.Random, count: int) -> list[Create]:
    rows = []
    for n in range(count):
        start = T0 + timedelta(days=rng.randint(-30, 30))
        rows.append(
            Create(
                memory(
                    n,
                    f"dog {rng.choice(['cat', 'fish', 'tree'])} {n}",
                    session=rng.choice([None, None, "s1", "s2", "s3"]),
                    kind=rng.choice(["memory", "note"]),
                    status=rng.choice(["active", "active", "deleted", "proposed"]),
                    user_id=rng.choice(["alice", "carol"]),
                    key=rng.choice([None, f"k{n}"]),
                    run_id=rng.choice([None, "r1"]),
                    pinned=rng.random() < 0.3,
                    # Sessions share moments, as LoCoMo's turns do; session-less rows are spread.
                    created_at=T0 + timedelta(minutes=rng.choice([0, 5, 20, 45, 90, 200, n])),
                    valid_from=rng.choice([None, start]),
                    valid_to=rng.choice([None, start + timedelta(days=rng.randint(0, 20))]),
                    expires_at=rng.choice([None, T0 + timedelta(days=rng.randint(-5, 5))]),
                ),
                embedding=rng.choice([vector(n), vector(n), vector(n)[:16], None]),
            )
        )
    return rows


def _random_filter(rng: random.Random) -> LearningFilter:
    at = T0 + timedelta(days=rng.randint(-20, 20))
    options: dict[str, object] = {
        "statuses": rng.choice([("active",), ("active", "deleted"), ("proposed",)]),
        "kinds": rng.choice([None, ["memory"], ["note", "memory"], []]),
        "user_id": rng.choice([None, "alice"]),
        "session_id": rng.choice([None, None, "s1"]),
        "key": rng.choice([None, None, "k3"]),
        "run_id": rng.choice([None, "r1"]),
        "created_after": rng.choice([None, T0 + timedelta(minutes=5)]),
        "created_before": rng.choice([None, T0 + timedelta(minutes=90)]),
        "valid_at": rng.choice([None, at]),
        "valid_during": rng.choice([None, (at, at + timedelta(days=3))]),
        "unexpired_at": rng.choice([None, at]),
        "pinned": rng.choice([None, None, True, False]),
    }
    return dataclasses.replace(MEMORIES, **options)  # type: ignore[arg-type]


def test_snapshots_answer_exactly_as_the_database(
    vdb: SqlDb, backend: Backend, target: str
) -> None:
    db = vdb
    rng = random.Random(13)
    db.apply(_random_rows(rng, 120))
    every = [f"m{n:03d}" for n in range(120)]
    with numpy_db(backend, target, search_cache_mb=0) as uncached:
        assert uncached._scope_cache is None
        for _ in range(60):
            where = _random_filter(rng)
            if rng.random() < 0.2:
                where = dataclasses.replace(where, ids=rng.sample(every, 30))
            ids = rng.sample(every, rng.randint(1, 15))
            around = rng.sample(ids, rng.randint(0, len(ids)))
            query = np.random.default_rng(rng.randint(0, 99)).standard_normal(8)
            vector_ = query.astype(np.float32).tobytes()
            for _ in range(2):  # the first reads the database and sees the token
                db.load_neighbours(where, ids, around=around, gap=GAP)
            assert cached(db) is not None
            for gap in (GAP, None):
                expected = uncached.load_neighbours(where, ids, around=around, gap=gap)
                assert db.load_neighbours(where, ids, around=around, gap=gap) == expected
            expected_near = uncached.search_vectors(vector_, where, limit=10)
            assert db.search_vectors(vector_, where, limit=10) == expected_near
            assert db.search_vectors(vector_[:16], where, limit=50) == uncached.search_vectors(
                vector_[:16], where, limit=50
            )
    snapshot = cached(db)
    assert snapshot is not None and snapshot.vectors is not None  # both paths were compared


def test_many_statuses_and_kinds_are_evaluated_as_the_filter_says() -> None:
    """``ScopeRows._among`` compares a few values one by one and more by a lookup table of
    the column's codes: both give what the filter says, values absent from the scope and
    values only the changes since the snapshot hold included."""
    kinds = [f"kind{k}" for k in range(7)]
    statuses = ["active", "deleted", "proposed", "superseded", "archived"]

    def row(n: int, kind: str, status: str) -> tuple[object, ...]:
        return (n, f"r{n}", kind, status, "alice", None, None, None, T0, None, None, None,
                False, None, "head")  # fmt: skip

    written = {n: (kinds[n % 6], statuses[n % 4]) for n in range(60)}
    base = ScopeRows.build("t", "scope", [row(n, *written[n]) for n in range(60)])
    changes = {**dict.fromkeys(range(60, 66), (kinds[6], statuses[4])), 3: (kinds[5], statuses[0])}
    joined = base.with_changes("u", 1, [(*row(n, *v), None) for n, v in changes.items()], [])
    rng = random.Random(4)
    for snapshot, truth in ((base, written), (joined, {**written, **changes})):
        for _ in range(60):
            wanted_kinds = rng.sample([*kinds, "absent"], rng.randint(0, 8))
            wanted_statuses = rng.sample([*statuses, "gone"], rng.randint(1, 6))
            where = LearningFilter(kinds=wanted_kinds, statuses=wanted_statuses)  # type: ignore[arg-type]
            visible = snapshot.visible(where)
            assert visible is not None
            assert {snapshot.ids[i] for i in np.flatnonzero(visible).tolist()} == {
                f"r{n}"
                for n, (kind, status) in truth.items()
                if kind in wanted_kinds and status in wanted_statuses
            }


def test_the_snapshot_evaluates_every_field_of_the_filter() -> None:
    """A filter field the snapshot did not evaluate would let a search see rows the filter
    hides: a new field must be taught to ``ScopeRows.visible`` (and to the test above)."""
    assert {f.name for f in dataclasses.fields(LearningFilter)} == {
        "store",
        "scopes",  # what the snapshot is of (``scope_key``)
        *ScopeRows.FILTERS,
    }


def test_an_unknown_id_or_a_naive_date_is_answered_by_the_database(seeded: SqlDb) -> None:
    warm(seeded)
    snapshot = cached(seeded)
    assert snapshot is not None
    assert snapshot.neighbours(MEMORIES, ["m001", "nope"], [], GAP) is None
    naive = dataclasses.replace(MEMORIES, valid_at=datetime(2024, 1, 1))
    assert snapshot.visible(naive) is None


# --- bounded -------------------------------------------------------------------------------------


def _snapshot(token: str, rows: int) -> ScopeRows:
    fields = ("memory", "active", None, None, None, None, T0, None, None, None, False, None, "h")
    return ScopeRows.build(token, "scope", [(n, f"id{n}", *fields) for n in range(rows)])


def test_the_cache_keeps_the_most_recently_used_scopes_within_its_bytes() -> None:
    size = _snapshot("t", 3).nbytes
    cache = ScopeCache(max_bytes=3 * size + size // 2)
    for n in range(4):
        cache.put(("s", f"scope{n}"), _snapshot(f"t{n}", 3))
        assert cache.nbytes <= cache.max_bytes
    assert len(cache) == 3
    assert cache.get(("s", "scope0"), "t0") is None  # the least recently used went first
    assert cache.get(("s", "scope1"), "t1") is not None  # now the most recently used
    cache.put(("s", "scope4"), _snapshot("t4", 3))
    assert cache.get(("s", "scope2"), "t2") is None
    assert cache.get(("s", "scope1"), "t1") is not None
    cache.put(("s", "huge"), _snapshot("t", 40))  # larger than the whole budget: not kept
    assert cache.get(("s", "huge"), "t") is None and cache.nbytes <= cache.max_bytes
    assert cache.get(("s", "scope1"), "other token") is None


def test_a_scope_larger_than_the_cache_is_searched_in_the_database(
    backend: Backend, target: str
) -> None:
    with numpy_db(backend, target, search_cache_mb=3 * ROW_BYTES / 2**20) as db:
        db.apply([Create(memory(n, f"dog {n}")) for n in range(4)])
        for _ in range(3):
            _, rows, _ = search(db)
            assert len(rows) == 4
        assert cached(db) is None
        cache = db._scope_cache
        assert cache is not None and cache._seen[("user_memory", ALICE)][1]  # not read again


def test_vectors_that_do_not_fit_are_read_from_the_database_each_time(
    backend: Backend, target: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Room for the three rows (~2.7 KB), not for their 2 KB vectors as well.
    with numpy_db(backend, target, search_cache_mb=5_000 / 2**20) as db:
        db.apply([Create(memory(n, f"dog {n}"), embedding=vector(n) * 64) for n in range(3)])
        with caplog.at_level(logging.INFO, logger="kern.db._candidates"):
            for _ in range(3):
                search(db)
                assert db.search_vectors(vector(0) * 64, MEMORIES)[0][0] == "m000"
        snapshot = cached(db)
        assert snapshot is not None and snapshot.vectors is None and not snapshot.vectors_fit
    # Said once, with what to change: a scope too large for the budget is not a silent cliff.
    said = [r.getMessage() for r in caplog.records if "cannot hold" in r.getMessage()]
    assert len(said) == 1 and "search_cache_mb" in said[0] and ALICE in said[0]


# --- full text ranked in memory (PostgreSQL) ------------------------------------------------------

#: Words that stem together or are stopwords under ``kern_english``, and rarer ones: what makes
#: document frequencies, lengths and lexemes differ from the words typed.
_WORDS = [
    "dog",
    "dogs",
    "dog's",
    "run",
    "running",
    "runs",
    "ran",
    "paint",
    "painting",
    "painted",
    "river",
    "kayak",
    "kayaking",
    "the",
    "a",
    "golden",
    "retriever",
    "adopted",
    "shelter",
    "puppy",
    "work",
    "busy",
    "beach",
    "lovely",
    "weather",
    "Caroline",
    "Melanie",
    "café",
    "naïve",
    "2023",
    "42nd",
    "x",
]

#: Turns of two conversations, "Speaker: text" as an app storing a transcript writes them
#: (tests/test_hybrid_search.py), LoCoMo's shape.
_TURNS = [
    "Caroline: I adopted a dog last month from the shelter!",
    "Melanie: Lovely! What breed is he?",
    "Caroline: A golden retriever, he is two years old.",
    "Melanie: I went kayaking on the river with my kids last weekend.",
    "Caroline: That sounds fun. I have been painting a lot lately, mostly sunsets.",
    "Melanie: My painting class starts again in September.",
    "Caroline: The dog runs on the beach every morning.",
    "Melanie: Work has been busy, the weather was lovely at the beach though.",
    "Caroline: I am thinking about adopting another puppy.",
    "Melanie: Running a marathon is on my list for 2024.",
    "Caroline: We painted the kids' room blue and yellow.",
    "Melanie: Kayaks are expensive, but the river trips are worth it.",
]


def _text_rows(rng: random.Random, count: int, *, turns: bool) -> list[Create]:
    rows = []
    for create in _random_rows(rng, count):
        words = rng.choices(_WORDS, k=rng.randint(1, 12))
        text_ = rng.choice(_TURNS) if turns else " ".join(words)
        record = dataclasses.replace(create.record, text=text_, content={"memory": text_})
        rows.append(dataclasses.replace(create, record=record))
    return rows


def _queries(rng: random.Random, turns: bool) -> str:
    source = " ".join(_TURNS).split() if turns else _WORDS
    return " ".join(rng.sample(source, rng.randint(1, 4)))


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)  # ranked in memory there
@pytest.mark.parametrize("turns", [False, True], ids=["random words", "conversation turns"])
def test_full_text_ranked_in_memory_is_the_databases_ranking(
    backend: Backend, target: str, turns: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same ids, same order, same scores to the last bit as ``_text_search_query``, over
    random filters, with the scope's snapshot in memory and the SQL statement never run."""
    from kern.db.postgres import PostgresDb

    rng = random.Random(7 if turns else 13)
    with backend.open(target) as db, backend.open(target, search_cache_mb=0) as uncached:
        assert isinstance(db, PostgresDb)
        db.apply(_text_rows(rng, 150, turns=turns))
        for _ in range(2):  # the second search builds the snapshot
            search(db)
        snapshot = cached(db)
        assert snapshot is not None and snapshot.text is not None
        compared = 0
        for _ in range(80):
            where = _random_filter(rng)
            query, limit = _queries(rng, turns), rng.choice([1, 5, 50, 500])
            expected = uncached.search_text_scores(query, where, limit=limit)
            with monkeypatch.context() as patch:
                patch.setattr(PostgresDb, "_text_search_query", _never_sql)
                assert db.search_text_scores(query, where, limit=limit) == expected
            compared += bool(expected)
        assert compared >= 20  # many queries found something to compare (filters are narrow)


def _never_sql(*args: object) -> None:
    raise AssertionError("ranked by the database, not in memory")


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)  # ranked in memory there
def test_a_write_is_ranked_in_memory_by_the_next_search(
    backend: Backend, target: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kern.db.postgres import PostgresDb

    with backend.open(target) as db:
        db.apply([Create(memory(n, f"dog {n}")) for n in range(3)])
        for _ in range(2):
            search(db)
        assert cached(db) is not None
        db.apply([Create(memory(9, "dog dog kayak"))])
        monkeypatch.setattr(PostgresDb, "_text_search_query", _never_sql)
        assert "m009" in [key for key, _ in db.search_text_scores("kayak", MEMORIES)]


def test_the_first_search_after_a_write_does_not_build_a_snapshot(
    backend: Backend, target: str
) -> None:
    """Full text first, neighbours next: one search is one sighting, so a scope written
    between every two searches is never read whole for nothing."""
    with numpy_db(backend, target) as db:
        db.apply([Create(memory(n, f"dog {n}")) for n in range(3)])
        search(db)
        assert cached(db) is None
        search(db)
        assert cached(db) is not None


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_numeric_average_is_postgresqls(backend: Backend, target: str) -> None:
    """``avg()`` of integers, to the bit: a numeric quotient rounded at PostgreSQL's scale."""
    from kern.db.postgres import _numeric_average

    rng = random.Random(5)
    pairs = [
        (rng.randint(1, 10 ** rng.randint(1, 9)), rng.randint(1, 10 ** rng.randint(0, 6)))
        for _ in range(400)
    ]
    pairs += [(22, 3), (1, 3), (2, 3), (9999, 10000), (10000, 9999), (12_000_001, 1_000_000)]
    engine = bare_engine(target)
    with engine.connect() as conn:
        expected = (
            conn.execute(
                text("SELECT (t::numeric / c::numeric)::float8 FROM unnest(:t, :c) AS p(t, c)"),
                {"t": [t for t, _ in pairs], "c": [c for _, c in pairs]},
            )
            .scalars()
            .all()
        )
    engine.dispose()
    assert [_numeric_average(t, c) for t, c in pairs] == expected
    assert any(_numeric_average(t, c) != t / c for t, c in pairs)  # why it is not t / c


def test_a_snapshots_bytes_are_at_least_what_it_takes() -> None:
    """The budget counts what a snapshot really holds (``tracemalloc``: what is left of the
    rows read once they are dropped), its strings, wide characters and text index included,
    and not grossly more."""
    import gc
    import tracemalloc
    import uuid

    heads = ["Caroline: I adopted a dog", "é" * 80, "猫が好きです" * 13, "🐕 " * 40]

    def row(n: int) -> tuple[object, ...]:
        # Fresh objects per row, as a driver returns them.
        tokens = " ".join(f"lexeme{n % 50 + k}" for k in range(12))
        fields = (str(uuid.UUID(int=n)), "memory", "active", "alice", f"s{n % 7}")
        moment = T0 + timedelta(seconds=n)
        subject = "Caroline" if n % 2 else None
        head = "".join(list(heads[n % 4]))
        key = f"key-{n}" if n % 3 else None
        return (n, *fields, key, None, moment, None, None, None, False, subject, head, tokens, 12)

    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    rows = [row(n) for n in range(2000)]
    snapshot = ScopeRows.build("t", "scope", rows, text=True)
    del rows
    gc.collect()
    taken = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert snapshot.text is not None
    assert taken <= snapshot.nbytes <= 1.3 * taken


# --- large scopes: built in the background -------------------------------------------------------


def large(db: SqlDb) -> SqlDb:
    """``db`` taking alice's few memories for a large scope: built in the background."""
    db._inline_rows = 2
    return db


def current_token(db: SqlDb) -> str | None:
    query = select(learning_scopes.c.token).where(
        learning_scopes.c.store == "user_memory", learning_scopes.c.scope == ALICE
    )
    with db.transaction(write=False) as conn:
        return conn.execute(query).scalar()


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """Holds every ``ScopeRows.build`` until set (60 s at most), and sets it after the test."""
    opened = threading.Event()
    build = ScopeRows.build.__func__  # type: ignore[attr-defined]

    def held(cls: type[ScopeRows], *args: Any, **kwargs: Any) -> ScopeRows:
        opened.wait(60)
        return build(cls, *args, **kwargs)  # type: ignore[no-any-return]

    monkeypatch.setattr(ScopeRows, "build", classmethod(held))
    yield opened
    opened.set()


def test_a_large_scope_is_built_in_the_background_and_used_once_ready(
    seeded: SqlDb, backend: Backend, target: str, gate: threading.Event
) -> None:
    db = large(seeded)
    with numpy_db(backend, target, search_cache_mb=0) as uncached:
        expected = search(uncached)
        assert search(db) == expected  # sees the token
        started = time.monotonic()
        assert search(db) == expected  # starts the build, answered by the database
        assert time.monotonic() - started < 30  # not held by the build (60 s)
        assert cached(db) is None and db._builds.running(("user_memory", ALICE))
        gate.set()
        db._builds.wait()
        snapshot = cached(db)
        assert snapshot is not None and snapshot.token == current_token(db)
        assert search(db) == expected  # from memory (the vectors completed as well)
        db._builds.wait()
        assert search(db) == expected
        snapshot = cached(db)
        assert snapshot is not None and snapshot.vectors is not None
        if backend.postgres:  # its full text ranked in memory: no statement
            from kern.db.postgres import PostgresDb

            assert isinstance(db, PostgresDb)
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(PostgresDb, "_text_search_query", _never_sql)
                assert search(db) == expected


def test_a_search_after_a_write_never_returns_a_stale_row_while_building(
    seeded: SqlDb, backend: Backend, target: str, gate: threading.Event
) -> None:
    db = large(seeded)
    gate.set()
    for _ in range(4):
        search(db)
        db._builds.wait()
    warmed = cached(db)
    assert warmed is not None and warmed.vectors is not None
    gate.clear()
    with numpy_db(backend, target) as other, numpy_db(backend, target, search_cache_mb=0) as fresh:
        other.apply(
            [Create(memory(6, "My dog loves the beach", session="s2"), embedding=vector(0))]
        )
        assert search(db) == search(fresh)  # the database's answer, m006 in it
        assert "m006" in search(db)[0]  # starts a build, held before it builds
        # Written after the build read the rows: it builds a snapshot under a token that is
        # no longer the scope's.
        other.apply([SetStatus("m006", status="deleted", from_statuses=("active",), action="x")])
        gate.set()
        db._builds.wait()
        stale = cached(db)
        assert stale is not None and "m006" in stale.index and stale.token != current_token(db)
        for _ in range(6):  # the stale one serves only brought up to date (m006 deleted)
            assert search(db) == search(fresh)
            assert "m006" not in search(db)[0]
            db._builds.wait()
        snapshot = cached(db)
        assert snapshot is not None and snapshot.token == current_token(db)


def test_closing_the_database_while_a_build_runs_is_clean(
    seeded: SqlDb, gate: threading.Event, caplog: pytest.LogCaptureFixture
) -> None:
    db = large(seeded)
    search(db)
    search(db)
    assert db._builds.running(("user_memory", ALICE))
    threading.Timer(0.3, gate.set).start()  # the build, held, ends while close waits
    with caplog.at_level(logging.DEBUG, logger="kern.db"):
        db.close()
    assert not db._builds.running(("user_memory", ALICE))
    assert not [t for t in threading.enumerate() if t.name == "kern-scope-build"]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert not db._builds.start(("user_memory", ALICE), lambda: None)  # none after close


def test_a_failing_build_is_logged_once_and_searches_read_the_database(
    seeded: SqlDb,
    backend: Backend,
    target: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    db = large(seeded)

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the build broke")

    monkeypatch.setattr(ScopeRows, "build", broken)
    with numpy_db(backend, target, search_cache_mb=0) as uncached:
        expected = search(uncached)
        with caplog.at_level(logging.WARNING, logger="kern.db"):
            for _ in range(5):
                assert search(db) == expected
                db._builds.wait()
    said = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(said) == 1 and said[0].name == "kern.db._scope_builds"
    message = said[0].getMessage()
    assert "the build broke" in message and "RuntimeError" in message and ALICE in message
    assert cached(db) is None


# --- brought up to date by what changed (migration m007) -----------------------------------------


def _change_at_random(rng: random.Random, other: SqlDb, target: str, fresh: int) -> None:
    """Writes of every kind, by another database object and by hand-written SQL: new rows,
    text, status, expiry, validity and session changes, deletes."""
    from kern.db.schema import learnings

    new = _text_rows(rng, 3, turns=rng.random() < 0.5)
    other.apply(
        [
            dataclasses.replace(
                create,
                record=dataclasses.replace(
                    create.record, id=f"n{fresh + i}", content_hash=f"n{fresh + i}", key=None
                ),
            )
            for i, create in enumerate(new)
        ]
    )
    engine = bare_engine(target)
    with engine.begin() as conn:
        ids = sorted(conn.execute(select(learnings.c.id)).scalars())
        changed = rng.sample(ids, 4)
        conn.execute(
            learnings.update()
            .where(learnings.c.id == changed[0])
            .values(text=" ".join(rng.choices(_WORDS, k=5)), status="active")
        )
        conn.execute(
            learnings.update()
            .where(learnings.c.id == changed[1])
            .values(
                status=rng.choice(["deleted", "proposed", "active"]),
                expires_at=T0 + timedelta(days=rng.randint(-5, 5)),
                session_id=rng.choice([None, "s1", "s9"]),
            )
        )
        conn.execute(
            learnings.update()
            .where(learnings.c.id == changed[2])
            .values(
                valid_from=T0 + timedelta(days=rng.randint(-20, 0)),
                pinned=rng.random() < 0.5,
                user_id=rng.choice(["alice", "dave"]),
            )
        )
        conn.execute(learnings.delete().where(learnings.c.id == changed[3]))
    engine.dispose()


def _never_read_whole(*args: object) -> None:
    raise AssertionError("the scope was read whole, not brought up to date")


def test_a_snapshot_brought_up_to_date_answers_exactly_as_the_database(
    vdb: SqlDb, backend: Backend, target: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After writes of every kind by others, the snapshot is brought up to date by the rows
    changed (never read whole again) and answers every step as the database: neighbours,
    vectors and, on PostgreSQL, full-text ranking, scores and statistics to the last bit."""
    db = vdb
    rng = random.Random(29)
    db.apply(_text_rows(rng, 120, turns=False))
    with (
        numpy_db(backend, target, search_cache_mb=0) as uncached,
        numpy_db(backend, target, search_cache_mb=0) as other,
    ):
        warm(db)
        monkeypatch.setattr(type(db), "_read_snapshot", _never_read_whole)
        compared = 0
        for round_ in range(6):
            _change_at_random(rng, other, target, 1000 + 10 * round_)
            for _ in range(12):
                where = _random_filter(rng)
                hits = [key for key, _ in uncached.search_text_scores("dog cat tree", where)]
                ids = hits[:10] or ["m001"]
                around = rng.sample(ids, rng.randint(0, len(ids)))
                for gap in (GAP, None):
                    expected = uncached.load_neighbours(where, ids, around=around, gap=gap)
                    assert db.load_neighbours(where, ids, around=around, gap=gap) == expected
                query = np.random.default_rng(rng.randint(0, 99)).standard_normal(8)
                vector_ = query.astype(np.float32).tobytes()
                expected_near = uncached.search_vectors(vector_, where, limit=10)
                assert db.search_vectors(vector_, where, limit=10) == expected_near
                text_query, limit = _queries(rng, False), rng.choice([1, 5, 50])
                expected_text = uncached.search_text_scores(text_query, where, limit=limit)
                if backend.postgres:
                    from kern.db.postgres import PostgresDb

                    with monkeypatch.context() as patch:
                        patch.setattr(PostgresDb, "_text_search_query", _never_sql)
                        found = db.search_text_scores(text_query, where, limit=limit)
                else:
                    found = db.search_text_scores(text_query, where, limit=limit)
                assert found == expected_text
                compared += bool(expected_text) + bool(expected_near)
            snapshot = cached(db)
            assert snapshot is not None and snapshot.base is not None
            assert snapshot.vectors is not None
            if backend.postgres:
                assert snapshot.text is not None
        assert compared >= 40


def _insert_copy(conn: Any, source: str, key: str, words: str) -> None:
    """A new row of alice's scope, by hand-written SQL: ``source``'s with ``words`` as text."""
    conn.execute(
        text(
            "INSERT INTO learnings (id, store, kind, scope, user_id, session_id, content, text, "
            "content_hash, status, version, created_at, updated_at, metadata, pinned) "
            "SELECT :key, store, kind, scope, user_id, NULL, content, :words, :key, status, 1, "
            "created_at, updated_at, metadata, pinned FROM learnings WHERE id = :source"
        ),
        {"key": key, "words": words, "source": source},
    )


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_a_write_committed_after_a_later_one_is_still_seen(seeded: SqlDb, target: str) -> None:
    """PostgreSQL commits transactions out of the order of their ids: one that began first
    (the smaller id) and commits after a later one must still be seen once it commits, though
    the snapshot was brought up to date by the later one meanwhile."""
    db = seeded
    warm(db)
    engine = bare_engine(target)
    first, second = engine.connect(), engine.connect()
    try:
        first.begin()
        _insert_copy(first, "m001", "early", "dog kayak early")  # its id is the smaller
        with second.begin():
            _insert_copy(second, "m001", "late", "dog kayak late")
        hits, rows, _ = search(db, "kayak")
        assert "late" in hits and "early" not in hits
        snapshot = cached(db)
        assert snapshot is not None and snapshot.base is not None  # brought up to date
        first.commit()
        hits, rows, _ = search(db, "kayak")
        assert sorted(hits) == ["early", "late"] and {"early", "late"} <= set(rows)
    finally:
        first.close()
        second.close()
        engine.dispose()


def test_past_the_tombstones_kept_a_snapshot_is_read_whole(seeded: SqlDb, target: str) -> None:
    """Tombstones older than ``TOMBSTONE_HORIZON`` changes are pruned by the next delete; a
    snapshot read before them cannot know what they said, so it is read whole again."""
    from kern.db.migrations import TOMBSTONE_HORIZON

    db = seeded
    warm(db)
    before = cached(db)
    assert before is not None
    engine = bare_engine(target)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM learnings WHERE id = 'm003'"))
        if engine.dialect.name == "sqlite":  # a million writes later
            conn.execute(text(f"UPDATE learning_clock SET value = value + {TOMBSTONE_HORIZON}"))
            conn.execute(text("DELETE FROM learnings WHERE id = 'm002'"))
            kept = conn.execute(text("SELECT id FROM learning_tombstones")).scalars().all()
            assert kept == ["m002"]  # m003's was pruned
    engine.dispose()
    if engine.dialect.name != "sqlite":  # as if the snapshot were a million transactions old
        db._scope_cache._snapshots[("user_memory", ALICE)] = dataclasses.replace(  # type: ignore[union-attr]
            before, horizon=before.horizon - TOMBSTONE_HORIZON
        )
    _, rows, near = search(db)
    assert "m003" not in rows and "m003" not in near
    assert "m002" not in rows or engine.dialect.name != "sqlite"
    assert search(db)[1] == rows  # the second search after a write reads it whole again
    snapshot = cached(db)
    assert snapshot is not None and snapshot.base is None and snapshot.horizon > before.horizon


def test_a_snapshot_that_gathered_many_changes_is_read_whole_in_the_background(
    seeded: SqlDb, backend: Backend, target: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import kern.db._candidates as candidates

    monkeypatch.setattr(candidates, "CHANGES_KEPT", 2)
    db = seeded
    warm(db)
    # The reread is held back until the brought-up snapshot was seen: in a thread it could
    # replace that snapshot before the check below.
    started: list[Callable[[], object]] = []

    def start(key: object, build: Callable[[], object]) -> bool:
        started.append(build)
        return True

    monkeypatch.setattr(db._builds, "start", start)
    with numpy_db(backend, target, search_cache_mb=0) as other:
        for n in range(3):
            other.apply([Create(memory(10 + n, f"dog number {n}"), embedding=vector(n))])
            expected = search(other)
            assert search(db) == expected
            snapshot = cached(db)
            assert snapshot is not None and len(snapshot.changes) == n + 1
            assert len(started) == (1 if n + 1 > 2 else 0)  # past CHANGES_KEPT: reread
        started[0]()
        snapshot = cached(db)
        assert snapshot is not None and snapshot.base is None and len(snapshot) == 8
        assert search(db) == expected


def test_a_forgotten_user_written_again_is_never_served_their_old_rows(
    seeded: SqlDb, backend: Backend, target: str
) -> None:
    """Forgetting a user removes their scopes' tokens and tombstones (they name the user): a
    snapshot read before cannot be brought up to date past that, so once the scope is
    written again it is read whole, not served with the forgotten rows."""
    db = seeded
    warm(db)
    with numpy_db(backend, target, search_cache_mb=0) as other:
        other.delete_user("alice")
        with other.transaction(write=False) as conn:
            left = conn.execute(text("SELECT id, seq FROM learning_tombstones")).all()
        assert [(row[0], row[1]) for row in left] == [("", 0)]  # nothing naming alice
        other.apply([Create(memory(7, "A new dog, a new start"), embedding=vector(7))])
        expected = search(other)
    assert search(db) == expected
    assert sorted(search(db)[1]) == ["m007"]
