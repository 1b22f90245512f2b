"""Recall latency on SQLite as one user's memories grow.

Measures what a run pays before its model call: ``LearningMachine.recall`` for a user with N
memories (hybrid search, full-text only here: no embedder), as p50/p95 over many queries.

    .venv/bin/python benchmarks/recall_latency.py [--sizes 1000 10000] [--queries 300] [--json OUT]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from kern.context import RunContext
from kern.db.base import Create
from kern.db.sqlite import SqliteDb
from kern.learn import LearningMachine, UserMemoryConfig
from kern.models.testing import TestModel

SUBJECTS = ["The user", "Their sister", "Their manager", "Their dog", "Their team", "Their partner"]
VERBS = [
    "likes",
    "visited",
    "is planning",
    "mentioned",
    "dislikes",
    "is learning",
    "bought",
    "recommended",
    "worked on",
    "wants to try",
]
OBJECTS = [
    "hiking in the Alps",
    "a jazz concert",
    "sourdough baking",
    "the Lisbon office",
    "a vintage camera",
    "Rust programming",
    "marathon training",
    "a trip to Kyoto",
    "the quarterly roadmap",
    "vegan recipes",
    "chess openings",
    "a new espresso machine",
    "the Atlas migration",
    "watercolour painting",
    "sailing lessons",
    "a sci-fi novel",
]
WHEN = ["last week", "in March", "yesterday", "this summer", "two years ago", "every Sunday"]


def sentence(rng: random.Random, i: int) -> str:
    return (
        f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} "
        f"{rng.choice(WHEN)} (note {i})."
    )


def fill(lm: LearningMachine, db: SqliteDb, n: int, rng: random.Random) -> None:
    store = lm.user_memory
    ctx = RunContext(run_id="", session_id="", user_id="bench")
    batch = []
    for i in range(n):
        record = store._record(ctx, store.coerce(sentence(rng, i)))
        batch.append(Create(record))
        if len(batch) == 1000:
            db.apply(batch, actor="benchmark")
            batch = []
    if batch:
        db.apply(batch, actor="benchmark")


def measure(size: int, queries: int, seed: int = 7) -> dict[str, float]:
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as folder:
        db = SqliteDb(db_file=str(Path(folder) / "bench.db"))
        lm = LearningMachine(
            db=db, model=TestModel(), user_memory=UserMemoryConfig(limit=10), consistency_timeout=0
        )
        started = time.perf_counter()
        fill(lm, db, size, rng)
        load_seconds = time.perf_counter() - started
        timings = []

        async def run_all() -> None:
            for q in range(queries):
                ctx = RunContext(
                    run_id=f"q{q}",
                    session_id="s",
                    user_id="bench",
                    input=f"What did {rng.choice(SUBJECTS).lower()} say about "
                    f"{rng.choice(OBJECTS)}?",
                )
                t0 = time.perf_counter()
                await lm.recall(ctx)
                timings.append((time.perf_counter() - t0) * 1000)

        asyncio.run(run_all())
        db.close()
    timings.sort()
    return {
        "memories": size,
        "queries": queries,
        "p50_ms": statistics.median(timings),
        "p95_ms": timings[int(0.95 * (len(timings) - 1))],
        "max_ms": timings[-1],
        "load_items_per_s": size / load_seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = []
    machine = f"{platform.machine()} {platform.processor() or ''}".strip()
    print(f"machine: {machine}, python {sys.version.split()[0]}")
    print(f"{'memories':>9} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'load/s':>9}")
    for size in args.sizes:
        r = measure(size, args.queries)
        results.append(r)
        print(
            f"{r['memories']:>9} {r['p50_ms']:>8.2f} {r['p95_ms']:>8.2f} {r['max_ms']:>8.2f} "
            f"{r['load_items_per_s']:>9.0f}"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
