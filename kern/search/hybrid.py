"""Hybrid recall over a ``LearningDb``: the search pipeline measured in benchmarks/README.md.

1. full-text candidates, ids and scores only (BM25 on both engines), and the texts of the best
   of them, for which query words each holds (query coverage): everything ranking needs that
   does not depend on the query's vector (``text_candidates``, run while the query is
   embedded);
2. with an embedder, vector candidates: the database's nearest stored vectors by cosine
   (numpy over the scope's float32 vectors on SQLite, pgvector's HNSW index on PostgreSQL);
3. one read of the candidates' contexts (their sessions, or the items recorded around them),
   for neighbour spread, dates and subjects;
4. ``kern.search.ranking.rank`` (score fusion, time and subject boosts, neighbours, query
   coverage, recency);
5. the rows of the top ``limit``, read with the same filter.

The filter is applied by the database inside every read, so a search only ever sees rows the
caller may read. Without an embedder it is full-text only; a query with no searchable word
returns nothing, never "everything".
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import lru_cache

import numpy as np

from kern._text import query_terms
from kern.db._fts5 import stem
from kern.db.base import LearningDb, LearningFilter, RankingRow, SearchHit
from kern.errors import ConfigError
from kern.limits import MAX_PAGE, MAX_QUERY_CHARS, check_count, check_text
from kern.search.embedders import Embedder, HashEmbedder, LocalEmbedder
from kern.search.ranking import RankingConfig, rank, speaker_of, time_chains

__all__ = [
    "TextCandidates",
    "hybrid_search",
    "rank_candidates",
    "resolve_embedder",
    "text_candidates",
]


def resolve_embedder(embedder: Embedder | str | None) -> Embedder | None:
    """``None``, an ``Embedder``, ``"local"`` (all-MiniLM-L6-v2) or ``"hash"`` (tests)."""
    if embedder is None or isinstance(embedder, Embedder):
        return embedder
    if embedder == "local":
        return LocalEmbedder()
    if embedder == "hash":
        return HashEmbedder()
    raise ConfigError(f"embedder= takes None, 'local', 'hash' or an Embedder, got {embedder!r}")


def hybrid_search(
    db: LearningDb,
    query_vector: np.ndarray | None,
    query: str,
    where: LearningFilter,
    *,
    limit: int,
    config: RankingConfig = RankingConfig(),
    now: datetime | None = None,
) -> list[SearchHit]:
    """The ``limit`` best rows matching ``where`` for ``query``, best first.

    ``query_vector`` is the query's embedding (``None``: full-text only). The caller embeds
    it: this function is blocking database work and never waits on an embedder itself
    (``LearningBackend.search`` embeds while ``text_candidates`` runs, then calls
    ``rank_candidates``: the two steps below).

    ``now`` (default: the current time) anchors "last week" in the query and the recency
    prior; pass it to search as of another moment. ``limit`` and ``query`` are checked here
    (``kern.limits``), the one path every search takes.
    """
    found = text_candidates(db, query, where, limit=limit, config=config)
    if found is None:
        return []
    return rank_candidates(
        db, found, query_vector, query, where, limit=limit, config=config, now=now
    )


@dataclass(frozen=True, slots=True)
class TextCandidates:
    """What ranking reads before the query's vector is known (``text_candidates``)."""

    #: The full-text candidates' BM25 scores by id, best first.
    scores: dict[str, float]
    #: The query's distinct word stems, and those of them each of the best
    #: ``context_candidates`` full-text candidates holds (query coverage; empty when off).
    terms: list[str]
    matched: dict[str, frozenset[str]]


def text_candidates(
    db: LearningDb,
    query: str,
    where: LearningFilter,
    *,
    limit: int,
    config: RankingConfig = RankingConfig(),
) -> TextCandidates | None:
    """Step 1: the full-text candidates, and the words of the best of them; ``None`` when the
    search returns nothing whatever the vectors say (``limit`` 0, or no searchable word:
    such a query returns nothing, never "everything"). Checks ``limit`` and ``query``.

    The coverage read (~1 ms at 1,000 memories) is here rather than with the contexts because
    it needs the full-text candidates only: with an embedder it runs while the query is
    embedded (``LearningBackend.search``), not after."""
    check_count(limit, "limit", maximum=MAX_PAGE)
    query = _bounded(check_text(query, "query"))
    words = query_terms(query)
    if limit <= 0 or not words:
        return None
    scores = dict(db.search_text_scores(query, where, limit=config.candidates))
    terms: list[str] = []
    matched: dict[str, frozenset[str]] = {}
    if config.coverage_weight and scores:
        texts = db.load_texts(where, list(scores)[: config.context_candidates])
        terms = list(dict.fromkeys(stem(word) for word in words))
        matched = {key: _stems(body) for key, body in texts.items()}
    return TextCandidates(scores, terms, matched)


