"""Recall latency and write throughput at 10k, 100k and 1M stored items, SQLite vs PostgreSQL.

The stored data grows in place (10k, then up to 100k, then up to 1M items) and is measured at
each size, through kern's own paths:

- data: every 100 items are one user's: 90 user memories (their private scope) and 10
  learnings in the shared ``global`` namespace, so at 1M there are 10,000 users with 90
  memories each and 100,000 shared learnings. Texts are 10 words drawn from a 20,000-word
  Zipf vocabulary (a few words are in most rows, most words in few), dated over the last year.
  Built by the stores as ``add`` builds them, written with their history events in 2,000-item
  transactions of multi-row inserts (``db.apply`` would send one statement per row).
- recall: ``lm.user_memory.search`` (one user's scope) and ``lm.learned_knowledge.search`` (the
  whole shared namespace), limit 10: hybrid search without an embedder, i.e. full-text
  candidates (FTS5 BM25 / tsvector + GIN) + the ranking pipeline. Queries are two words of one
  of the user's items plus one random vocabulary word. p50 / p95 over ``--queries`` queries,
  after 20 warm-up queries.
- writes: ``lm.user_memory.add`` (one item = one transaction, with its history event), from one
  thread and from 8 threads at once.
- vectors (``--vectors DIM``, optional): every item also gets a random DIM-float embedding and
  ``db.search_vectors`` (50 nearest) is timed for one user's scope and for the shared namespace:
  numpy over the scope's vectors on SQLite, pgvector (HNSW per dimension) on PostgreSQL.

PostgreSQL is the server pgserver ships (PostgreSQL 18 + pgvector, default configuration but
for the larger ``maintenance_work_mem`` index builds need), started in ``--workdir``, or any
server given by ``--postgres-url`` (an admin URL; a database ``kern_scale`` is recreated).

    .venv/bin/python benchmarks/scale.py [--engines sqlite postgres] [--sizes 10000 100000 1000000]
        [--queries 200] [--vectors 0] [--json benchmarks/scale.json] [--plot benchmarks/scale.png]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

# The kern of this checkout, not whichever kern the environment has installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engines import open_engine
from sqlalchemy import LargeBinary, bindparam, cast, func, insert, select

from kern.context import RunContext
from kern.db._candidates import SEARCH_CACHE_MB
from kern.db.base import LearningFilter
from kern.db.schema import learning_history, learnings
from kern.db.sql import LEARNING_COLUMNS, SqlDb
from kern.learn import LearningMachine, UserMemoryConfig
from kern.models.testing import TestModel

ITEMS_PER_USER = 100
SHARED_PER_USER = 10  # of ITEMS_PER_USER, in the global namespace
WORDS_PER_ITEM = 10
VOCABULARY = 20_000
BATCH = 2_000
NOW = datetime.now(UTC)


@dataclass
class Corpus:
    """Every item's words (ids into ``vocabulary``), generated in order, reproducibly."""

    vocabulary: list[str]
    probabilities: np.ndarray
    words: np.ndarray  # (items, WORDS_PER_ITEM) int32
    rng: np.random.Generator

    @classmethod
    def create(cls, seed: int = 7) -> Corpus:
        rng = np.random.default_rng(seed)
        letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
        vocabulary: list[str] = []
        seen: set[str] = set()
        while len(vocabulary) < VOCABULARY:
            word = "".join(rng.choice(letters, size=int(rng.integers(4, 10))))
            if word not in seen:
                seen.add(word)
                vocabulary.append(word)
        ranks = np.arange(1, VOCABULARY + 1, dtype=np.float64)
        weights = 1.0 / ranks**1.07
        return cls(vocabulary, weights / weights.sum(), np.zeros((0, WORDS_PER_ITEM), "int32"), rng)

    def grow(self, count: int) -> None:
        more = self.rng.choice(VOCABULARY, size=(count, WORDS_PER_ITEM), p=self.probabilities)
        self.words = np.concatenate([self.words, more.astype("int32")])

    def text(self, item: int) -> str:
        return "Note " + " ".join(self.vocabulary[w] for w in self.words[item]) + "."

    def query(self, item: int) -> str:
        own = self.rng.choice(self.words[item], size=2, replace=False)
        extra = self.rng.choice(VOCABULARY, p=self.probabilities)
        return " ".join(self.vocabulary[w] for w in (*own, extra))


def user_of(item: int) -> str:
    return f"u{item // ITEMS_PER_USER}"


def is_shared(item: int) -> bool:
    return item % ITEMS_PER_USER >= ITEMS_PER_USER - SHARED_PER_USER


# -- engines -----------------------------------------------------------------------------------


