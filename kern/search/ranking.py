"""Pure ranking for memory search: fusion, boosts, neighbour expansion, vector top-k.

No I/O here. A store (SQLite or PostgreSQL) fetches candidate scores and a little row data,
then calls :func:`rank`, so every backend orders results the same way. Scores are "higher is
better" throughout; pass ``-bm25(...)`` from FTS5 and the BM25 score ``PostgresDb`` computes.

The defaults in :class:`RankingConfig` were measured on LoCoMo conversations 1–2 and checked on
conversations 3–4 (``benchmarks/locomo_recall.py``, ``benchmarks/README.md``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Collection, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import repeat
from operator import itemgetter
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from kern._text import query_terms
from kern.search.query import TimeRange, time_ranges

__all__ = [
    "RankingConfig",
    "boost_matching_subjects",
    "boost_time_ranges",
    "cosine_top_k",
    "cover_query_terms",
    "fuse",
    "max_normalize",
    "min_max_normalize",
    "rank",
    "recency_prior",
    "reciprocal_rank_fusion",
    "speaker_of",
    "spread_to_context",
    "spread_to_neighbours",
    "time_chains",
    "top_k",
    "weighted_sum",
]

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True, slots=True)
class RankingConfig:
    """Weights of the hybrid ranking; every feature can be switched off with 0.

    - ``text_weight`` / ``vector_weight``: full-text scores are divided by the best one (BM25 has
      no fixed scale and 0 means "no word matched"); cosine similarities are min-max scaled
      over the vector candidates (:func:`min_max_normalize`), then the two are summed with
      these weights. Cosines need the min-max: a sentence embedder puts unrelated texts at
      0.1–0.2, not 0, and related ones rarely above 0.6, so used as they are they added a
      near-constant to every candidate and could hardly move the order; scaled, the best
      vector match gets 1 like the best full-text match. Weighted sums were measured better
      than reciprocal-rank fusion, which throws the score gaps away (see benchmarks/README.md).
    - ``neighbour_weights``: an item gains ``w[d-1] ×`` the score of the item ``d`` places
      before or after it in the same context (best one counts). Conversation turns and
      memories saved together answer each other: "which ones?" — "the red ones". A context is
      a session (items saved with the same ``session_id``) or, for items saved without one, a
      run of one scope's items each recorded within ``context_gap_minutes`` of the previous.
    - ``context_weight``: every item of a context also gains ``context_weight ×`` the best
      score in that context, so the rest of a conversation that answers the query well
      outranks stray single matches elsewhere.
    - ``context_gap_minutes``: the pause that ends a session-less context; 30 minutes is the
      usual inactivity timeout of web-analytics sessions, not a value fitted to a benchmark.
    - ``subject_boost``: items whose subject is named in the query are multiplied by
      ``1 + subject_boost``. The subject comes from the item itself: the speaker of a
      "Speaker: text" item (:func:`speaker_of`) or the entity of an entity-memory item.
    - ``time_boost``: items created inside a time range the query names ("in May 2023",
      "last week") are multiplied by ``1 + time_boost``.
    - ``recency_weight``, ``recency_half_life_days``: a mild prior for newer items,
      ``× (1 + w · 0.5^(age / half_life))``; a tie-breaker, not a filter.
    - ``coverage_weight``, ``coverage_reach``: every item gains ``coverage_weight ×`` the
      share of the query's words held by the items within ``coverage_reach`` places of it in
      its context (itself included), each word weighted by how rare it is among the best
      full-text candidates (:func:`cover_query_terms`). BM25 scores turns one by one, so a
      question whose words are spread over a few adjacent turns ("what did Melanie's kids
      make at the pottery class?") matches each of them weakly; the passage they form
      together matches all of it. The reach is the neighbours' (two turns either side).
      Measured on LoCoMo 1–2 (R@10 0.797 → 0.822), held out 3–4 0.746 → 0.760 and MADial
      0.666 → 0.667 (docs/decisions.md).
    - ``context_candidates``: the best this many candidates of each retriever have their
      session-less contexts read (whole sessions are read for every candidate); the best
      this many full-text candidates are the ones whose words the coverage counts.
    - ``candidates``: how many rows each retriever (full-text, vectors) contributes.
    """

    text_weight: float = 1.0
    vector_weight: float = 0.7
    neighbour_weights: tuple[float, ...] = (0.7, 0.5)
    context_weight: float = 0.3
    context_gap_minutes: float = 30.0
    context_candidates: int = 50
    coverage_weight: float = 0.7
    coverage_reach: int = 2
    subject_boost: float = 0.4
    time_boost: float = 0.5
    recency_weight: float = 0.05
    recency_half_life_days: float = 30.0
    candidates: int = 500


def max_normalize(scores: Mapping[K, float]) -> dict[K, float]:
    """Scale scores so the best is 1.0; negative scores become 0. Empty in, empty out."""
    best = max(scores.values(), default=0.0)
    if best <= 0:
        return dict.fromkeys(scores, 0.0)
    # ``0.0 if value < 0.0 else value`` is ``max(value, 0.0)`` without a call per item.
    return {key: (0.0 if value < 0.0 else value) / best for key, value in scores.items()}


def min_max_normalize(scores: Mapping[K, float]) -> dict[K, float]:
    """Scale scores (negatives clipped to 0) so the worst is 0.0 and the best 1.0.

    For retrievers whose scores have a floor that carries no information, as cosine
    similarity does (unrelated texts are not orthogonal). All scores equal: 1.0 each if
    positive (every one is the best), else 0.0. Empty in, empty out.
    """
    clipped = {key: 0.0 if value < 0.0 else value for key, value in scores.items()}
    low = min(clipped.values(), default=0.0)
    high = max(clipped.values(), default=0.0)
    if high <= low:
        return dict.fromkeys(clipped, 1.0 if high > 0 else 0.0)
    span = high - low
    return {key: (value - low) / span for key, value in clipped.items()}


def weighted_sum(maps: Sequence[Mapping[K, float]], weights: Sequence[float]) -> dict[K, float]:
    """Sum of ``weight × score`` over the maps; a key missing from a map scores 0 there."""
    if len(maps) != len(weights):
        raise ValueError("one weight per score map")
    fused: dict[K, float] = {}
    for scores, weight in zip(maps, weights, strict=True):
        for key, value in scores.items():
            fused[key] = fused.get(key, 0.0) + weight * value
    return fused


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[K]], weights: Sequence[float] | None = None, *, k: int = 60
) -> dict[K, float]:
    """Weighted RRF: ``Σ weight / (k + rank)`` with ranks from 1 (Cormack et al., 2009)."""
    weights = [1.0] * len(rankings) if weights is None else weights
    if len(rankings) != len(weights):
        raise ValueError("one weight per ranking")
    fused: dict[K, float] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        for position, key in enumerate(ranking, start=1):
            fused[key] = fused.get(key, 0.0) + weight / (k + position)
    return fused


def spread_to_neighbours(
    scores: Mapping[K, float],
    sequences: Iterable[Sequence[K]],
    weights: Sequence[float] = (0.7, 0.5),
) -> dict[K, float]:
    """Add to each item the best ``weights[d-1] × score`` of its neighbours at distance ``d``.

    ``sequences`` lists items in their natural order, one sequence per session (or any group
    whose adjacency means "said together"); neighbours never cross sequences. Items that had
    no score of their own can enter the result through a scored neighbour.
    """
    spread = dict(scores)
    if not weights:
        return spread
    reach = list(enumerate(weights, start=1))
    for sequence in sequences:
        size = len(sequence)
        gains: dict[int, float] = {}
        best = gains.get
        # Walk the scored items only and push their score outwards: most of a long session
        # is usually unscored, so this is cheaper than asking every item about its neighbours.
        # The order of the walk (item, distance, before then after) is the order in which
        # items that had no score enter the result, which ties in the ranking keep.
        for i, own in enumerate(map(scores.get, sequence, repeat(0.0))):
            if own <= 0:
                continue
            for distance, weight in reach:
                gain = weight * own
                j = i - distance
                if j >= 0 and gain > best(j, 0.0):
                    gains[j] = gain
                j = i + distance
                if j < size and gain > best(j, 0.0):
                    gains[j] = gain
        for j, gain in gains.items():
            key = sequence[j]
            spread[key] = spread.get(key, 0.0) + gain
    return spread


# A label of one to three words, each starting with a capital letter, then ": " and the text:
# "Caroline: I went to …", "Dr. Lee: …". Lower-case prefixes ("note: …", "re: …") are text.
_SPEAKER = re.compile(r"\s*((?:[^\W\d_][\w.'’-]*)(?:\s+[^\W\d_][\w.'’-]*){0,2})\s*:\s+\S")


def speaker_of(text: str) -> str | None:
    """Who says ``text`` when it is written "Speaker: text" (a transcript line), else None.

    The speaker must start with an upper-case letter and be at most three words, so that
    a sentence with a colon ("The plan was simple: …") is not taken for a speaker label.
    """
    # A label needs a colon: most texts that are not transcript lines have none, and the
    # check costs a fraction of the pattern's (a busy namespace's search reads ~1,000 rows
    # whose heads are all different, so ``hybrid``'s memo rarely holds them).
    match = _SPEAKER.match(text) if ":" in text else None
    if match is None:
        return None
    words = match.group(1).split()
    return match.group(1) if all(w[0].isupper() for w in words) else None


def time_chains(items: Iterable[tuple[K, Hashable, datetime]], gap: timedelta) -> list[list[K]]:
    """Group ``(key, group, created_at)`` items, given in time order, into contexts.

    Within one ``group`` (a user's scope) an item joins the context of the item before it
    when it was recorded at most ``gap`` later; a longer pause starts a new context. This is
    how analytics tools cut page views into visits, applied to items saved without a session.
    """
    chains: list[list[K]] = []
    last: dict[Hashable, tuple[datetime, list[K]]] = {}
    for key, group, moment in items:
        at = _utc(moment)
        previous = last.get(group)
        if previous is not None and at - previous[0] <= gap:
            chain = previous[1]
        else:
            chain = []
            chains.append(chain)
        chain.append(key)
        last[group] = (at, chain)
    return chains


def spread_to_context(
    scores: Mapping[K, float], sequences: Iterable[Sequence[K]], weight: float
) -> dict[K, float]:
    """Add to each item ``weight ×`` the best score in its context (session or time chain).

    A question whose answer is spread over one conversation ("what did they decide about the
    trip?") matches some of its turns well and the rest not at all; this lifts the rest of a
    well-matching context above stray matches elsewhere.
    """
    spread = dict(scores)
    if weight == 0:
        return spread
    for sequence in sequences:
        best = max(map(scores.get, sequence, repeat(0.0)), default=0.0)
        if best <= 0:
            continue
        gain = weight * best
        for key in sequence:
            spread[key] = spread.get(key, 0.0) + gain
    return spread


def cover_query_terms(
    scores: Mapping[K, float],
    sequences: Iterable[Sequence[K]],
    matched: Mapping[K, Collection[str]],
    terms: Collection[str],
    *,
    weight: float,
    reach: int = 2,
) -> dict[K, float]:
    """Add to each scored item ``weight ×`` the weighted share of ``terms`` that the items
    within ``reach`` places of it (itself included) hold, in its context.

    ``matched`` gives, for the best full-text candidates, which of the query's ``terms`` each
    holds; other items count as holding none. A word's weight is ``log(1 + n / df)``: ``df``
    of the ``n`` items of ``matched`` hold it, so a word every candidate holds (a speaker's
    name, "like") counts little and a rare one much. A query word none of them holds is
    weighed as the rarest word found (it is at least as rare) and can never be covered: a
    passage covers the whole question only when every word was found.

    This is passage-level evidence next to BM25's turn-level score: a question spread over a
    few adjacent turns is covered by their passage, though each turn matches only part of it.
    """
    out = dict(scores)
    if weight == 0 or not matched or not terms:
        return out
    # Sums run in the query's order, never a set's: a set of strings iterates in an order
    # that changes with each process's hash seed, and float sums with their order, so equal
    # scores (and the ranking's ties) would differ between two runs of the same search.
    order = list(dict.fromkeys(terms))
    wanted = set(order)
    held = {key: wanted.intersection(words) for key, words in matched.items()}
    counts: dict[str, int] = {}
    for words in held.values():
        for word in words:
            counts[word] = counts.get(word, 0) + 1
    if not counts:
        return out
    weights = {word: math.log(1 + len(held) / df) for word, df in counts.items()}
    rarest = max(weights.values())
    total = sum(weights.get(word, rarest) for word in order)
    for sequence in sequences:
        # Each holder pushes its words to the places within reach: one walk of the context,
        # then work for the few best candidates only.
        near: dict[int, set[str]] = {}
        for i, key in enumerate(sequence):
            own = held.get(key)
            if own:
                for j in range(max(i - reach, 0), min(i + reach + 1, len(sequence))):
                    near.setdefault(j, set()).update(own)
        for j, covered in near.items():
            key = sequence[j]
            if key in out:
                out[key] += weight * sum(weights[word] for word in order if word in covered) / total
    return out


def boost_matching_subjects(
    scores: Mapping[K, float],
    subjects: Mapping[K, str | None],
    terms: Collection[str],
    boost: float,
) -> dict[K, float]:
    """Multiply by ``1 + boost`` the items whose subject's words are all among ``terms``."""
    if boost == 0 or not terms:
        return dict(scores)
    named = _named_subjects(subjects, terms)
    return {key: value * (1 + boost) if named(key) else value for key, value in scores.items()}


def _named_subjects(
    subjects: Mapping[K, str | None], terms: Collection[str]
) -> Callable[[K], bool]:
    """Whether an item's subject's words are all among ``terms``, decided once per subject
    (few distinct subjects, many items)."""
    wanted = set(terms)
    named: dict[str, bool] = {}
    subject_of = subjects.get

    def is_named(key: K) -> bool:
        subject = subject_of(key) or ""
        found = named.get(subject)
        if found is None:
            words = query_terms(subject, stopwords=(), limit=None)
            found = named[subject] = bool(words) and wanted.issuperset(words)
        return found

    return is_named


def boost_time_ranges(
    scores: Mapping[K, float],
    created_at: Mapping[K, datetime | None],
    ranges: Sequence[TimeRange],
    boost: float,
) -> dict[K, float]:
    """Multiply by ``1 + boost`` the items created inside any of ``ranges``."""
    if boost == 0 or not ranges:
        return dict(scores)
    inside: dict[datetime | None, bool] = {}  # items of one session share a moment
    out: dict[K, float] = {}
    for key, value in scores.items():
        moment = created_at.get(key)
        if moment not in inside:
            inside[moment] = any(moment in r for r in ranges)
        out[key] = value * (1 + boost) if inside[moment] else value
    return out


def recency_prior(
    scores: Mapping[K, float],
    created_at: Mapping[K, datetime | None],
    *,
    now: datetime,
    weight: float,
    half_life_days: float,
) -> dict[K, float]:
    """Multiply by ``1 + weight · 0.5^(age_days / half_life_days)``; undated items get 1."""
    if weight == 0:
        return dict(scores)
    factor = _recency_factors(created_at, now=now, weight=weight, half_life_days=half_life_days)
    return {key: value * factor(key) for key, value in scores.items()}


def _recency_factors(
    created_at: Mapping[K, datetime | None], *, now: datetime, weight: float, half_life_days: float
) -> Callable[[K], float]:
    """``recency_prior``'s factor of an item, computed once per moment (the items of one
    session share theirs)."""
    if half_life_days <= 0:
        raise ValueError("half_life_days must be positive")
    now = _utc(now)
    factors: dict[datetime | None, float] = {None: 1.0}
    moment_of = created_at.get

    def factor(key: K) -> float:
        moment = moment_of(key)
        found = factors.get(moment)
        if found is None:
            assert moment is not None
            age_days = max((now - _utc(moment)).total_seconds(), 0.0) / 86400
            found = factors[moment] = 1 + weight * math.pow(0.5, age_days / half_life_days)
        return found

    return factor


def cosine_top_k(
    matrix: npt.NDArray[np.float32], query: npt.NDArray[np.float32], k: int
) -> list[tuple[int, float]]:
    """Row indices and cosine similarities of the ``k`` rows of ``matrix`` closest to ``query``.

    Rows need not be normalised. Ties keep row order, so results are deterministic.
    """
    if matrix.ndim != 2 or query.ndim != 1 or matrix.shape[1] != query.shape[0]:
        raise ValueError(f"shapes do not match: matrix {matrix.shape}, query {query.shape}")
    if k <= 0 or matrix.shape[0] == 0:
        return []
    query_norm = float(np.linalg.norm(query))
    if query_norm == 0:
        return []
    row_norms = np.linalg.norm(matrix, axis=1)
    row_norms[row_norms == 0] = 1.0
    sims = (matrix @ query) / (row_norms * query_norm)
    if k < sims.shape[0]:
        part = np.argpartition(-sims, k - 1)[:k]
        order = part[np.lexsort((part, -sims[part]))]
    else:
        order = np.lexsort((np.arange(sims.shape[0]), -sims))
    return [(int(i), float(sims[i])) for i in order]


def top_k(scores: Mapping[K, float], k: int) -> list[tuple[K, float]]:
    """The ``k`` best items, best first; ties keep the mapping's order."""
    # Python's sort is stable with ``reverse`` too: equal scores keep the mapping's order.
    return sorted(scores.items(), key=itemgetter(1), reverse=True)[: max(k, 0)]


def fuse(
    text_scores: Mapping[K, float],
    vector_scores: Mapping[K, float] | None,
    config: RankingConfig = RankingConfig(),
) -> dict[K, float]:
    """One score per candidate: ``text_weight ×`` the full-text score over the best one plus
    ``vector_weight ×`` the min-max scaled cosine (:class:`RankingConfig` says why)."""
    maps: list[Mapping[K, float]] = [max_normalize(text_scores)]
    weights = [config.text_weight]
    if vector_scores:
        maps.append(min_max_normalize(vector_scores))
        weights.append(config.vector_weight)
    return weighted_sum(maps, weights)


def rank(
    query: str,
    *,
    text_scores: Mapping[K, float],
    vector_scores: Mapping[K, float] | None = None,
    sequences: Iterable[Sequence[K]] = (),
    created_at: Mapping[K, datetime | None] | None = None,
    subjects: Mapping[K, str | None] | None = None,
    matched: Mapping[K, Collection[str]] | None = None,
    terms: Collection[str] = (),
    now: datetime | None = None,
    config: RankingConfig = RankingConfig(),
    k: int = 10,
) -> list[tuple[K, float]]:
    """Order search candidates: fuse, boost by time and subject, spread to neighbours, top-k.

    ``text_scores`` (higher is better) and ``vector_scores`` (cosine) hold the candidates the
    store found; ``sequences`` the session order of the candidates' sessions (or nothing to
    skip neighbour expansion); ``created_at`` and ``subjects`` row data for those items;
    ``matched`` which of the query's ``terms`` the best full-text candidates hold, in the same
    form (nothing: no coverage gain, :func:`cover_query_terms`). Only
    items with a positive final score are returned, so a query that matched nothing returns
    nothing rather than arbitrary rows.
    """
    created = created_at or {}
    scores = fuse(text_scores, vector_scores, config)
    # Time before neighbours: a turn inherits its neighbour's time match, which is right, as
    # a session's items share a date. Subject after: the speaker of *this* item is what counts.
    scores = boost_time_ranges(scores, created, time_ranges(query, now=now), config.time_boost)
    sequences = [list(sequence) for sequence in sequences]  # read twice below
    scores = spread_to_neighbours(scores, sequences, config.neighbour_weights)
    scores = spread_to_context(scores, sequences, config.context_weight)
    if matched:
        scores = cover_query_terms(
            scores,
            sequences,
            matched,
            terms,
            weight=config.coverage_weight,
            reach=config.coverage_reach,
        )
    # The subject boost, the recency prior and the filter in one walk of the ~1,000 items
    # (``boost_matching_subjects`` then ``recency_prior``: the same products, in that order).
    words = query_terms(query, stopwords=(), limit=None) if subjects else ()
    boost = config.subject_boost if subjects and words and config.subject_boost != 0 else 0.0
    named = _named_subjects(subjects or {}, words) if boost else None
    factor = None
    if now is not None and config.recency_weight != 0:
        factor = _recency_factors(
            created,
            now=now,
            weight=config.recency_weight,
            half_life_days=config.recency_half_life_days,
        )
    final: dict[K, float] = {}
    for key, value in scores.items():
        if named is not None and named(key):
            value = value * (1 + boost)
        if factor is not None:
            value = value * factor(key)
        if value > 0:
            final[key] = value
    return top_k(final, k)


def _utc(moment: datetime) -> datetime:
    """``moment`` in UTC, timezone-aware; a naive moment is taken to be UTC already.

    Stored moments come back in UTC, so the usual case is the check alone: a conversion
    (``astimezone``, ``replace``) costs ~1-2 µs, and a search of a busy shared namespace
    compares ~2,000 moments (its contexts, its recency prior). Differences of UTC moments
    are exact, whatever zones the inputs were in.
    """
    if moment.tzinfo is UTC:
        return moment
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
