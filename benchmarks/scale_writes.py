"""Searches over a large shared namespace while it is written to, on PostgreSQL.

Search keeps each scope's rows in memory and brings them up to date by the rows changed
since (docs/search.md, "What search keeps in memory"); a namespace many users' agents write
to changes every second. This measures what a searching process sees then, on a database
holding ``scale.py``'s shared namespace at ``--size`` stored items (its 10 shared learnings
per 100 items: 100,000 at 1M) and nothing else, since the namespace is all such a search
reads:

- rebuild: the namespace's snapshot rebuilt ``--rebuilds`` times (its rows and lexemes read,
  then ``ScopeRows.build``), each part timed;
- read-only: ``--queries`` searches (``lm.learned_knowledge.search``, limit 10, ``scale.py``'s
  shared queries, after 20 warm-up ones), p50 / p95 / p99;
- steady writes: for ``--seconds`` seconds another process adds one learning to the namespace
  every ``--write-every`` seconds (its own ``PostgresDb``, as another user's agent would)
  while this process searches back to back; p50 / p95 / p99 / max of those searches, how
  many were ranked by the database (the others from the snapshot), and how many brought the
  snapshot up to date with the rows changed.

The load average goes with every line. The database (``kern_shared`` on the pgserver that
``--workdir`` holds, or on ``--postgres-url``) is built once and reused with ``--reuse``.

    .venv/bin/python benchmarks/scale_writes.py --workdir DIR [--reuse] [--size 1000000]
        [--queries 200] [--seconds 120] [--write-every 1.0] [--search-cache-mb 128]
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import scale
from engines import open_engine

import kern
from kern.db._candidates import _TOKEN
from kern.db._scopes import ScopeRows
from kern.db.postgres import PostgresDb


def percentiles(timings: list[float]) -> str:
    ordered = sorted(timings)

    def at(q: float) -> float:
        return ordered[round(q * (len(ordered) - 1))]

    return (
        f"p50 {statistics.median(ordered):7.1f}  p95 {at(0.95):7.1f}  p99 {at(0.99):7.1f}  "
        f"max {ordered[-1]:7.1f} ms  ({len(ordered)} searches)"
    )


def count_calls(obj: Any, name: str) -> list[int]:
    """Wrap ``obj.name`` so that each call adds one to the returned counter (index 0)."""
    calls = [0]
    method = getattr(obj, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return method(*args, **kwargs)

    setattr(obj, name, counted)
    return calls


def load() -> str:
    return f"load {os.getloadavg()[0]:.2f}"


def rebuild(db: PostgresDb, lm: Any, times: int) -> None:
    """Rebuild the namespace's snapshot ``times`` times as a search does (its token, then its
    rows and lexemes read, then ``ScopeRows.build``), timing the read and the build."""
    where = lm.learned_knowledge._where(lm.learned_knowledge._context("u0"))
    values = {"store": where.store, "scope": where.scopes[0]}
    cache = db._scope_cache
    assert cache is not None
    for _ in range(times):
        started = time.perf_counter()
        with db.transaction(write=False) as conn:
            token = conn.execute(_TOKEN, values).scalar()
            rows = conn.execute(db._snapshot_query, {**values, "rows": cache.max_rows + 1}).all()
        read = time.perf_counter()
        snapshot = ScopeRows.build(token, where.scopes[0], rows, text=True)
        built = time.perf_counter()
        print(
            f"rebuild of {len(rows):,} rows: read {(read - started) * 1000:7.1f} ms  "
            f"build {(built - read) * 1000:7.1f} ms  ({snapshot.nbytes / 2**20:.1f} MiB, "
            f"{load()})",
            flush=True,
        )
        del rows, snapshot


def writer(url: str, every: float, seconds: float) -> None:
    """Add one learning to the namespace every ``every`` seconds for ``seconds`` seconds."""
    db = PostgresDb(url, search_cache_mb=0)
    lm = scale.bench_machine(db)
    words = scale.Corpus.create(seed=11).vocabulary
    rng = np.random.default_rng(3)
    start = time.monotonic()
    n = 0
    while time.monotonic() - start < seconds:
        text = " ".join(rng.choice(words, size=10))
        lm.learned_knowledge.add(f"Steady write {n}: {text}.", user_id=f"writer{n % 10}")
        n += 1
        time.sleep(max(0.0, start + n * every - time.monotonic()))
    lm.close()
    db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--postgres-url", help="an admin URL (default: start pgserver)")
    parser.add_argument("--reuse", action="store_true")
    parser.add_argument("--size", type=int, default=1_000_000, help="scale.py's stored items")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--rebuilds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--write-every", type=float, default=1.0)
    parser.add_argument("--search-cache-mb", type=float, default=128.0)
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)

    corpus = scale.Corpus.create()
    corpus.grow(args.size)
    with open_engine(
        "postgres",
        args.workdir,
        args.postgres_url,
        database="kern_shared",
        reuse=args.reuse,
        search_cache_mb=args.search_cache_mb,
    ) as db:
        assert isinstance(db, PostgresDb)
        lm = scale.bench_machine(db)
        if not args.reuse:
            rate = scale.load(lm, corpus, 0, args.size, 0, shared_only=True)
            print(f"loaded the shared namespace of {args.size:,} items: {rate:,.0f} items/s")
            scale.analyze(db)
        print(f"{scale.server_version(db)}; kern from {Path(kern.__file__).parent}; {load()}")
        rebuild(db, lm, args.rebuilds)

        rng = np.random.default_rng(args.size)
        users = args.size // scale.ITEMS_PER_USER
        sql = count_calls(db, "_text_search_query")
        brought = count_calls(db, "_bring_up_to_date")

        collections: list[tuple[float, float]] = []
        started_gc = [0.0]

        def on_gc(phase: str, info: dict[str, int]) -> None:
            if info["generation"] == 2:
                if phase == "start":
                    started_gc[0] = time.perf_counter()
                else:
                    collections.append((started_gc[0], time.perf_counter()))

        gc.callbacks.append(on_gc)
        kinds: list[tuple[bool, bool]] = []

        def search() -> float:
            before_gc, before_bring = len(collections), brought[0]
            item = int(rng.integers(users)) * scale.ITEMS_PER_USER + scale.ITEMS_PER_USER - 1
            item -= int(rng.integers(scale.SHARED_PER_USER))
            started = time.perf_counter()
            lm.learned_knowledge.search(corpus.query(item), user_id=scale.user_of(item), limit=10)
            kinds.append((len(collections) > before_gc, brought[0] > before_bring))
            return (time.perf_counter() - started) * 1000

        for _ in range(20):
            search()
        before = load()
        sql[0] = 0
        quiet = [search() for _ in range(args.queries)]
        print(f"read-only:     {percentiles(quiet)}  by SQL {sql[0]}  ({before}, {load()} after)")

        url = db.engine.url.render_as_string(hide_password=False)
        process = multiprocessing.get_context("spawn").Process(
            target=writer, args=(url, args.write_every, args.seconds)
        )
        process.start()
        time.sleep(2.0)  # the writer's start-up
        before, sql[0], brought[0] = load(), 0, 0
        busy: list[float] = []
        del kinds[:]
        gcs = len(collections)
        while process.is_alive():
            busy.append(search())
        process.join()
        with_gc = [t for t, k in zip(busy, kinds, strict=True) if k[0]]
        with_bring = [t for t, k in zip(busy, kinds, strict=True) if k[1]]
        plain = [t for t, k in zip(busy, kinds, strict=True) if not any(k)]
        gc_ms = [(b - a) * 1000 for a, b in collections[gcs:]]
        print(
            f"  full collections during the writes: {len(gc_ms)}, ms each: "
            f"{' '.join(f'{m:.0f}' for m in gc_ms)}; tracked objects {len(gc.get_objects()):,}"
        )
        print(
            f"  searches with a full collection: {len(with_gc)}, with a bring-up: "
            f"{len(with_bring)} (p50 {statistics.median(with_bring or [0]):.1f} ms); "
            f"the rest: {percentiles(plain)}"
        )
        print(
            f"steady writes: {percentiles(busy)}  by SQL {sql[0]}  brought up to date "
            f"{brought[0]}  ({before}, {load()} after)"
        )
        lm.close()


if __name__ == "__main__":
    main()