def server_version(db: SqlDb) -> str:
    with db.transaction(write=False) as conn:
        if db.engine.dialect.name == "postgresql":
            return str(conn.exec_driver_sql("SHOW server_version").scalar())
        return "SQLite " + str(conn.exec_driver_sql("SELECT sqlite_version()").scalar())


def analyze(db: SqlDb) -> None:
    """Fresh planner statistics, as autovacuum (Postgres) or ``PRAGMA optimize`` would leave.

    On PostgreSQL a ``VACUUM`` too, as docs/scaling.md advises after a bulk load: until a row
    is vacuumed, the first searches that read it set its hint bits and write its page back,
    and a search over a 100,000-row shared namespace reads all of them (benchmarks/scale.md).
    """
    if db.engine.dialect.name != "postgresql":
        with db.transaction() as conn:
            conn.exec_driver_sql("ANALYZE")
        return
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM (ANALYZE)")  # not inside a transaction


def stored_items(db: SqlDb) -> int:
    """Benchmark items a reused database holds (their users are ``u<n>``; writers are not)."""
    with db.transaction(write=False) as conn:
        query = select(func.count()).where(learnings.c.user_id.like("u%"))
        return int(conn.execute(query).scalar_one())


# -- the measurements --------------------------------------------------------------------------


def bench_machine(db: SqlDb, embedder: Any = None) -> LearningMachine:
    """The machine every scale benchmark searches and writes through: user memories
    (recall limit 10) and the shared namespace, no model calls, no waiting for jobs."""
    return LearningMachine(
        db=db,
        model=TestModel(),
        user_memory=UserMemoryConfig(limit=10),
        learned_knowledge=True,
        consistency_timeout=0,
        embedder=embedder,
    )


def load(
    lm: LearningMachine,
    corpus: Corpus,
    start: int,
    stop: int,
    dims: int,
    *,
    shared_only: bool = False,
) -> float:
    """Items ``start``..``stop`` (with ``shared_only``, those of the shared namespace alone),
    built by the stores as ``add`` would build them, written in 2,000-item transactions of
    multi-row inserts (rows and their history events: what ``db.apply`` writes, without its
    one statement per row). Returns items per second."""
    memories, shared = lm.user_memory, lm.learned_knowledge
    db: Any = lm.db
    rng = np.random.default_rng(start)
    if dims and hasattr(db, "_index_dimensions") and db.vectors == "pgvector":
        db._index_dimensions({dims})  # what the first apply with a vector would do
    if getattr(db, "vectors", None) == "pgvector":  # cast from text, as PostgresDb.apply does
        from kern.db.postgres import _Vector

        vector: Any = cast(bindparam("vector", type_=_Vector()), _Vector())
    else:
        vector = bindparam("vector", type_=LargeBinary())
    statement = insert(learnings).values(embedding=vector)
    began = time.perf_counter()
    chosen = [item for item in range(start, stop) if is_shared(item) or not shared_only]
    for first in range(0, len(chosen), BATCH):
        rows, events = [], []
        for item in chosen[first : first + BATCH]:
            store = shared if is_shared(item) else memories
            ctx = RunContext(run_id="", session_id="", user_id=user_of(item))
            when = NOW - timedelta(days=float(rng.uniform(0, 365)))
            record = store._record(ctx, store.coerce(corpus.text(item)), created_at=when)
            blob = rng.standard_normal(dims).astype("float32").tobytes() if dims else None
            row = {c.name: getattr(record, c.name) for c in LEARNING_COLUMNS}
            rows.append({**row, "updated_at": when, "vector": blob})
            events.append(
                {
                    "learning_id": record.id,
                    "store": record.store,
                    "scope": record.scope,
                    "user_id": record.user_id,
                    "action": "create",
                    "before": None,
                    "after": {"content": record.content, "text": record.text, "version": 1},
                    "run_id": None,
                    "actor": "benchmark",
                    "created_at": when,
                }
            )
        with db.transaction(action="load benchmark items") as conn:
            conn.execute(statement, rows)
            conn.execute(insert(learning_history), events)
    return len(chosen) / (time.perf_counter() - began)


def percentiles(timings: list[float]) -> dict[str, float]:
    timings = sorted(timings)
    return {
        "p50_ms": statistics.median(timings),
        "p95_ms": timings[round(0.95 * (len(timings) - 1))],
    }


def time_queries(run: Callable[[int], Any], queries: int, corpus: Corpus) -> dict[str, float]:
    hits = 0
    timings: list[float] = []
    for q in range(queries + 20):
        started = time.perf_counter()
        found = run(q)
        elapsed = (time.perf_counter() - started) * 1000
        if q >= 20:  # warm-up
            timings.append(elapsed)
            hits += bool(found)
    return {**percentiles(timings), "queries_with_hits": hits / queries}


