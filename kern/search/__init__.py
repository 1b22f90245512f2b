"""Memory search: embedders, safe full-text queries and the hybrid ranking every store shares.

A store retrieves candidates (FTS5 or tsvector full-text, cosine over stored vectors), then
orders them with :func:`kern.search.ranking.rank`. The pipeline and its measurements are in
``benchmarks/README.md``.
"""

from kern.search.embedders import Embedder, HashEmbedder, LocalEmbedder, OpenAIEmbedder, Vector
from kern.search.query import STOPWORDS, TimeRange, fts5_match, query_terms, time_ranges, tsquery
from kern.search.ranking import RankingConfig, cosine_top_k, rank

__all__ = [
    "STOPWORDS",
    "Embedder",
    "HashEmbedder",
    "LocalEmbedder",
    "OpenAIEmbedder",
    "RankingConfig",
    "TimeRange",
    "Vector",
    "cosine_top_k",
    "fts5_match",
    "query_terms",
    "rank",
    "time_ranges",
    "tsquery",
]
