"""Vector search over 100,000 items in one scope: SQLite (numpy) against PostgreSQL (pgvector).

What ``embedder="local"`` search asks of the database (``db.search_vectors``: the nearest
384-dimension vectors by cosine, the scope filter inside the query) at a size where one scope
is large: 100,000 items in one user's scope and 100,000 in the shared ``global`` namespace, in
one table of 200,000. Vectors are all-MiniLM-L6-v2 embeddings (``benchmarks/vector_corpus.py``:
real bench-data texts and composed two-sentence texts; ``--random`` for random vectors, which
have no neighbourhood structure), queries LoCoMo's questions embedded the same way.

Hybrid search asks for ``RankingConfig.candidates`` (500) vector candidates; ``--limits`` also
measures 50. For each limit and, on PostgreSQL, each ``--ef-search`` value (``hnsw.ef_search``;
``rule`` is the value ``PostgresDb`` sets), p50 / p95 and recall: the share of the exact
``limit`` nearest in the scope (numpy over the same vectors) that come back, and of the exact
50 nearest among the 50 best that come back. The HNSW index is built after the bulk load (as
a bulk import would). ``--e2e`` then times ``lm.user_memory.search(question, limit=10)``
(and ``lm.learned_knowledge.search`` in the shared namespace) with ``embedder="local"``: the
whole pipeline, embedding included.

On SQLite vectors are scored in numpy, from the scope's in-memory snapshot when it holds them
(``kern.db._scopes``; the budget is ``search_cache_mb``) or else read from the database by
every search. Each ``--search-cache-mb`` budget is measured on its own ``SqliteDb``, after the
neighbour step has read the scope twice (as two hybrid searches would: the snapshot is built
on the second) and one vector search has completed it; ``from_memory`` is the share of timed
searches that sent no statement reading ``embedding`` (served by the snapshot).

    .venv/bin/python benchmarks/scale_vectors.py --data DIR [--engines sqlite postgres]
        [--workdir DIR --reuse] [--queries 200] [--ef-search rule 40 100 200 400 800]
        [--limits 50 500] [--search-cache-mb 64 256] [--e2e 100] [--skip-db-search]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engines import open_engine
from scale import bench_machine
from sqlalchemy import LargeBinary, bindparam, cast, event, func, insert, select
from vector_corpus import Corpus

import kern.db.postgres as postgres
from kern.context import RunContext
from kern.db.base import LearningFilter
from kern.db.schema import learnings
from kern.db.sql import LEARNING_COLUMNS, SqlDb
from kern.db.sqlite import SqliteDb
from kern.learn import LearningMachine
from kern.search.embedders import LocalEmbedder

NOW = datetime.now(UTC)
USER = "u0"
BATCH = 2_000


def scopes(lm: LearningMachine) -> dict[str, LearningFilter]:
    """The two 100,000-item scopes: user ``u0``'s memories, the shared ``global`` namespace."""
    return {
        "user": lm.user_memory._where(lm.user_memory._context(USER)),
        "shared": lm.learned_knowledge._where(lm.learned_knowledge._context(USER)),
    }


