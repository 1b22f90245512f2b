"""Vector search at 100,000 items in one scope: SQLite (numpy) vs PostgreSQL (pgvector HNSW).

    .venv/bin/python benchmarks/vector_scale.py [--engines sqlite postgres] [--items 100000]
        [--queries 100] [--json benchmarks/vector-scale.json]

One database per engine holds ``--items`` items in one user's private scope and as many in
the shared ``global`` namespace (built as ``benchmarks/scale.py`` builds its items: Zipf-word
texts, written in 2,000-item multi-row transactions), each with a 384-dimension vector drawn
at random (all-MiniLM-L6-v2's size; the cost of a search does not depend on what the vectors
mean). Measured, p50 / p95 over ``--queries`` random query vectors after 20 warm-up ones:

- ``db.search_vectors(limit=500)`` (hybrid search's vector candidates) in each scope;
- on PostgreSQL, recall@10 of that search (HNSW, iterative scan) against the exact top 10
  (the rows' vectors compared in numpy), so the speed is not bought with missed neighbours;
- ``lm.user_memory.search`` with ``embedder="local"`` (the query embedded by MiniLM, full-text
  and vector candidates, ranking, rows) in the 100k-item user scope.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import scale
from engines import open_engine

from kern.db.base import LearningFilter
from kern.db.sql import SqlDb
from kern.learn import LearningMachine, UserMemoryConfig
from kern.models.testing import TestModel

DIMS = 384


def exact_top(db: SqlDb, vector: bytes, where: LearningFilter, k: int) -> list[str]:
    """The exact nearest ``k`` by cosine: every vector of the scope compared in numpy."""
    return [key for key, _ in SqlDb.search_vectors(db, vector, where, limit=k)]


def measure(
    engine: str, items: int, queries: int, workdir: Path, url: str | None
) -> dict[str, Any]:
    corpus = scale.Corpus.create()
    corpus.grow(2 * items)
    with open_engine(engine, workdir, url, database="kern_vectors") as db:
        lm = LearningMachine(
            db=db,
            model=TestModel(),
            user_memory=UserMemoryConfig(limit=10),
            learned_knowledge=True,
            consistency_timeout=0,
        )
        # Items 0..items: one user ("u0"), all private; items..2*items: all shared.
        scale.ITEMS_PER_USER, scale.SHARED_PER_USER = items, 0
        scale.load(lm, corpus, 0, items, DIMS)
        scale.SHARED_PER_USER = items
        scale.load(lm, corpus, items, 2 * items, DIMS)
        scale.analyze(db)
        scopes = {
            "user scope (100k items)": lm.user_memory._where(lm.user_memory._context("u0")),
            "shared namespace (100k items)": lm.learned_knowledge._where(
                lm.learned_knowledge._context("u1")
            ),
        }
        rng = np.random.default_rng(11)
        result: dict[str, Any] = {"engine": engine, "items_per_scope": items, "stored": 2 * items}
        for name, where in scopes.items():
            vectors = [
                rng.standard_normal(DIMS).astype("float32").tobytes() for _ in range(20 + queries)
            ]
            timing = scale.time_queries(
                lambda q, where=where, vectors=vectors: db.search_vectors(
                    vectors[q], where, limit=500
                ),
                queries,
                corpus,
            )
            if engine == "postgres":
                found = 0
                for vector in vectors[20 : 20 + min(queries, 30)]:
                    approximate = [key for key, _ in db.search_vectors(vector, where, limit=500)][
                        :10
                    ]
                    found += len(set(approximate) & set(exact_top(db, vector, where, 10)))
                timing["recall_at_10_vs_exact"] = found / (10 * min(queries, 30))
            result[name] = timing
        local = LearningMachine(
            db=db, user_memory=UserMemoryConfig(limit=10), embedder="local", consistency_timeout=0
        )
        result["user_memory.search, embedder='local', 100k-item scope"] = scale.time_queries(
            lambda q: local.user_memory.search(corpus.query(q % items), user_id="u0", limit=10),
            queries,
            corpus,
        )
        for machine in (lm, local):
            machine.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engines", nargs="+", default=["sqlite", "postgres"])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--postgres-url")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as folder:
        for engine in args.engines:
            load_before = os.getloadavg()[0]
            row = measure(engine, args.items, args.queries, Path(folder), args.postgres_url)
            row["load_average"] = [load_before, os.getloadavg()[0]]
            results.append(row)
            print(json.dumps(row, indent=1), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
