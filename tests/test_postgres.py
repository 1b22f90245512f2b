"""What only PostgresDb does: URLs and pools, pgvector or its fallback, SKIP LOCKED claims,
deadlock retries, Postgres-only refusals. The shared contract runs on both engines elsewhere
(the ``db`` fixture)."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from sqlalchemy import event, func, select, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import make_url

from kern._text import query_terms
from kern.db.base import Create, JobRecord, LearningDb, LearningFilter, LearningRecord, Put
from kern.db.postgres import PostgresDb, create_postgres_engine
from kern.db.schema import jobs, learnings
from kern.errors import ConfigError, InvalidArgumentError, StorageError
from tests.backends import PostgresCluster

pytestmark = pytest.mark.postgres

ALICE = LearningFilter(scopes=["user:alice"])


@pytest.fixture
def url(postgres_cluster: PostgresCluster) -> Iterator[str]:
    """An empty database: the test decides how PostgresDb opens it."""
    created = postgres_cluster.create(migrated=False)
    yield created
    postgres_cluster.drop(created)


def vec(*values: float) -> bytes:
    return np.asarray(values, dtype=np.float32).tobytes()


def memory(learning_id: str, text_: str, *, embedding: bytes | None = None, **fields: Any) -> Any:
    record = LearningRecord(
        id=learning_id,
        store=fields.pop("store", "user_memory"),
        kind="memory",
        scope="user:alice",
        content={"content": text_},
        text=text_,
        user_id="alice",
        **fields,
    )
    return Create(record, embedding=embedding)


def test_opening_migrates_and_enables_pgvector(url: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="kern.db.postgres"), PostgresDb(url) as db:
        assert isinstance(db, LearningDb)
        assert db.vectors == "pgvector"
        assert repr(db).startswith("PostgresDb('postgresql+psycopg://")
    assert "pgvector enabled" in caplog.text
    with PostgresDb(url) as again:  # a second open changes nothing
        assert again.vectors == "pgvector"


@pytest.mark.parametrize("scheme", ["postgresql", "postgres", "postgresql+psycopg"])
def test_urls_take_the_psycopg_driver_and_hide_the_password(scheme: str) -> None:
    engine = create_postgres_engine(f"{scheme}://kern:s3cret@db.example:5432/kern")
    try:
        assert engine.url.drivername == "postgresql+psycopg"
        assert engine.pool.size() == 5  # type: ignore[attr-defined]
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("db_url", "options", "message"),
    [
        ("mysql://localhost/kern", {}, "postgresql://"),
        ("postgresql+psycopg2://localhost/kern", {}, "psycopg 3"),
        ("", {}, "db_url"),
        ("not a url", {}, "not a database URL"),
        ("postgresql://localhost/kern", {"pool_size": -1}, "pool_size"),
    ],
)
def test_bad_urls_and_pool_settings_are_config_errors(
    db_url: str, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        PostgresDb(db_url, **options)


def test_an_unreachable_server_is_a_storage_error_naming_it_without_password() -> None:
    with pytest.raises(StorageError, match=r"could not .*\*\*\*@127\.0\.0\.1:1/") as raised:
        PostgresDb("postgresql://kern:s3cret@127.0.0.1:1/kern", connect_args={"connect_timeout": 2})
    assert "s3cret" not in str(raised.value)


# -- vectors -------------------------------------------------------------------------------------


def test_vectors_round_trip_and_are_searched_by_the_database_per_dimension(url: str) -> None:
    with PostgresDb(url) as db:
        exact = vec(0.1, 1e-38, 3.4e38)  # floats that text must carry exactly
        db.apply(
            [
                memory("a", "east", embedding=vec(1, 0, 0)),
                memory("b", "north", embedding=vec(0, 1, 0)),
                memory("c", "north-east", embedding=vec(1, 1, 0)),
                memory("x", "exact", embedding=exact),
                memory("z", "zero", embedding=vec(0, 0, 0)),
                memory("w", "another embedder", embedding=vec(1, 0)),
                memory("n", "no vector"),
            ]
        )
        ids, blobs = db.load_vectors(ALICE)
        assert dict(zip(ids, blobs, strict=True))["x"] == exact
        hits = db.search_vectors(vec(1, 0.1, 0), ALICE, limit=3)
        assert [key for key, _ in hits] == ["a", "c", "b"]
        assert hits[0][1] == pytest.approx(0.995, abs=1e-3)
        assert [key for key, _ in db.search_vectors(vec(0, 1), ALICE)] == ["w"]  # 2 dims only
        assert db.search_vectors(vec(1, 0, 0), LearningFilter(scopes=["user:bob"])) == []
        with db.transaction(write=False) as conn:
            names = set(conn.execute(text("SELECT indexname FROM pg_indexes")).scalars())
        assert {"ix_learnings_embedding_hnsw_2", "ix_learnings_embedding_hnsw_3"} <= names
        # The index serves the query shape search_vectors sends.
        with db.transaction() as conn:
            conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
            plan = conn.exec_driver_sql(
                "EXPLAIN SELECT id FROM learnings WHERE vector_dims(learnings.embedding) = 3 "
                "ORDER BY (learnings.embedding::vector(3)) <=> '[1,0,0]'::vector(3) LIMIT 5"
            ).scalars()
            assert "ix_learnings_embedding_hnsw_3" in "\n".join(plan)
        with pytest.raises(StorageError, match="multiple of 4"):
            db.apply([memory("bad", "odd bytes", embedding=b"\x00" * 5)])


def test_a_vector_search_sets_ef_search_from_its_limit(url: str) -> None:
    """``hnsw.ef_search`` is the limit, at least 200 (below that the 50 nearest came back at
    0.96 instead of 0.98 on MiniLM vectors, benchmarks/scale.md) and at most pgvector's 1,000."""
    sent: list[str] = []

    def capture(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        if "ef_search" in statement:
            sent.append(statement.rsplit("=", 1)[1].strip())

    with PostgresDb(url) as db:
        db.apply([memory("a", "east", embedding=vec(1, 0, 0))])
        event.listen(db.engine, "before_cursor_execute", capture)
        try:
            for limit in (10, 50, 500, 2000):
                assert db.search_vectors(vec(1, 0.1, 0), ALICE, limit=limit)[0][0] == "a"
        finally:
            event.remove(db.engine, "before_cursor_execute", capture)
    assert sent == ["200", "200", "500", "1000"]


def test_pgvector_false_keeps_bytea_and_a_later_open_converts_the_stored_vectors(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="kern.db.postgres"):
        with PostgresDb(url, pgvector=False) as db:
            assert db.vectors == "bytea"
            db.apply(
                [
                    memory("a", "east", embedding=vec(1, 0, 0)),
                    memory("b", "north", embedding=vec(0, 1, 0)),
                    memory("nan", "broken", embedding=vec(float("nan"), 0, 0)),
                ]
            )
            before = db.load_vectors(ALICE)
            assert [key for key, _ in db.search_vectors(vec(1, 0.1, 0), ALICE)] == ["a", "b"]
        with PostgresDb(url) as db:
            assert db.vectors == "pgvector"
            ids, blobs = db.load_vectors(ALICE)
            assert (ids, blobs) == (before[0][:2], before[1][:2])  # NaN could not be kept
            assert [key for key, _ in db.search_vectors(vec(1, 0.1, 0), ALICE)] == ["a", "b"]
    assert "2 stored embeddings converted" in caplog.text
    assert "1 stored embeddings were not float32 vectors" in caplog.text


def test_without_pgvector_vectors_fall_back_to_bytea_with_one_warning(
    postgres_cluster: PostgresCluster, caplog: pytest.LogCaptureFixture
) -> None:
    # A role that owns its database but may not create the (untrusted) extension: the usual
    # managed-Postgres situation when nobody installed pgvector.
    admin = create_postgres_engine(postgres_cluster.admin_url)
    name = "kern_no_vector_test"
    with admin.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.exec_driver_sql(f"DROP ROLE IF EXISTS {name}")
        conn.exec_driver_sql(f"CREATE ROLE {name} LOGIN")
        conn.exec_driver_sql(f"CREATE DATABASE {name} OWNER {name} TEMPLATE template0")
    url = make_url(postgres_cluster.admin_url).set(username=name, database=name)
    target = url.render_as_string(hide_password=False)
    try:
        with caplog.at_level(logging.WARNING, logger="kern.db.postgres"), PostgresDb(target) as db:
            assert db.vectors == "bytea"
            db.apply(
                [memory("a", "east", embedding=vec(1, 0)), memory("b", "x", embedding=vec(0, 1))]
            )
            assert [key for key, _ in db.search_vectors(vec(1, 0.2), ALICE)] == ["a", "b"]
            assert ids_of(db.search_text("east", ALICE)) == ["a"]
        warnings = [r for r in caplog.records if "pgvector is not available" in r.getMessage()]
        assert len(warnings) == 1 and "permission denied" in warnings[0].getMessage()
        with pytest.raises(ConfigError, match="pgvector=True"):
            PostgresDb(target, pgvector=True)
    finally:
        with admin.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT")
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            conn.exec_driver_sql(f"DROP ROLE IF EXISTS {name}")
        admin.dispose()


def ids_of(hits: Any) -> list[str]:
    return [h.record.id for h in hits]


# -- concurrency ---------------------------------------------------------------------------------


def test_a_claim_skips_a_job_another_transaction_has_locked(url: str) -> None:
    with PostgresDb(url) as db:
        for job_id in ("first", "second"):
            db.enqueue_job(JobRecord(id=job_id, kind="extract", payload={}))
            time.sleep(0.01)  # distinct created_at: "first" is the oldest
        locked = threading.Event()
        release = threading.Event()
        gave_up: list[bool] = []

        def hold_first() -> None:
            with db.transaction() as conn:
                conn.execute(select(jobs).where(jobs.c.id == "first").with_for_update())
                locked.set()
                gave_up.append(not release.wait(60))  # before the lock goes

        holder = threading.Thread(target=hold_first)
        holder.start()
        try:
            assert locked.wait(60)
            claim = db.claim_job()
            assert claim is not None and claim.id == "second"
            assert gave_up == []  # claimed while "first" was still locked, not blocked behind it
        finally:
            release.set()
            holder.join()
        assert db.claim_job().id == "first"  # type: ignore[union-attr]


def test_a_write_that_loses_a_deadlock_is_retried(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    def key(name: str, value: str) -> Put:
        record = LearningRecord(
            id=f"{name}-{value}",
            store="user_profile",
            kind="field",
            scope="user:alice",
            content={name: value},
            text=f"{name}: {value}",
            user_id="alice",
            key=name,
        )
        return Put(record)

    with PostgresDb(url) as db:
        db.apply([key("a", "0"), key("b", "0")])
        original = db._apply_op
        barrier = threading.Barrier(2, timeout=10)
        first_attempts: set[int] = set()

        def interleaved(*args: Any, **kwargs: Any) -> Any:
            result = original(*args, **kwargs)
            me = threading.get_ident()
            if me not in first_attempts:  # both lock their first row, then want the other's
                first_attempts.add(me)
                barrier.wait()
            return result

        db._apply_op = interleaved  # type: ignore[method-assign]
        errors: list[BaseException] = []

        def write(ops: list[Put]) -> None:
            try:
                db.apply(ops)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [
            threading.Thread(target=write, args=([key("a", "1"), key("b", "1")],)),
            threading.Thread(target=write, args=([key("b", "2"), key("a", "2")],)),
        ]
        with caplog.at_level(logging.INFO, logger="kern.db.postgres"):
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=30)
        assert errors == []
        assert "retrying" in caplog.text and "40P01" in caplog.text
        where = LearningFilter(store="user_profile")
        assert {r.key: r.version for r in db.list_learnings(where)} == {"a": 3, "b": 3}


def test_nul_characters_are_refused_clearly(url: str) -> None:
    with PostgresDb(url) as db:
        # Refused before the database by kern's own check, the same on both engines.
        with pytest.raises(InvalidArgumentError, match="NUL character"):
            db.apply([memory("m", "a\x00b")])
        assert db.count_learnings(ALICE) == 0


def test_full_text_keeps_stopwords_like_sqlite(url: str) -> None:
    with PostgresDb(url) as db:
        db.apply([memory("m", "Who am I? I am the one who paints")])
        assert ids_of(db.search_text("who am I", ALICE)) == ["m"]  # only stopwords: kept
        assert ids_of(db.search_text("painting", ALICE)) == ["m"]  # stemmed


def bm25(rows: dict[str, set[str]], documents: int, query: set[str]) -> dict[str, float]:
    """Okapi BM25 with tf = 1 as its definition reads (kern.db.postgres): FTS5's IDF over the
    ``documents`` rows of the filter, a row's length against the matches' average."""
    matches = {key: words for key, words in rows.items() if words & query}
    average = sum(len(words) for words in matches.values()) / len(matches)
    held = {term: sum(term in words for words in matches.values()) for term in query}
    idf = {t: max(math.log((documents - n + 0.5) / (n + 0.5)), 1e-6) for t, n in held.items()}
    return {
        key: sum(idf[t] for t in words & query)
        * 2.2
        / (1 + 1.2 * (0.25 + 0.75 * len(words) / average))
        for key, words in matches.items()
    }


def test_full_text_scores_are_bm25_over_the_filtered_rows(url: str) -> None:
    """N counts the rows the filter keeps (not another user's, not an expired one), document
    frequencies and the average length come from the matches, and a row's length is its
    number of distinct lexemes."""
    texts = {
        "a1": "kayak river",
        "a2": "kayak lake morning swim",
        "a3": "river otter",
        "a4": "mountain hut",
        "a5": "kayak kayak paddle",
        "a6": "quiet evening",
    }
    now = datetime.now(UTC)
    with PostgresDb(url) as db:
        db.apply(
            [memory(key, text_) for key, text_ in texts.items()]
            + [memory("gone", "kayak river otter", expires_at=now - timedelta(days=1))]
            + [
                Create(replace(memory(f"b{i}", "kayak river").record, scope="user:bob"))
                for i in range(5)
            ]
        )
        mine = LearningFilter(scopes=["user:alice"], unexpired_at=now)
        hits = db.search_text("kayaks on the river", mine)
    rows = {key: set(text_.split()) for key, text_ in texts.items()}
    rows["a5"] = {"kayak", "paddle"}  # the index holds each word once
    expected = bm25(rows, documents=len(texts), query={"kayak", "river"})
    assert ids_of(hits) == sorted(expected, key=lambda key: (-expected[key], key))
    assert [h.score for h in hits] == pytest.approx([expected[h.record.id] for h in hits], 1e-12)


def test_a_full_text_search_reads_the_scope_once(url: str) -> None:
    """One scan of the filtered rows gives N, the document frequencies and the scores (a
    second scan to count the scope cost as much again over a large shared namespace); the
    other read of ``learnings`` is the lookup of the winners' columns."""
    with PostgresDb(url) as db:
        db.apply([memory(f"m{i}", f"kayak river number {i}") for i in range(20)])
        found = db._text_search_query("kayak river", ALICE, 10, (learnings.c.id,))
        assert found is not None
        statement, values = found
        compiled = statement.params(values).compile(
            dialect=postgresql.dialect(),
            compile_kwargs={"literal_binds": True, "render_postcompile": True},
        )
        with db.transaction(write=False) as conn:
            plan = conn.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {compiled}").scalar_one()

    def scans(node: dict[str, Any]) -> list[str]:
        own = [node["Node Type"]] if node.get("Relation Name") == "learnings" else []
        return own + [s for child in node.get("Plans", []) for s in scans(child)]

    assert len(scans(plan[0]["Plan"])) == 2


def test_query_words_are_stemmed_once_as_the_whole_query_would_be(url: str) -> None:
    """Each word's lexemes are asked of the database once and remembered, and together they
    are what ``to_tsvector`` makes of the whole query."""
    queries = [
        "Kayaks running, ran and runs",
        "Zoë's café in Zürich 2024 at 7pm",
        "x1 version2 3rd 42 ½ naïve Ørsted",
        "привет мир and 東京 trips",
    ]
    with PostgresDb(url) as db:
        statements: list[str] = []
        event.listen(db.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
        for query in queries:
            whole = func.tsvector_to_array(
                func.to_tsvector(text("'kern_english'::regconfig"), " ".join(query_terms(query)))
            )
            with db.transaction(write=False) as conn:
                expected = sorted(conn.execute(select(whole)).scalar_one())
            assert db._lexemes(query) == expected, query
        statements.clear()
        assert db._lexemes("running kayaks") == ["kayak", "run"]
        assert statements == []  # every word was stemmed before


def test_the_neighbour_read_is_one_statement_whatever_the_number_of_time_windows(
    url: str,
) -> None:
    """Session-less rows' time windows are one part of the neighbour read, joined with arrays
    of windows: a part per window (~50 for a user's recall) cost ~13 ms of planning, 7x the
    execution, on every search not served from a snapshot."""
    start = datetime(2024, 1, 1, tzinfo=UTC)
    with PostgresDb(url, search_cache_mb=0) as db:
        db.apply(
            [
                memory(f"m{i}", f"note {i}", created_at=start + timedelta(hours=2 * i))
                for i in range(40)
            ]
        )
        where = replace(ALICE, store="user_memory")
        ids = [f"m{i}" for i in range(0, 40, 3)]
        sent: list[str] = []
        event.listen(db.engine, "before_cursor_execute", lambda *a: sent.append(a[2]))
        rows = db.load_neighbours(where, ids, around=ids, gap=timedelta(minutes=150))
        # Each window (150 minutes either side) reaches the rows 2 hours before and after.
        expected = sorted(
            {f"m{j}" for i in range(0, 40, 3) for j in (i - 1, i, i + 1)} - {"m-1", "m40"},
            key=lambda k: int(k[1:]),
        )
        assert [row.id for row in rows] == expected
        (statement,) = [s for s in sent if "UNION" in s]
        assert statement.count("UNION") == 2
