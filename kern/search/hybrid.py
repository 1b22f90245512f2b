"""Hybrid recall over a ``LearningDb``: full-text and vector candidates, ranked by
``kern.search.ranking.rank`` (fusion, time and subject boosts, neighbours, recency).

The scope filter is applied by the database inside both candidate queries, so a search can
only ever see rows the caller may read. Without an embedder it is full-text only; a query
with no searchable word returns nothing, never "everything".
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from kern._sync import run_sync
from kern.db.base import LearningDb, LearningFilter, LearningRecord, SearchHit
from kern.errors import ConfigError
from kern.search.embedders import Embedder, HashEmbedder, LocalEmbedder
from kern.search.ranking import RankingConfig, cosine_top_k, rank

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
    """Embed from synchronous code (store writes run in worker threads)."""
    return list(run_sync(embedder.embed(texts)))


def hybrid_search(
    db: LearningDb,
    embedder: Embedder | None,
    query: str,
    where: LearningFilter,
    *,
    limit: int,
    config: RankingConfig = RankingConfig(),
) -> list[SearchHit]:
    if limit <= 0 or not query.strip():
        return []
    text_hits = db.search_text(query, where, limit=config.candidates)
    records: dict[str, LearningRecord] = {h.record.id: h.record for h in text_hits}
    text_scores = {h.record.id: h.score for h in text_hits}
    vector_scores: dict[str, float] = {}
    if embedder is not None:
        ids, blobs = db.load_vectors(where)
        if ids:
            matrix = np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(len(ids), -1)
            (query_vector,) = embed_sync(embedder, [query])
            for index, similarity in cosine_top_k(matrix, query_vector, config.candidates):
                vector_scores[ids[index]] = similarity
            for missing in set(vector_scores) - set(records):
                record = db.get_learning(missing)
                if record is not None:
                    records[missing] = record
    ranked = rank(
        query,
        text_scores=text_scores,
        vector_scores=vector_scores or None,
        created_at={i: r.created_at for i, r in records.items()},
        subjects={i: _subject(r) for i, r in records.items()},
        now=datetime.now(UTC),
        config=config,
        k=limit,
    )
    return [SearchHit(records[i], score) for i, score in ranked if i in records]


def _subject(record: LearningRecord) -> str | None:
    """Who or what an item is about, for the subject boost (speaker, entity)."""
    value = record.metadata.get("speaker") or record.content.get("entity")
    return str(value) if value else None
