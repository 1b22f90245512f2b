"""PostgreSQL full-text search, this checkout against an earlier revision, on a database
scale.py left.

Runs ``scale.py``'s queries (``lm.learned_knowledge.search`` over the shared namespace and
``lm.user_memory.search`` over one user's memories, limit 10) on the database a
``scale.py --workdir DIR`` run left in ``DIR``, alternating query by query between the
full-text query of ``--baseline`` (``PostgresDb._text_search_query`` as that revision has it)
and this checkout's, which goes first alternating too, so both see the same load and caches.
Reports p50 / p95 of each, the load average, and how many of the baseline's top 10 (and, for
the shared namespace, of its full-text top ``RankingConfig.candidates`` with their scores)
each query kept.

The baseline always ranks in the database: this checkout's in-memory ranking of a scope's
full text (``PostgresDb._text_scores_in_memory``) is turned off while it runs. Both share the
database object, so both get the scope snapshots of the neighbour step. ``--after-write N``
then adds one learning to the shared namespace N times and times the three searches that
follow each write with this checkout: the first is ranked by the database, the second
rebuilds the snapshot (rows and lexemes), the third is served from memory.

    .venv/bin/python benchmarks/scale_compare.py --workdir DIR [--baseline main] [--queries 200]
        [--search-cache-mb 64] [--after-write 0]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import types
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engines import open_engine
from scale import (
    ITEMS_PER_USER,
    SHARED_PER_USER,
    Corpus,
    bench_machine,
    percentiles,
    stored_items,
    user_of,
)

from kern.db._candidates import SEARCH_CACHE_MB
from kern.db.postgres import PostgresDb
from kern.learn import LearningMachine
from kern.learn.timeline import time_scope
from kern.search.ranking import RankingConfig

ROOT = Path(__file__).resolve().parents[1]


def baseline_query(revision: str) -> Callable[..., Any]:
    """``PostgresDb._text_search_query`` of ``revision``: its kern/db/postgres.py, run as a
    module of its own next to this checkout's kern."""
    source = subprocess.run(
        ["git", "show", f"{revision}:kern/db/postgres.py"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    module = types.ModuleType("baseline_postgres")
    exec(compile(source, f"{revision}:kern/db/postgres.py", "exec"), module.__dict__)
    method: Callable[..., Any] = module.PostgresDb._text_search_query

    def query(*args: Any) -> Any:
        """The revision's statement as this checkout's callers take it, with its
        parameters (older revisions bound them in the statement itself)."""
        found = method(*args)
        return found if found is None or isinstance(found, tuple) else (found, {})

    return query


def close(a: float, b: float) -> bool:
    """Equal but for the last bits: floating-point sums taken in another order."""
    return abs(a - b) <= 1e-12 * max(abs(a), abs(b))


def same_ranking(old: list[tuple[str, float]], new: list[tuple[str, float]]) -> bool:
    """The same ids in the same order with the same scores."""
    return len(old) == len(new) and all(
        a == b and close(x, y) for (a, x), (b, y) in zip(old, new, strict=True)
    )


def same_up_to_ties(old: list[tuple[str, float]], new: list[tuple[str, float]]) -> bool:
    """The same scores rank by rank, every id both return scored alike, and an id only one
    returns scored as the last rank (a tie at the cut): the lists differ at most in the
    order of rows whose scores are equal but for the last bits."""
    if len(old) != len(new) or not all(
        close(x, y) for (_, x), (_, y) in zip(old, new, strict=True)
    ):
        return False
    first, second = dict(old), dict(new)
    last = old[-1][1] if old else 0.0
    return all(
        close(first[key], second[key]) if key in second else close(first[key], last)
        for key in first
    ) and all(close(second[key], last) for key in second.keys() - first.keys())


Version = tuple[Callable[..., Any], Callable[..., Any]]


def _in_the_database(*args: Any) -> None:
    """The baseline's in-memory ranking: none, the database ranks."""


def use(version: Version) -> None:
    """Make ``PostgresDb`` rank full text as ``version`` does."""
    PostgresDb._text_search_query, PostgresDb._text_scores_in_memory = version  # type: ignore[method-assign]


def searches_after_a_write(
    lm: LearningMachine, corpus: Corpus, rng: np.random.Generator, users: int, write: int
) -> list[float]:
    """Milliseconds of the three shared-namespace searches after one learning is added to it."""
    lm.learned_knowledge.add(f"Scale compare write {write} about kayaks", user_id="writer")
    took = []
    for _ in range(3):
        item = int(rng.integers(users)) * ITEMS_PER_USER + ITEMS_PER_USER - 1
        started = time.perf_counter()
        lm.learned_knowledge.search(corpus.query(item), user_id=user_of(item), limit=10)
        took.append((time.perf_counter() - started) * 1000)
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--postgres-url")
    parser.add_argument("--baseline", default="main")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--search-cache-mb", type=float, default=SEARCH_CACHE_MB)
    parser.add_argument("--after-write", type=int, default=0, metavar="N")
    args = parser.parse_args()
    versions = {
        "baseline": (baseline_query(args.baseline), _in_the_database),
        "new": (PostgresDb._text_search_query, PostgresDb._text_scores_in_memory),
    }
    candidates = RankingConfig().candidates
    with open_engine(
        "postgres",
        args.workdir,
        args.postgres_url,
        database="kern_scale",
        reuse=True,
        search_cache_mb=args.search_cache_mb,
    ) as db:
        size = stored_items(db)
        corpus = Corpus.create()
        corpus.grow(size)
        lm = bench_machine(db)
        rng = np.random.default_rng(size)
        users = size // ITEMS_PER_USER
        timings: dict[str, list[float]] = {
            f"{kind} {name}": [] for kind in ("shared", "user") for name in versions
        }
        top10: dict[str, list[float]] = {"shared": [], "user": []}
        candidate_ids: list[float] = []
        same_scores: list[bool] = []
        bitwise: list[bool] = []
        tied_only: list[bool] = []
        load = [os.getloadavg()[0]]
        for q in range(args.queries + 20):
            item = int(rng.integers(users)) * ITEMS_PER_USER + ITEMS_PER_USER - 1
            shared = (corpus.query(item - int(rng.integers(SHARED_PER_USER))), user_of(item))
            item = int(rng.integers(users)) * ITEMS_PER_USER
            item += int(rng.integers(ITEMS_PER_USER - SHARED_PER_USER))
            mine = (corpus.query(item), user_of(item))
            order = list(versions) if q % 2 else list(reversed(versions))
            found: dict[str, list[str]] = {}
            for kind, store, (query, user) in (
                ("shared", lm.learned_knowledge, shared),
                ("user", lm.user_memory, mine),
            ):
                for name in order:
                    use(versions[name])
                    started = time.perf_counter()
                    hits = store.search(query, user_id=user, limit=10)
                    if q >= 20:
                        timings[f"{kind} {name}"].append((time.perf_counter() - started) * 1000)
                    found[f"{kind} {name}"] = [hit.id for hit in hits]
            if q < 20:
                continue
            for kind in ("shared", "user"):
                baseline, kept = found[f"{kind} baseline"], set(found[f"{kind} new"])
                top10[kind].append(len(kept.intersection(baseline)) / max(1, len(baseline)))
            # The full-text candidates themselves, untimed: ids, order and scores.
            store = lm.learned_knowledge
            ctx = store._context(shared[1])
            where = time_scope(datetime.now(UTC)).where(store._where(ctx, kinds=store.kinds))
            scored = {}
            for name in versions:
                use(versions[name])
                scored[name] = db.search_text_scores(shared[0], where, limit=candidates)
            old, new = scored["baseline"], scored["new"]
            candidate_ids.append(len({k for k, _ in old} & {k for k, _ in new}) / max(1, len(old)))
            same_scores.append(same_ranking(old, new))
            bitwise.append(old == new)
            tied_only.append(same_up_to_ties(old, new))
            if q % 20 == 0:
                load.append(os.getloadavg()[0])
        use(versions["new"])
        after_write = [
            searches_after_a_write(lm, corpus, rng, users, write)
            for write in range(args.after_write)
        ]
        snapshot = db._scope_cache._snapshots.get(("learned_knowledge", "ns/global"))  # type: ignore[union-attr]
    load.append(os.getloadavg()[0])
    result: dict[str, Any] = {
        "items": size,
        "baseline": args.baseline,
        "search_cache_mb": args.search_cache_mb,
        "shared_snapshot_mb": None if snapshot is None else snapshot.nbytes / 2**20,
        "shared_text_index_mb": (
            None if snapshot is None or snapshot.text is None else snapshot.text.nbytes / 2**20
        ),
        **{
            f"after_write_search_{n + 1}": percentiles([run[n] for run in after_write])
            for n in range(3)
            if after_write
        },
        **{name: percentiles(values) for name, values in timings.items()},
        "shared_top10_kept": float(np.mean(top10["shared"])),
        "user_top10_kept": float(np.mean(top10["user"])),
        "shared_candidates_kept": float(np.mean(candidate_ids)),
        "shared_candidates_identical": float(np.mean(same_scores)),
        "shared_candidates_bitwise_identical": float(np.mean(bitwise)),
        "shared_candidates_identical_up_to_ties": float(np.mean(tied_only)),
        "load_average_1min": {"min": min(load), "max": max(load), "mean": float(np.mean(load))},
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