def load(lm: LearningMachine, texts: list[str], vectors: np.ndarray) -> float:
    """The first half of the items into ``u0``'s memories, the second into the shared
    namespace (written by 1,000 users), built by the stores as ``add`` builds them and dated
    over the last year; 2,000-item multi-row inserts. Items per second."""
    db: Any = lm.db
    pgvector = getattr(db, "vectors", None) == "pgvector"
    if pgvector:  # cast from text, as PostgresDb.apply does
        value: Any = cast(
            bindparam("embedding_value", type_=postgres._Vector()), postgres._Vector()
        )
    else:
        value = bindparam("embedding_value", type_=LargeBinary())
    statement = insert(learnings).values(embedding=value)
    rng = np.random.default_rng(11)
    half = len(texts) // 2
    began = time.perf_counter()
    for first in range(0, len(texts), BATCH):
        rows = []
        for i in range(first, min(first + BATCH, len(texts))):
            store = lm.user_memory if i < half else lm.learned_knowledge
            user = USER if i < half else f"u{i % 1000 + 1}"
            ctx = RunContext(run_id="", session_id="", user_id=user)
            when = NOW - timedelta(days=float(rng.uniform(1, 365)))
            record = store._record(ctx, store.coerce(texts[i]), created_at=when)
            row = {c.name: getattr(record, c.name) for c in LEARNING_COLUMNS}
            rows.append({**row, "updated_at": when, "embedding_value": vectors[i].tobytes()})
        with db.transaction(action="load vectors") as conn:
            conn.execute(statement, rows)
    if pgvector:
        db._index_dimensions({vectors.shape[1]})  # after the load, as a bulk import would
    with db.transaction() as conn:
        conn.exec_driver_sql("ANALYZE" if pgvector else "ANALYZE learnings")
    return len(texts) / (time.perf_counter() - began)


def stored(db: SqlDb) -> int:
    with db.transaction(write=False) as conn:
        return int(conn.execute(select(func.count()).select_from(learnings)).scalar_one())


@contextmanager
def ef_search(value: int | None) -> Iterator[None]:
    """``PostgresDb``'s ``hnsw.ef_search`` rule replaced by a constant (``None``: its own)."""
    rule = postgres._hnsw_ef_search
    if value is not None:
        postgres._hnsw_ef_search = lambda limit: value
    try:
        yield
    finally:
        postgres._hnsw_ef_search = rule


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[round(share * (len(ordered) - 1))]


@contextmanager
def vector_reads(db: SqlDb) -> Iterator[list[int]]:
    """Counts the statements sent that read ``learnings.embedding`` (``[count]``): none while
    vectors come from a scope's snapshot."""
    counter = [0]

    def count(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        if "embedding" in statement.split("FROM")[0]:
            counter[0] += 1

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        yield counter
    finally:
        event.remove(db.engine, "before_cursor_execute", count)


def warm_snapshot(db: SqlDb, where: LearningFilter, ids: list[str], vector: bytes) -> None:
    """What two hybrid searches do before the third can be served from memory: the neighbour
    step sees the scope's token, then builds the snapshot; a vector search completes it."""
    for _ in range(2):
        db.load_neighbours(where, ids[:1])
    db.search_vectors(vector, where, limit=1)


def measure(
    db: SqlDb,
    where: LearningFilter,
    own: np.ndarray,
    ids: list[str],
    queries: np.ndarray,
    limit: int,
) -> dict[str, Any]:
    """p50 / p95 of ``db.search_vectors``, recall against the exact nearest (numpy over the
    corpus), and the share of searches served from memory."""
    timings, recalls, recalls50 = [], [], []
    served = 0
    for q, query in enumerate(queries):
        with vector_reads(db) as reads:
            started = time.perf_counter()
            hits = db.search_vectors(query.tobytes(), where, limit=limit)
            elapsed = (time.perf_counter() - started) * 1000
        if q < 5:
            continue  # warm-up
        served += reads[0] == 0
        timings.append(elapsed)
        exact = np.argsort(-(own @ query), kind="stable")
        found = [key for key, _ in hits]
        recalls.append(len({ids[i] for i in exact[:limit]} & set(found)) / limit)
        recalls50.append(len({ids[i] for i in exact[:50]} & set(found[:50])) / 50)
    return {
        "limit": limit,
        "queries": len(timings),
        "p50_ms": statistics.median(timings),
        "p95_ms": percentile(timings, 0.95),
        "recall_at_limit": statistics.fmean(recalls),
        "recall_at_50": statistics.fmean(recalls50),
        "min_recall_at_50": min(recalls50),
        "from_memory": served / len(timings),
        "load_average_1min": os.getloadavg()[0],
    }


def plan(db: SqlDb, where: LearningFilter, query: np.ndarray, limit: int) -> str:
    """The plan PostgreSQL picks for one search (is the HNSW index used?): the statement
    ``search_vectors`` sends, captured and explained with the same settings."""
    sent: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, *rest: Any) -> None:
        if "<=>" in statement:
            sent.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", capture)
    try:
        db.search_vectors(query.tobytes(), where, limit=limit)
    finally:
        event.remove(db.engine, "before_cursor_execute", capture)
    statement, parameters = sent[-1]
    with db.transaction() as conn:
        conn.exec_driver_sql(f"SET LOCAL hnsw.ef_search = {postgres._hnsw_ef_search(limit)}")
        conn.exec_driver_sql("SET LOCAL hnsw.iterative_scan = relaxed_order")
        lines = conn.exec_driver_sql("EXPLAIN " + statement, parameters).scalars().all()
    return re.sub(r"'\[[^']*\]'", "'[…]'", " / ".join(line.strip() for line in lines))


