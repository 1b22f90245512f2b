"""Exact nearest vectors in numpy (``kern.db._nearest``): the order of a full stable sort, and
the same numbers for a row whichever other rows are scored with it (a scope's snapshot scores
all its rows, the database path only the visible ones)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from kern.db._nearest import best_first, cosine_similarities, nearest

# Few distinct values, so that most draws have ties at the cut; NaN for zero vectors.
_VALUES = st.sampled_from([-1.0, -0.5, 0.0, -0.0, 0.25, 0.5, 0.5000001, 1.0, float("nan")])


@settings(max_examples=300, deadline=None)
@given(st.lists(_VALUES, max_size=40), st.integers(min_value=0, max_value=45))
def test_best_first_is_a_full_stable_sort_cut_to_the_limit(values: list[float], limit: int) -> None:
    similarity = np.array(values, dtype=np.float32)
    everything = np.argsort(-similarity, kind="stable")
    expected = everything[np.isfinite(similarity[everything])][:limit]
    assert best_first(similarity, limit).tolist() == expected.tolist()


def test_a_row_scores_the_same_among_any_other_rows() -> None:
    rng = np.random.default_rng(5)
    matrix = rng.standard_normal((2_000, 384)).astype(np.float32)
    query = rng.standard_normal(384).astype(np.float32)
    every = cosine_similarities(matrix, query)
    for size in (1, 7, 100, 1_333):
        chosen = np.sort(rng.choice(len(matrix), size, replace=False))
        assert np.array_equal(cosine_similarities(matrix[chosen], query), every[chosen])


def test_nearest_skips_zero_vectors_and_keeps_insertion_order_among_equals() -> None:
    matrix = np.array([[1, 0], [0, 0], [2, 0], [0, 1], [1, 1]], dtype=np.float32)
    query = np.array([1, 0], dtype=np.float32).tobytes()
    found = nearest(["a", "zero", "b", "c", "d"], matrix, query, 3)
    assert [key for key, _ in found] == ["a", "b", "d"]
    assert found[0][1] == found[1][1] == 1.0
    assert nearest(["a"], matrix[:1], np.zeros(2, np.float32).tobytes(), 5) == []