def recall(lm: LearningMachine, corpus: Corpus, size: int, queries: int) -> dict[str, Any]:
    rng = np.random.default_rng(size)
    users = size // ITEMS_PER_USER

    def user_item() -> int:
        return int(rng.integers(users)) * ITEMS_PER_USER + int(rng.integers(ITEMS_PER_USER - 10))

    def shared_item() -> int:
        item = int(rng.integers(users)) * ITEMS_PER_USER + ITEMS_PER_USER - 1
        return item - int(rng.integers(SHARED_PER_USER))

    def user_search(_: int) -> Any:
        item = user_item()
        return lm.user_memory.search(corpus.query(item), user_id=user_of(item), limit=10)

    def shared_search(_: int) -> Any:
        item = shared_item()
        return lm.learned_knowledge.search(corpus.query(item), user_id=user_of(item), limit=10)

    return {
        "user_recall": time_queries(user_search, queries, corpus),
        "shared_recall": time_queries(shared_search, queries, corpus),
    }


def vector_search(
    lm: LearningMachine, size: int, queries: int, dims: int, corpus: Corpus
) -> dict[str, Any]:
    rng = np.random.default_rng(size + 1)
    users = size // ITEMS_PER_USER
    db: Any = lm.db

    def search(scope: Callable[[int], LearningFilter]) -> Callable[[int], Any]:
        def run(_: int) -> Any:
            vector = rng.standard_normal(dims).astype("float32").tobytes()
            return db.search_vectors(vector, scope(int(rng.integers(users))), limit=50)

        return run

    def user_scope(user: int) -> LearningFilter:
        return lm.user_memory._where(lm.user_memory._context(f"u{user}"))

    def shared_scope(user: int) -> LearningFilter:
        return lm.learned_knowledge._where(lm.learned_knowledge._context(f"u{user}"))

    return {
        "user_vectors": time_queries(search(user_scope), queries, corpus),
        "shared_vectors": time_queries(search(shared_scope), queries, corpus),
    }


def writes(lm: LearningMachine, size: int) -> dict[str, float]:
    """Items per second through ``user_memory.add`` from 1 thread, then from 8."""
    count = 300
    started = time.perf_counter()
    for i in range(count):
        lm.user_memory.add(f"Bench write {size} {i} about kayaks", user_id="writer")
    single = count / (time.perf_counter() - started)

    per_thread, errors = 60, []

    def writer(n: int) -> None:
        try:
            for i in range(per_thread):
                lm.user_memory.add(f"Bench write {size} {n} {i} about canoes", user_id=f"w{n}")
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return {
        "writes_per_s_1_thread": single,
        "writes_per_s_8_threads": 8 * per_thread / (time.perf_counter() - started),
    }


def run_engine(
    name: str,
    sizes: list[int],
    queries: int,
    dims: int,
    workdir: Path,
    postgres_url: str | None,
    reuse: bool = False,
    search_cache_mb: float = SEARCH_CACHE_MB,
) -> Iterator[dict[str, Any]]:
    """One result row per size, as soon as it is measured."""
    corpus = Corpus.create()
    corpus.grow(max(sizes))
    database = "kern_scale"
    with open_engine(
        name, workdir, postgres_url, database=database, reuse=reuse, search_cache_mb=search_cache_mb
    ) as db:
        version = server_version(db)
        lm = bench_machine(db)
        loaded = stored_items(db) if reuse else 0
        for size in sizes:
            if size < loaded:
                continue  # reuse: that size was measured by the run that loaded it
            rate = load(lm, corpus, loaded, size, dims) if size > loaded else float("nan")
            loaded = size
            analyze(db)
            row: dict[str, Any] = {
                "engine": name,
                "version": version,
                "items": size,
                "search_cache_mb": search_cache_mb,
                "load_items_per_s": rate,
                **recall(lm, corpus, size, queries),
            }
            if dims:
                row.update(vector_search(lm, size, queries, dims, corpus))
            # The machine is shared: the load while this size was measured goes with it.
            row["load_average_1min"] = os.getloadavg()[0]
            row.update(writes(lm, size))
            print(summary(row), flush=True)
            yield row


