"""Recall@10 of kern's default search with its full-text step scored by BM25 variants (SQLite).

Issue 13 asks for one user's recall in ≤ 50 ms with 1M items stored. FTS5's ``bm25()`` counts
each query word's documents over the whole table, ~110 ns a row (a word held by 750,000 rows
costs ~90 ms whatever the scope). BM25 from the scope's own statistics would be bounded by the
scope; this measures what each such choice does to recall before any of it is built, with the
protocol of ``recall_default.py`` (session ids, no metadata; tune LoCoMo 1–2, held out LoCoMo
3–4 and MADial). The search is kern's own but for ``search_text_scores``, replaced by a Python
scorer with exact inputs read from FTS5 (document frequencies, term frequencies from the index's
instances, row lengths from ``learnings_fts_docsize``):

- ``STATS``: ``global`` (the whole table: N, each term's rows) or ``scope`` (the rows the
  search's filter admits, as ``PostgresDb`` computes it);
- ``TF``: ``real`` (occurrences of the term's stem in the row) or ``1``;
- ``AVG``: the average row length over ``global`` rows, the ``scope`` or the ``matches``;
- ``IDF``: ``rsj`` (FTS5's: ln((N - n + 0.5) / (n + 0.5)), floored at 1e-6) or ``lucene``
  (ln(1 + (N - n + 0.5) / (n + 0.5)), never below 0);
- ``LEN``: ``all`` columns (FTS5's: the text and the scope token) or the ``text`` only.

The first variant is FTS5's own ``bm25()`` and must reproduce ``recall_default.py``'s figures
(it does: 0.7969 / 0.7455 / 0.6658 at the time of writing). Each ``--variants`` entry
changes the previous one's settings:

    KERN_BENCH_DATA=<bench-data> .venv/bin/python benchmarks/bm25_statistics.py \
        --variants "STATS=global,TF=real,AVG=global,IDF=rsj,LEN=all" "STATS=scope,LEN=text"
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sqlite3
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import locomo_recall as bench  # puts this checkout's kern first on the path
from engines import open_engine
from sqlalchemy import select

from kern._text import query_terms
from kern.db._fts5 import varints
from kern.db.base import LearningFilter
from kern.db.fulltext import fts5_match
from kern.db.schema import learnings
from kern.db.sql import filter_values, learning_clauses
from kern.db.sqlite import SqliteDb, _scoped_match

K1, B, MIN_IDF = 1.2, 0.75, 1e-6
FTS5 = "STATS=global,TF=real,AVG=global,IDF=rsj,LEN=all"


class Stems:
    """Words as FTS5's ``porter unicode61`` tokenizer indexes them, asked of FTS5 itself."""

    def __init__(self) -> None:
        self.conn = sqlite3.connect(":memory:")
        self.conn.execute("CREATE VIRTUAL TABLE t USING fts5(x, tokenize='porter unicode61')")
        self.conn.execute("CREATE VIRTUAL TABLE v USING fts5vocab(t, row)")
        self.known: dict[str, list[str]] = {}

    def __call__(self, word: str) -> list[str]:
        if word not in self.known:
            self.conn.execute("INSERT INTO t (rowid, x) VALUES (1, ?)", (word,))
            self.known[word] = [row[0] for row in self.conn.execute("SELECT term FROM v")]
            self.conn.execute("DELETE FROM t")
        return self.known[word]


