"""Hybrid recall over a ``LearningDb``: the search pipeline measured in benchmarks/README.md.

1. full-text candidates, ids and scores only (BM25 on both engines);
2. with an embedder, vector candidates: the database's nearest stored vectors by cosine
   (numpy over the scope's float32 vectors on SQLite, pgvector's HNSW index on PostgreSQL);
3. one read of the candidates' sessions, for neighbour spread, dates and subjects;
4. ``kern.search.ranking.rank`` (score fusion, time and subject boosts, neighbours, recency);
5. the rows of the top ``limit``, read with the same filter.

The filter is applied by the database inside every read, so a search only ever sees rows the
caller may read. Without an embedder it is full-text only; a query with no searchable word
returns nothing, never "everything".
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import numpy as np

from kern._sync import run_sync
from kern._text import query_terms
from kern.db.base import LearningDb, LearningFilter, RankingRow, SearchHit
from kern.errors import ConfigError
from kern.search.embedders import Embedder, HashEmbedder, LocalEmbedder, Vector
from kern.search.ranking import RankingConfig, rank

__all__ = ["embed_sync", "hybrid_search", "resolve_embedder"]


def resolve_embedder(embedder: Embedder | str | None) -> Embedder | None:
    """``None``, an ``Embedder``, ``"local"`` (all-MiniLM-L6-v2) or ``"hash"`` (tests)."""
    if embedder is None or isinstance(embedder, Embedder):
        return embedder
    if embedder == "local":
        return LocalEmbedder()
    if embedder == "hash":
        return HashEmbedder()
    raise ConfigError(f"embedder= takes None, 'local', 'hash' or an Embedder, got {embedder!r}")


def embed_sync(embedder: Embedder, texts: list[str]) -> list[np.ndarray]:
    """Embed from synchronous code outside kern's event loop (scripts, benchmarks); the
    learning layer embeds asynchronously (``kern.learn.backend``) and passes vectors in."""
    return list(run_sync(embedder.embed(texts)))


def hybrid_search(
    db: LearningDb,
    embedder: Embedder | None,
    query: str,
    where: LearningFilter,
    *,
    limit: int,
    config: RankingConfig = RankingConfig(),
    now: datetime | None = None,
    query_vector: Vector | None = None,
) -> list[SearchHit]:
    """The ``limit`` best rows matching ``where`` for ``query``, best first.

    ``now`` (default: the current time) anchors "last week" in the query and the recency
    prior; pass it to search as of another moment. ``query_vector`` is the query's
    embedding, computed by the caller (async code must not embed through ``embed_sync``);
    without it, ``embedder`` (if any) embeds the query here.
    """
    if limit <= 0 or not query_terms(query):
        return []
    text = dict(db.search_text_scores(query, where, limit=config.candidates))
    if query_vector is None and embedder is not None:
        (query_vector,) = embed_sync(embedder, [query])
    vectors: dict[str, float] = {}
    if query_vector is not None:
        vector = np.asarray(query_vector, dtype=np.float32).tobytes()
        vectors = dict(db.search_vectors(vector, where, limit=config.candidates))
    if not text and not vectors:
        return []
    candidates = list(dict.fromkeys([*text, *vectors]))
    sequences, created_at, subjects = _context(db.load_neighbours(where, candidates))
    ranked = rank(
        query,
        text_scores=text,
        vector_scores=vectors,
        sequences=sequences,
        created_at=created_at,
        subjects=subjects,
        now=now or datetime.now(UTC),
        config=config,
        k=limit,
    )
    if not ranked:
        return []
    top = [key for key, _ in ranked]
    records = {r.id: r for r in db.list_learnings(replace(where, ids=top), limit=len(top))}
    return [SearchHit(records[key], score) for key, score in ranked if key in records]


def _context(
    rows: list[RankingRow],
) -> tuple[list[list[str]], dict[str, datetime], dict[str, str | None]]:
    """Session sequences (rows arrive in session order), dates and subjects by id."""
    sessions: dict[str, list[str]] = {}
    for row in rows:
        if row.session_id is not None:
            sessions.setdefault(row.session_id, []).append(row.id)
    created_at = {row.id: row.created_at for row in rows}
    subjects = {row.id: row.subject for row in rows}
    return list(sessions.values()), created_at, subjects