def end_to_end(
    lm: LearningMachine, scope: str, questions: list[str], queries: int
) -> dict[str, Any]:
    """``lm.user_memory.search`` (``scope`` "user") or ``lm.learned_knowledge.search``
    ("shared") in the 100,000-item scope, the question embedded each time; then, question by
    question, its parts alone: embedding the question, the full-text and the vector
    candidates (500 each, as hybrid search asks)."""
    asked = questions[: queries + 5]
    timings: dict[str, list[float]] = {"search": [], "embed": [], "text": [], "vectors": []}
    embedder: Any = lm.embedder
    where = scopes(lm)[scope]
    db: Any = lm.db
    store: Any = lm.user_memory if scope == "user" else lm.learned_knowledge
    parts: dict[str, Any] = {
        "search": lambda q: store.search(q, user_id=USER, limit=10),
        "embed": lambda q: embedder._encode([q]),
        "text": lambda q: db.search_text_scores(q, where, limit=500),
        "vectors": lambda q: db.search_vectors(vectors[q].tobytes(), where, limit=500),
    }
    vectors = {q: embedder._encode([q])[0] for q in asked}
    served = 0
    for name, part in parts.items():
        for n, question in enumerate(asked):
            with vector_reads(db) as reads:
                started = time.perf_counter()
                part(question)
                elapsed = (time.perf_counter() - started) * 1000
            if n >= 5:
                timings[name].append(elapsed)
                served += name == "search" and reads[0] == 0
    row: dict[str, Any] = {"queries": len(timings["search"])}
    row["from_memory"] = served / len(timings["search"])
    for name, values in timings.items():
        prefix = "" if name == "search" else f"{name}_"
        row[f"{prefix}p50_ms"] = statistics.median(values)
        row[f"{prefix}p95_ms"] = percentile(values, 0.95)
    row["load_average_1min"] = os.getloadavg()[0]
    return row


def run_engine(
    engine: str,
    corpus: Corpus,
    args: argparse.Namespace,
    workdir: Path,
) -> Iterator[dict[str, Any]]:
    texts, vectors = corpus.texts, corpus.vectors
    with open_engine(engine, workdir, None, database="kern_vectors", reuse=args.reuse) as db:
        lm = bench_machine(db)
        count = stored(db)
        rate = load(lm, texts, vectors) if count == 0 else None
        if count not in (0, len(texts)):
            raise SystemExit(f"{count} items stored, expected {len(texts)}: drop --reuse")
        with db.transaction(write=False) as conn:
            rows = conn.execute(select(learnings.c.id, learnings.c.scope).order_by(learnings.c.seq))
            stored_ids = [row[0] for row in rows]
        pg = getattr(db, "vectors", None) == "pgvector"
        # PostgreSQL keeps no snapshot of a pgvector scope: one pass, its own settings.
        budgets: list[float | None] = [None] if pg else list(args.search_cache_mb)
        for budget in budgets:
            with budgeted(db, budget) as measured:
                yield from measure_engine(measured, engine, budget, corpus, stored_ids, rate, args)