class Scorer:
    """``search_text_scores`` by BM25 with the statistics ``settings`` names."""

    def __init__(self, settings: dict[str, str]) -> None:
        self.settings = settings
        self.stem = Stems()
        self.index: dict[str, Any] = {}

    def read_index(self, conn: Any) -> None:
        """Term frequencies, document frequencies and row sizes of the whole (static) index."""
        if self.index:
            return
        conn.exec_driver_sql(
            "CREATE VIRTUAL TABLE IF NOT EXISTS temp.instances "
            "USING fts5vocab(main, learnings_fts, instance)"
        )
        tf: dict[tuple[str, int], int] = {}
        for term, doc in conn.exec_driver_sql(
            "SELECT term, doc FROM temp.instances WHERE col = 'text'"
        ):
            tf[(term, doc)] = tf.get((term, doc), 0) + 1
        df: dict[str, int] = {}
        for term, _ in tf:
            df[term] = df.get(term, 0) + 1
        rows = conn.exec_driver_sql("SELECT id, sz FROM learnings_fts_docsize")
        sizes = {seq: varints(size) for seq, size in rows}
        self.index = {"tf": tf, "df": df, "sizes": sizes}

    def length(self, seq: int) -> int:
        size = self.index["sizes"][seq]
        return int(size[0]) if self.settings["LEN"] == "text" else int(sum(size))

    def scores(
        self, db: SqliteDb, query: str, where: LearningFilter, *, limit: int = 50
    ) -> list[tuple[str, float]]:
        admitted = select(learnings.c.seq, learnings.c.id).where(*learning_clauses(where))
        hits: dict[str, list[int]] = {}
        with db.transaction(write=False) as conn:
            self.read_index(conn)
            ids: dict[int, str] = dict(conn.execute(admitted.params(filter_values(where))).all())
            for word in query_terms(query):
                match = fts5_match([word])
                if match is not None:
                    statement = "SELECT rowid FROM learnings_fts WHERE learnings_fts MATCH ?"
                    found = conn.exec_driver_sql(statement, (_scoped_match(match, where.scopes),))
                    hits[word] = [row[0] for row in found if row[0] in ids]
        matched = {seq for rows in hits.values() for seq in rows}
        if not matched:
            return []
        s, tf, sizes = self.settings, self.index["tf"], self.index["sizes"]
        if s["STATS"] == "scope":
            documents = len(ids)
            frequency = {word: len(rows) for word, rows in hits.items()}
        else:
            documents = len(sizes)
            frequency = {w: sum(self.index["df"].get(t, 0) for t in self.stem(w)) for w in hits}
        population = {"matches": matched, "scope": ids, "global": sizes}[s["AVG"]]
        average = sum(self.length(seq) for seq in population) / len(population)
        scores: dict[int, float] = {}
        for word, rows in hits.items():
            n = frequency[word]
            ratio = (documents - n + 0.5) / (n + 0.5)
            idf = max(math.log(ratio), MIN_IDF) if s["IDF"] == "rsj" else math.log(1 + ratio)
            for seq in rows:
                f = 1
                if s["TF"] == "real":
                    f = max(1, sum(tf.get((t, seq), 0) for t in self.stem(word)))
                norm = 1 - B + B * self.length(seq) / average
                scores[seq] = scores.get(seq, 0.0) + idf * f * (K1 + 1) / (f + K1 * norm)
        best = sorted(scores.items(), key=lambda item: (-item[1], item[0]))[:limit]
        return [(ids[seq], score) for seq, score in best]


async def run(variants: list[str], data: Path, madial: Path) -> list[dict[str, Any]]:
    conversations = bench.load(data) + bench.load_madial(madial)
    settings = dict(pair.split("=") for pair in FTS5.split(","))
    scorer = Scorer(settings)

    def search_text_scores(
        db: SqliteDb, query: str, where: LearningFilter, *, limit: int = 50
    ) -> list[tuple[str, float]]:
        return scorer.scores(db, query, where, limit=limit)

    SqliteDb.search_text_scores = search_text_scores  # type: ignore[method-assign]
    results = []
    with (
        tempfile.TemporaryDirectory() as folder,
        open_engine("sqlite", Path(folder), None, database="kern_bm25") as db,
    ):
        product = bench.build_product(conversations, {}, db, sessions=True)
        for variant in variants:
            settings.update(pair.split("=") for pair in variant.split(",") if pair)
            result = await bench.evaluate(conversations, bench.product_search(product, None))
            row = {
                "settings": dict(settings),
                "recall@10": {k: v[10] for k, v in result.recall.items()},
            }
            print(json.dumps(row), flush=True)
            results.append(row)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variants", nargs="+", default=[FTS5, "STATS=scope,LEN=text"])
    parser.add_argument("--data", type=Path, default=bench.DEFAULT_DATA)
    parser.add_argument("--madial", type=Path, default=bench.DEFAULT_DATA.parent)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = asyncio.run(run(args.variants, args.data, args.madial))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
