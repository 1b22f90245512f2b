"""sqlite-vec against kern's numpy scoring, on the database ``scale_vectors.py`` loaded.

The evaluation behind docs/decisions.md's "SQLite scores vectors in numpy": sqlite-vec's
``vec0`` table (partition keys store and scope, cosine, exact KNN) and its scalar
``vec_distance_cosine`` over a scope's rows, against ``kern.db._nearest.nearest`` over the
same vectors in memory: latency, agreement with numpy (share of the same ids, largest
similarity difference), the cost of filling the table, and the storage of many small scopes
(a partition per scope). This Python's ``sqlite3`` cannot load extensions, so the extension
is loaded through ``pysqlite3`` (not a kern dependency):

    pip install --target DIR sqlite-vec==0.1.9 pysqlite3-binary
    PYTHONPATH=DIR .venv/bin/python benchmarks/sqlite_vec_eval.py --db COPY_OF_kern_vectors.db \
        --questions DATA/questions.npy

``--db`` gains a ``vec384`` table: give it a copy (a connection without the extension can
no longer use that table).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pysqlite3.dbapi2 as sqlite  # type: ignore[import-not-found]
import sqlite_vec  # type: ignore[import-not-found]

from kern.db._nearest import nearest

KNN = (
    "SELECT l.id, v.distance FROM vec384 v JOIN learnings l ON l.seq = v.rowid"
    " WHERE v.embedding MATCH ? AND v.k = ? AND v.store = ? AND v.scope = ?"
    " ORDER BY v.distance"
)
SCAN = (
    "SELECT id, vec_distance_cosine(embedding, ?) AS d FROM learnings"
    " WHERE store = ? AND scope = ? AND length(embedding) = 1536 ORDER BY d LIMIT ?"
)


def connect(path: str) -> Any:
    conn = sqlite.connect(path)
    conn.enable_load_extension(True)
    sqlite_vec.load(conn)
    conn.enable_load_extension(False)
    conn.execute("PRAGMA cache_size = -32768")  # as SqliteDb
    return conn


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[round(share * (len(ordered) - 1))]


def fill(conn: Any) -> dict[str, Any]:
    """The ``vec0`` table filled from ``learnings`` (what a migration would do)."""
    before = os.path.getsize(conn.execute("PRAGMA database_list").fetchone()[2])
    started = time.perf_counter()
    conn.execute(
        "CREATE VIRTUAL TABLE vec384 USING vec0(store TEXT PARTITION KEY,"
        " scope TEXT PARTITION KEY, embedding float[384] distance_metric=cosine)"
    )
    conn.execute(
        "INSERT INTO vec384(rowid, store, scope, embedding) SELECT seq, store, scope,"
        " embedding FROM learnings WHERE length(embedding) = 1536 ORDER BY seq"
    )
    conn.commit()
    after = os.path.getsize(conn.execute("PRAGMA database_list").fetchone()[2])
    count = conn.execute("SELECT count(*) FROM vec384").fetchone()[0]
    return {
        "filled_vectors": count,
        "fill_s": time.perf_counter() - started,
        "file_growth_mb": (after - before) / 2**20,
    }


def compare(conn: Any, queries: np.ndarray, store: str, scope: str, limit: int) -> dict[str, Any]:
    rows = conn.execute(
        "SELECT id, embedding FROM learnings WHERE store = ? AND scope = ?"
        " AND length(embedding) = 1536 ORDER BY seq",
        (store, scope),
    ).fetchall()
    ids = [row[0] for row in rows]
    matrix = np.frombuffer(b"".join(row[1] for row in rows), np.float32).reshape(len(rows), -1)
    times: dict[str, list[float]] = {"vec0": [], "numpy_in_memory": [], "scalar_scan": []}
    same, worst = [], 0.0
    for n, query in enumerate(queries):
        vector = query.tobytes()
        started = time.perf_counter()
        knn = conn.execute(KNN, (vector, limit, store, scope)).fetchall()
        middle = time.perf_counter()
        exact = nearest(ids, matrix, vector, limit)
        done = time.perf_counter()
        conn.execute(SCAN, (vector, store, scope, limit)).fetchall()
        scanned = time.perf_counter()
        if n >= 3:
            times["vec0"].append((middle - started) * 1000)
            times["numpy_in_memory"].append((done - middle) * 1000)
            times["scalar_scan"].append((scanned - done) * 1000)
        same.append(len({k for k, _ in knn} & {k for k, _ in exact}) / limit)
        similarity = dict(exact)
        worst = max(worst, *(abs(1 - d - similarity.get(k, 1 - d)) for k, d in knn))
    row: dict[str, Any] = {"scope": scope, "items": len(ids), "limit": limit}
    for name, values in times.items():
        row[f"{name}_p50_ms"] = statistics.median(values)
        row[f"{name}_p95_ms"] = percentile(values, 0.95)
    row |= {"same_ids": statistics.fmean(same), "max_similarity_difference": worst}
    return row | {"load_average_1min": os.getloadavg()[0]}


def small_scopes(scopes: int = 200, each: int = 10) -> list[dict[str, Any]]:
    """Bytes per vector with a partition per scope: ``vec0`` reserves whole chunks."""
    rng = np.random.default_rng(0)
    rows = []
    for chunk in ("", ", chunk_size=64"):
        with tempfile.TemporaryDirectory() as folder:
            path = str(Path(folder) / "small.db")
            conn = connect(path)
            conn.execute(
                "CREATE VIRTUAL TABLE v USING vec0(scope TEXT PARTITION KEY,"
                f" embedding float[384] distance_metric=cosine{chunk})"
            )
            for n in range(scopes * each):
                vector = rng.standard_normal(384).astype(np.float32).tobytes()
                conn.execute(
                    "INSERT INTO v(rowid, scope, embedding) VALUES (?, ?, ?)",
                    (n + 1, f"user/{n // each}", vector),
                )
            conn.commit()
            conn.execute("VACUUM")
            conn.close()
            size = os.path.getsize(path)
        rows.append(
            {
                "chunk_size": 64 if chunk else 1024,
                "scopes": scopes,
                "vectors_per_scope": each,
                "file_mb": size / 2**20,
                "kb_per_vector": size / (scopes * each) / 1024,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", required=True, help="a copy of scale_vectors.py's SQLite file")
    parser.add_argument("--questions", type=Path, required=True)
    parser.add_argument("--queries", type=int, default=22)
    parser.add_argument("--json", type=Path, default=Path("benchmarks/sqlite-vec.json"))
    args = parser.parse_args()
    queries = np.load(args.questions).astype(np.float32)[: args.queries + 3]
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    conn = connect(args.db)
    results: list[dict[str, Any]] = []
    if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'vec384'").fetchone():
        results.append(fill(conn))
    scopes = conn.execute(
        "SELECT store, scope FROM learnings GROUP BY store, scope ORDER BY count(*) DESC LIMIT 2"
    ).fetchall()
    for store, scope in scopes:
        for limit in (500, 50):
            results.append(compare(conn, queries, store, scope, limit))
            print(json.dumps(results[-1]), flush=True)
    results.extend(small_scopes())
    print(json.dumps(results, indent=2))
    args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