@contextmanager
def budgeted(db: SqlDb, budget: float | None) -> Iterator[SqlDb]:
    """``db`` itself, or (SQLite) the same file opened anew with ``search_cache_mb=budget``."""
    if budget is None:
        yield db
        return
    other = SqliteDb(db_file=db.db_file, search_cache_mb=budget)  # type: ignore[attr-defined]
    try:
        yield other
    finally:
        other.close()


def measure_engine(
    db: SqlDb,
    engine: str,
    budget: float | None,
    corpus: Corpus,
    stored_ids: list[str],
    rate: float | None,
    args: argparse.Namespace,
) -> Iterator[dict[str, Any]]:
    vectors, half = corpus.vectors, len(corpus.texts) // 2
    lm = bench_machine(db)
    pg = getattr(db, "vectors", None) == "pgvector"
    queries = corpus.question_vectors[: args.queries + 5]
    common = {"engine": engine, "search_cache_mb": budget}
    for name, where in scopes(lm).items():
        if args.skip_db_search:
            break
        part = slice(0, half) if name == "user" else slice(half, len(corpus.texts))
        own, ids = vectors[part], stored_ids[part]
        if not pg:
            warm_snapshot(db, where, ids, queries[0].tobytes())
        for limit in args.limits:
            settings: list[str | None] = list(args.ef_search) if pg else [None]
            for setting in settings:
                value = None if setting in (None, "rule") else int(setting)
                with ef_search(value):
                    row = {
                        **common,
                        "scope": name,
                        "items_in_scope": len(ids),
                        "ef_search": setting if value is None else value,
                        "load_items_per_s": rate,
                        **measure(db, where, own, ids, queries, limit),
                    }
                    if pg:
                        row["plan"] = plan(db, where, queries[0], limit)
                print(json.dumps(row), flush=True)
                yield row
    if args.e2e:
        lm = bench_machine(db, embedder=LocalEmbedder())
        for name in ("user", "shared"):
            store: Any = lm.user_memory if name == "user" else lm.learned_knowledge
            for _ in range(3):  # the third search is the first the snapshot can serve
                store.search("warm up", user_id=USER, limit=10)
            row = {**common, "scope": name, "end_to_end": True}
            row |= end_to_end(lm, name, corpus.questions, args.e2e)
            print(json.dumps(row), flush=True)
            yield row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--engines", nargs="+", default=["sqlite", "postgres"])
    parser.add_argument("--data", type=Path, required=True, help="vector_corpus.py's cache")
    parser.add_argument("--items", type=int, default=200_000, help="both scopes together")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--limits", type=int, nargs="+", default=[50, 500])
    parser.add_argument("--ef-search", nargs="+", default=["rule"])
    parser.add_argument("--e2e", type=int, default=0, help="end-to-end searches (0: none)")
    parser.add_argument(
        "--search-cache-mb", type=float, nargs="+", default=[64], help="SQLite budgets"
    )
    parser.add_argument(
        "--skip-db-search", action="store_true", help="only the end-to-end searches"
    )
    parser.add_argument("--random", action="store_true", help="random vectors, not MiniLM")
    parser.add_argument("--workdir", type=Path, help="keep the databases here")
    parser.add_argument("--reuse", action="store_true", help="measure the databases kept")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/scale-vectors-100k.json"))
    args = parser.parse_args()
    corpus = Corpus(args.data, args.items)
    if args.random:
        rng = np.random.default_rng(7)
        corpus.vectors = rng.standard_normal(corpus.vectors.shape).astype("float32")
        corpus.vectors /= np.linalg.norm(corpus.vectors, axis=1, keepdims=True)
        corpus.question_vectors = rng.standard_normal(corpus.question_vectors.shape).astype(
            "float32"
        )
    corpus.question_vectors = corpus.question_vectors / np.linalg.norm(
        corpus.question_vectors, axis=1, keepdims=True
    )
    results = []
    with tempfile.TemporaryDirectory() as folder:
        workdir = args.workdir or Path(folder)
        workdir.mkdir(parents=True, exist_ok=True)
        for engine in args.engines:
            results.extend(run_engine(engine, corpus, args, workdir))
    args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
