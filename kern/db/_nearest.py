"""Exact nearest vectors by cosine, in numpy: how vector candidates are found where the
database has no vector index (SQLite; PostgreSQL without pgvector), over vectors read from the
database or held in a scope's snapshot (``kern.db._scopes``).

At 100,000 all-MiniLM-L6-v2 vectors in one scope (benchmarks/scale.md) the row norms took half
of the time (53 of ~105 ms) and sorting every similarity a sixth: a snapshot keeps its norms
(``row_norms``, computed once), and ``best_first`` sorts only the few that can be among the
best. Both give the same numbers and order as norming and sorting everything.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

__all__ = ["best_first", "cosine_similarities", "nearest", "row_norms"]

Floats = npt.NDArray[np.float32]


def row_norms(matrix: Floats) -> Floats:
    """The Euclidean norm of each row (what ``cosine_similarities`` divides by)."""
    norms: Floats = np.linalg.norm(matrix, axis=1)
    return norms


def cosine_similarities(matrix: Floats, query: Floats, norms: Floats | None = None) -> Floats:
    """The cosine of each row of ``matrix`` with ``query``; NaN for a zero vector (it has no
    angle). ``norms``: ``row_norms(matrix)`` when already known."""
    scale = (row_norms(matrix) if norms is None else norms) * float(np.linalg.norm(query))
    with np.errstate(divide="ignore", invalid="ignore"):
        # einsum, not ``matrix @ query``: BLAS may sum a row in another order depending on
        # how many rows there are, and a snapshot scores all its rows where the database
        # path scores only the visible ones; both must give the same numbers (15 against
        # 13 ms for 100,000 MiniLM vectors).
        dots = np.einsum("ij,j->i", matrix, query)
        similarity: Floats = np.where(scale > 0, dots / scale, np.nan)
    return similarity


def best_first(similarity: Floats, limit: int) -> npt.NDArray[np.intp]:
    """Positions of the ``limit`` highest finite similarities, best first, equal ones in
    position order: what a stable sort of all of them gives, but only the values at or above
    the ``limit``-th best are sorted (the rest are left by a partition)."""
    candidates = np.flatnonzero(np.isfinite(similarity))
    if 0 < limit < len(candidates):
        values = similarity[candidates]
        cut = len(values) - limit
        # Every value equal to the limit-th best is kept, so ties are broken by position
        # below exactly as in a full stable sort.
        candidates = candidates[values >= np.partition(values, cut)[cut]]
    order = candidates[np.argsort(-similarity[candidates], kind="stable")]
    return order[:limit]


def nearest(
    ids: Sequence[str], matrix: Floats, vector: bytes, limit: int
) -> list[tuple[str, float]]:
    """The ``limit`` ids whose rows of ``matrix`` are nearest to ``vector`` (float32 bytes) by
    cosine, best first; ties and zero vectors as ``search_vectors`` documents."""
    similarity = cosine_similarities(matrix, np.frombuffer(vector, dtype=np.float32))
    order = best_first(similarity, limit).tolist()
    return list(zip([ids[i] for i in order], similarity[order].tolist(), strict=True))