def summary(row: dict[str, Any]) -> str:
    parts = [
        f"{row['engine']:>8} {row['items']:>9,} items (load {row['load_average_1min']:.1f})",
        f"load {row['load_items_per_s']:>6,.0f}/s",
        "user recall p50/p95 {p50_ms:6.1f} /{p95_ms:6.1f} ms".format(**row["user_recall"]),
        "shared recall p50/p95 {p50_ms:6.1f} /{p95_ms:6.1f} ms".format(**row["shared_recall"]),
    ]
    if "user_vectors" in row:
        parts.append(
            "vectors user/shared p95 {:.1f} / {:.1f} ms".format(
                row["user_vectors"]["p95_ms"], row["shared_vectors"]["p95_ms"]
            )
        )
    parts.append(
        f"writes {row['writes_per_s_1_thread']:,.0f}/s (1 thread) "
        f"{row['writes_per_s_8_threads']:,.0f}/s (8 threads)"
    )
    return " | ".join(parts)


def plot(results: list[dict[str, Any]], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install matplotlib): no plot")
        return
    engines = sorted({r["engine"] for r in results})
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    styles = {"sqlite": "tab:blue", "postgres": "tab:orange"}
    for engine in engines:
        rows = [r for r in results if r["engine"] == engine]
        items = [r["items"] for r in rows]
        color = styles.get(engine)
        loads = [r["load_average_1min"] for r in rows if "load_average_1min" in r]
        if loads:  # a shared machine: the load the points were measured under
            engine = f"{engine} (load {min(loads):.0f}-{max(loads):.0f})"
        for key, marker, label in (
            ("user_recall", "o", "one user's memories"),
            ("shared_recall", "s", "shared namespace"),
        ):
            left.plot(
                items,
                [r[key]["p95_ms"] for r in rows],
                marker=marker,
                color=color,
                label=f"{engine}: {label} (p95)",
            )
            left.plot(
                items,
                [r[key]["p50_ms"] for r in rows],
                marker=marker,
                color=color,
                linestyle=":",
                alpha=0.6,
                label=f"{engine}: {label} (p50)",
            )
        right.plot(
            items,
            [r["writes_per_s_1_thread"] for r in rows],
            marker="o",
            color=color,
            label=f"{engine}: 1 thread",
        )
        right.plot(
            items,
            [r["writes_per_s_8_threads"] for r in rows],
            marker="^",
            color=color,
            linestyle="--",
            label=f"{engine}: 8 threads",
        )
    left.axhline(50, color="grey", linewidth=0.8, linestyle="--")
    left.set(
        xscale="log",
        yscale="log",
        xlabel="stored items",
        ylabel="recall latency (ms)",
        title="Recall (store search, full text, limit 10)",
    )
    right.set(
        xscale="log",
        xlabel="stored items",
        ylabel="items written per second",
        title="Writes (user_memory.add, one transaction each)",
    )
    right.set_ylim(bottom=0)
    for axis in (left, right):
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"plot: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--engines", nargs="+", default=["sqlite", "postgres"])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--vectors", type=int, default=0, metavar="DIM")
    parser.add_argument("--postgres-url", help="an admin URL (default: start pgserver)")
    parser.add_argument("--workdir", type=Path, help="where databases live (default: a temp dir)")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/scale.json"))
    parser.add_argument("--plot", type=Path, default=Path("benchmarks/scale.png"))
    parser.add_argument("--plot-only", action="store_true", help="redraw --plot from --json")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="keep the database an earlier run left in --workdir and measure it (new code, "
        "same data); only sizes not below what it holds are measured",
    )
    parser.add_argument(
        "--search-cache-mb",
        type=float,
        default=SEARCH_CACHE_MB,
        help="the databases' search_cache_mb (default: kern's); a 100,000-row scope's snapshot "
        "needs more than the default (docs/scaling.md)",
    )
    args = parser.parse_args()
    if args.plot_only:
        plot(json.loads(args.json.read_text()), args.plot)
        return
    sizes = sorted(args.sizes)
    if any(size % ITEMS_PER_USER for size in sizes):
        parser.error(f"sizes must be multiples of {ITEMS_PER_USER}")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="kern-scale-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, python "
        f"{platform.python_version()}; workdir {workdir}"
    )
    results: list[dict[str, Any]] = []
    if args.json.exists():  # keep other engines' rows from an earlier run
        results = [r for r in json.loads(args.json.read_text()) if r["engine"] not in args.engines]
    try:
        for engine in args.engines:
            for row in run_engine(
                engine,
                sizes,
                args.queries,
                args.vectors,
                workdir,
                args.postgres_url,
                args.reuse,
                args.search_cache_mb,
            ):
                results.append(row)
                args.json.write_text(json.dumps(results, indent=2))
    finally:
        if args.workdir is None:  # a temporary workdir; a given one is kept for --reuse
            shutil.rmtree(workdir, ignore_errors=True)
    plot(results, args.plot)


if __name__ == "__main__":
    main()