def rank_candidates(
    db: LearningDb,
    found: TextCandidates,
    query_vector: np.ndarray | None,
    query: str,
    where: LearningFilter,
    *,
    limit: int,
    config: RankingConfig = RankingConfig(),
    now: datetime | None = None,
) -> list[SearchHit]:
    """Steps 2-5 after ``text_candidates`` returned ``found``: vector candidates, contexts,
    ranking and the top rows."""
    query = _bounded(query)
    text = found.scores
    vectors: dict[str, float] = {}
    if query_vector is not None:
        vector = np.asarray(query_vector, dtype=np.float32).tobytes()
        vectors = dict(db.search_vectors(vector, where, limit=config.candidates))
    if not text and not vectors:
        return []
    candidates = list(dict.fromkeys([*text, *vectors]))
    # Contexts by time are read around the best candidates only: a weak candidate's
    # neighbours gain too little to reach the top, and a busy shared namespace has many rows
    # within the gap of each of hundreds of candidates.
    around = list(
        dict.fromkeys(
            [*list(text)[: config.context_candidates], *list(vectors)[: config.context_candidates]]
        )
    )
    gap = timedelta(minutes=config.context_gap_minutes)
    rows = db.load_neighbours(where, candidates, around=around, gap=gap)
    sequences, created_at, subjects = _context(rows, gap)
    ranked = rank(
        query,
        text_scores=text,
        vector_scores=vectors,
        sequences=sequences,
        created_at=created_at,
        subjects=subjects,
        matched=found.matched,
        terms=found.terms,
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
    rows: list[RankingRow], gap: timedelta
) -> tuple[list[list[str]], dict[str, datetime], dict[str, str | None]]:
    """Contexts (sessions, and time chains of session-less rows; rows arrive in time order),
    dates and subjects (an entity, else the speaker a "Speaker: text" row names) by id."""
    sessions: dict[str, list[str]] = {}
    for row in rows:
        if row.session_id is not None:
            sessions.setdefault(row.session_id, []).append(row.id)
    chains = time_chains(
        ((row.id, row.scope, row.created_at) for row in rows if row.session_id is None), gap
    )
    created_at = {row.id: row.created_at for row in rows}
    subjects = {row.id: row.subject or _speaker(row.head) for row in rows}
    return [*sessions.values(), *chains], created_at, subjects


@lru_cache(maxsize=16_384)
def _stems(text: str) -> frozenset[str]:
    """The Porter stems (``kern.db._fts5.stem``: the stemmer of SQLite's full-text index,
    applied here on every engine) of ``text``'s words, so "painted" in a question holds
    "painting" in a row. Remembered by text: the best candidates of one user's searches are
    the same rows again and again; an edited row is a new key."""
    return frozenset(stem(word) for word in query_terms(text, stopwords=(), limit=None))


#: ``speaker_of`` remembered by text: a search reads the same few hundred rows' heads again
#: and again, and the regex cost more than the ranking. Keyed by the text itself, so an
#: edited row is a new key, never a stale answer.
_speaker = lru_cache(maxsize=16_384)(speaker_of)


def _bounded(query: str) -> str:
    """A long query (a run's message is its recall query) as search reads it: its last
    ``_QUESTION_CHARS`` characters, then its head, ``MAX_QUERY_CHARS`` in all. The end comes
    first because a long message usually asks its question last, and query terms are capped
    (``MAX_QUERY_TERMS``) in the order they appear."""
    if len(query) <= MAX_QUERY_CHARS:
        return query
    end = query[len(query) - _QUESTION_CHARS :]
    return end + " " + query[: MAX_QUERY_CHARS - _QUESTION_CHARS - 1]


#: The end of a long query read first: a sentence or two, fewer words than the term cap.
_QUESTION_CHARS = 300
