"""One user's recall on a database scale.py left, timed step by step (SQLite).

Runs ``scale.py``'s user queries (``lm.user_memory.search``, limit 10, two words of one of the
user's items plus one vocabulary word; the same users and queries as ``scale.py`` at that
size) and times, inside each search, the database calls of the pipeline in
``kern.search.hybrid``: the full-text step (``search_text_scores``, 500 candidates), the
neighbour step (``load_neighbours``, of which the scope snapshot's token read), the ranking
(``rank``) and the read of the top rows (``list_learnings``). Prints p50 / p95 of each with
the load average before and after; ``--json`` keeps every query's times, top 10 and full-text
candidates, to compare two revisions' answers. ``--write-between`` writes one memory of
another user before every search (untimed): the index changes between any two searches.

    .venv/bin/python benchmarks/scale_steps.py --db DIR/kern_scale.db [--size 1000000]
        [--queries 200] [--write-between] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import scale

import kern.search.hybrid as hybrid
from kern.db.sqlite import SqliteDb

STEPS = ("fulltext", "neighbours", "token", "rank", "rows")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--size", type=int, default=1_000_000, help="items scale.py stored")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--write-between", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    corpus = scale.Corpus.create()
    corpus.grow(args.size)
    db = SqliteDb(db_file=args.db)
    lm = scale.bench_machine(db)
    times: dict[str, float] = {}
    results: dict[str, Any] = {}

    def timed(owner: Any, name: str, step: str) -> None:
        method: Callable[..., Any] = getattr(owner, name)

        def run(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            result = method(*args, **kwargs)
            times[step] = times.get(step, 0.0) + (time.perf_counter() - started) * 1000
            results[step] = result
            return result

        setattr(owner, name, run)

    timed(db, "search_text_scores", "fulltext")
    timed(db, "load_neighbours", "neighbours")
    timed(db, "_scope_rows", "token")
    timed(db, "list_learnings", "rows")
    timed(hybrid, "rank", "rank")

    rng = np.random.default_rng(args.size)  # scale.recall's users and queries at this size
    users = args.size // scale.ITEMS_PER_USER
    rows: list[dict[str, Any]] = []
    load_before = os.getloadavg()[0]
    for q in range(args.queries + 20):
        item = int(rng.integers(users)) * scale.ITEMS_PER_USER
        item += int(rng.integers(scale.ITEMS_PER_USER - scale.SHARED_PER_USER))
        query, user = corpus.query(item), scale.user_of(item)
        if args.write_between:
            lm.user_memory.add(f"Steady write {q} about kayaks and canoes", user_id="writer")
        times.clear()
        started = time.perf_counter()
        hits = lm.user_memory.search(query, user_id=user, limit=10)
        total = (time.perf_counter() - started) * 1000
        if q >= 20:  # warm-up
            rows.append(
                {
                    "query": query,
                    "user": user,
                    "total": total,
                    **times,
                    "top": [hit.id for hit in hits],
                    "candidates": results["fulltext"],
                }
            )
    load_after = os.getloadavg()[0]
    db.close()

    print(f"{args.queries} queries, load {load_before:.2f} before, {load_after:.2f} after")
    for step in ("total", *STEPS):
        values = sorted(row.get(step, 0.0) for row in rows)
        p50, p95 = statistics.median(values), values[round(0.95 * (len(values) - 1))]
        print(f"{step:>10}: p50 {p50:6.1f} ms  p95 {p95:6.1f} ms")
    if args.json:
        args.json.write_text(json.dumps({"load": [load_before, load_after], "rows": rows}))


if __name__ == "__main__":
    main()
