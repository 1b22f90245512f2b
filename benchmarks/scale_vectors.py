"""Vector search over 100,000 items in one scope: SQLite (numpy) against PostgreSQL (pgvector).

What ``embedder="local"`` search asks of the database (``db.search_vectors``, the 50 nearest
384-dimension vectors by cosine, the scope filter inside the query), at a size where one
scope is large: 100,000 items in one user's scope and 100,000 in the shared ``global``
namespace, in one table of 200,000. Vectors are random (``--dims`` floats), as in scale.py;
real embeddings cluster, which helps HNSW. On PostgreSQL the HNSW index is built after the
bulk load (as a bulk import would); recall@50 is the share of the exact 50 nearest (numpy
over the same vectors) that the index returns.

    .venv/bin/python benchmarks/scale_vectors.py [--items 100000] [--dims 384] [--queries 100]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engines import open_engine
from sqlalchemy import LargeBinary, bindparam, cast, insert

from kern.db.base import LearningFilter
from kern.db.schema import learnings
from kern.db.sql import SqlDb

SCOPES = {"user": ("user_memory", "user/u0"), "shared": ("learned_knowledge", "ns/global")}
NOW = datetime.now(UTC)


def load(db: Any, vectors: np.ndarray) -> float:
    """Half the vectors in one user's scope, half in the shared namespace; items per second."""
    if getattr(db, "vectors", None) == "pgvector":
        from kern.db.postgres import _Vector

        value: Any = cast(bindparam("embedding", type_=_Vector()), _Vector())
    else:
        value = bindparam("embedding", type_=LargeBinary())
    statement = insert(learnings).values(embedding=value)
    began = time.perf_counter()
    half = len(vectors) // 2
    for first in range(0, len(vectors), 2000):
        rows = []
        for i in range(first, min(first + 2000, len(vectors))):
            store, scope = SCOPES["user" if i < half else "shared"]
            when = NOW - timedelta(minutes=i)
            rows.append(
                {
                    "id": f"v{i}",
                    "store": store,
                    "kind": "memory",
                    "scope": scope,
                    "user_id": "u0",
                    "content": {"text": f"item {i}"},
                    "text": f"item {i}",
                    "content_hash": f"h{i}",
                    "status": "active",
                    "version": 1,
                    "created_at": when,
                    "updated_at": when,
                    "metadata": {},
                    "embedding": vectors[i].tobytes(),
                }
            )
        with db.transaction(action="load vectors") as conn:
            conn.execute(statement, rows)
    if getattr(db, "vectors", None) == "pgvector":
        db._index_dimensions({vectors.shape[1]})  # after the load, as a bulk import would
    with db.transaction() as conn:
        conn.exec_driver_sql("ANALYZE")
    return len(vectors) / (time.perf_counter() - began)


def measure(db: SqlDb, vectors: np.ndarray, queries: int) -> dict[str, Any]:
    rng = np.random.default_rng(1)
    half = len(vectors) // 2
    result: dict[str, Any] = {}
    for name, (store, scope) in SCOPES.items():
        where = LearningFilter(store=store, scopes=[scope])
        own = vectors[:half] if name == "user" else vectors[half:]
        offset = 0 if name == "user" else half
        norms = np.linalg.norm(own, axis=1)
        timings, recalls = [], []
        for q in range(queries + 10):
            query = rng.standard_normal(vectors.shape[1]).astype("float32")
            started = time.perf_counter()
            hits = db.search_vectors(query.tobytes(), where, limit=50)
            elapsed = (time.perf_counter() - started) * 1000
            if q < 10:
                continue  # warm-up
            timings.append(elapsed)
            exact = np.argsort(-(own @ query) / norms)[:50]
            truth = {f"v{i + offset}" for i in exact}
            recalls.append(len(truth & {key for key, _ in hits}) / 50)
        timings.sort()
        result[name] = {
            "p50_ms": statistics.median(timings),
            "p95_ms": timings[round(0.95 * (len(timings) - 1))],
            "recall_at_50": statistics.fmean(recalls),
            "load_average_1min": os.getloadavg()[0],
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--engines", nargs="+", default=["sqlite", "postgres"])
    parser.add_argument("--items", type=int, default=200_000, help="both scopes together")
    parser.add_argument("--dims", type=int, default=384)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--json", type=Path, default=Path("benchmarks/scale-vectors-100k.json"))
    args = parser.parse_args()
    vectors = np.random.default_rng(7).standard_normal((args.items, args.dims)).astype("float32")
    results = []
    with tempfile.TemporaryDirectory() as folder:
        for engine in args.engines:
            with open_engine(engine, Path(folder), None, database="kern_vectors") as db:
                rate = load(db, vectors)
                row = {"engine": engine, "items": args.items, "dims": args.dims}
                row |= {"load_items_per_s": rate, **measure(db, vectors, args.queries)}
                print(json.dumps(row), flush=True)
                results.append(row)
    args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
