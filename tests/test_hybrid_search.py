"""Hybrid recall through the product API, on real databases: the pipeline of
benchmarks/README.md (full-text + vectors, neighbour spread, subject and time boosts) and the
scope and status rules that must hold whatever the ranking does."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kern.db.base import Create, LearningFilter, LearningRecord, RankingRow
from kern.db.sql import SqlDb
from kern.learn.machine import LearningMachine
from kern.learn.scope import namespace_scope, user_scope
from kern.search import HashEmbedder, RankingConfig
from kern.search.hybrid import hybrid_search

DAY = datetime(2023, 5, 7, 14, 0, tzinfo=UTC)
NOW = datetime(2023, 9, 1, tzinfo=UTC)
ALICE_MEMORIES = LearningFilter(store="user_memory", scopes=[user_scope("alice")], kinds=["memory"])


# ``db`` (tests/conftest.py) is a fresh database on each engine: SQLite, then PostgreSQL.


@pytest.fixture
def lm(db: SqlDb) -> LearningMachine:
    return LearningMachine(db=db, user_memory=True, entity_memory=True)


def say(
    lm: LearningMachine,
    text: str,
    *,
    user: str = "alice",
    session: str | None = "s1",
    speaker: str | None = None,
    at: datetime = DAY,
) -> str:
    """Add one conversation turn as a memory, "Speaker: text" when it has a speaker (what an
    app storing a transcript does: no metadata); return its id."""
    content = f"{speaker}: {text}" if speaker else text
    item = lm.user_memory.add(content, user_id=user, session_id=session, created_at=at)
    return str(item.id)


def found(lm: LearningMachine, query: str, *, user: str = "alice", limit: int = 10) -> list[str]:
    return [item.id for item in lm.user_memory.search(query, user_id=user, limit=limit)]


def other_sessions(lm: LearningMachine, user: str = "alice") -> None:
    """Unrelated turns, so BM25 statistics and sessions look like a real history."""
    for n, text in enumerate(["The weather was lovely at the beach.", "Work has been busy."]):
        say(lm, text, user=user, session=f"other-{n}", at=DAY - timedelta(days=30 + n))


# --- the ranking features, end to end ----------------------------------------------------------


def test_neighbour_spread_finds_the_answer_next_to_the_question(lm: LearningMachine) -> None:
    other_sessions(lm)
    minute = timedelta(minutes=1)
    say(lm, "I adopted a dog last month!", speaker="Caroline")
    question = say(lm, "Lovely! What breed is he?", speaker="Melanie", at=DAY + minute)
    answer = say(lm, "A golden retriever, very playful.", speaker="Caroline", at=DAY + 2 * minute)

    results = found(lm, "Which breed is the dog she adopted?")
    assert answer in results[:3]  # it shares no word with the query: found through its neighbour
    assert results.index(question) < results.index(answer)

    no_spread = RankingConfig(neighbour_weights=(), context_weight=0)
    query = "Which breed is the dog she adopted?"
    hits = hybrid_search(lm.db, None, query, ALICE_MEMORIES, limit=10, config=no_spread)
    assert answer not in [hit.record.id for hit in hits]


def test_without_session_ids_items_recorded_close_together_are_neighbours(
    lm: LearningMachine,
) -> None:
    other_sessions(lm)
    minute = timedelta(minutes=1)
    say(lm, "I adopted a dog last month!", speaker="Caroline", session=None)
    question = say(
        lm, "Lovely! What breed is he?", speaker="Melanie", session=None, at=DAY + minute
    )
    answer = say(
        lm,
        "A golden retriever, very playful.",
        speaker="Caroline",
        session=None,
        at=DAY + 2 * minute,
    )
    # The same words an hour later: a new context, out of the spread's reach.
    later = say(lm, "A golden retriever, very playful.", session=None, at=DAY + 62 * minute)

    results = found(lm, "Which breed is the dog she adopted?")
    assert answer in results[:3]
    assert later not in results
    assert results.index(question) < results.index(answer)

    rows = lm.db.load_neighbours(
        ALICE_MEMORIES, [question], around=[question], gap=timedelta(minutes=30)
    )
    assert [row.id for row in rows][1:] == [question, answer]
    assert lm.db.load_neighbours(ALICE_MEMORIES, [question]) == [rows[1]]  # no gap: itself


def test_neighbours_follow_session_order_not_insertion_order(lm: LearningMachine) -> None:
    # Imported out of order: the answer is inserted first but said last.
    later = DAY + timedelta(minutes=5)
    answer = say(lm, "A golden retriever.", at=later)
    filler = say(lm, "Anyway.", at=DAY - timedelta(hours=1))
    question = say(lm, "What breed is your dog?", at=DAY)

    rows = lm.db.load_neighbours(ALICE_MEMORIES, [question])
    assert [row.id for row in rows] == [filler, question, answer]
    assert answer in found(lm, "dog breed")


def test_the_speaker_named_in_the_query_is_boosted(lm: LearningMachine) -> None:
    caroline = say(lm, "I paint sunsets on weekends.", session="a", speaker="Caroline")
    melanie = say(lm, "I paint sunsets on weekends.", session="b", speaker="Melanie")
    assert found(lm, "What does Melanie paint?")[:2] == [melanie, caroline]
    assert found(lm, "What does Caroline paint?")[:2] == [caroline, melanie]

    def scores(config: RankingConfig) -> dict[str, float]:
        query = "What does Melanie paint?"
        hits = hybrid_search(lm.db, None, query, ALICE_MEMORIES, limit=5, config=config, now=NOW)
        return {hit.record.id: hit.score for hit in hits}

    # The boost comes from the "Melanie: " of the text itself.
    boosted, plain = scores(RankingConfig()), scores(RankingConfig(subject_boost=0))
    assert boosted[melanie] / plain[melanie] == pytest.approx(1 + RankingConfig().subject_boost)
    assert boosted[caroline] == pytest.approx(plain[caroline])


def test_an_edited_speaker_is_seen_by_the_next_search(lm: LearningMachine) -> None:
    """Speakers are remembered by text (``hybrid._speaker``): an edit must move the boost."""
    first = say(lm, "I paint sunsets on weekends.", session="a", speaker="Caroline")
    second = say(lm, "I paint sunsets on weekends.", session="b", speaker="Melanie")
    assert found(lm, "What does Melanie paint?")[:2] == [second, first]
    lm.user_memory.update(first, "Melanie: I paint sunsets on weekends.", user_id="alice")
    lm.user_memory.update(second, "Caroline: I paint sunsets on weekends.", user_id="alice")
    assert found(lm, "What does Melanie paint?")[:2] == [first, second]


def test_search_reads_no_undocumented_metadata(lm: LearningMachine) -> None:
    # A "speaker" key in metadata is the app's own data: it must not change the ranking.
    tagged = lm.user_memory.add(
        "I paint sunsets on weekends.", user_id="alice", metadata={"speaker": "Melanie"}
    ).id
    plain = lm.user_memory.add("I paint sunsets on weekends.", user_id="alice").id
    hits = hybrid_search(lm.db, None, "What does Melanie paint?", ALICE_MEMORIES, limit=5, now=NOW)
    assert {hit.record.id: hit.score for hit in hits}[tagged] == pytest.approx(
        {hit.record.id: hit.score for hit in hits}[plain]
    )


def test_the_entity_of_an_entity_fact_is_its_subject(lm: LearningMachine) -> None:
    acme = lm.entity_memory.add_fact("Acme", "moved its office to Berlin", user_id="alice")
    globex = lm.entity_memory.add_fact("Globex", "moved its office to Berlin", user_id="alice")
    where = LearningFilter(
        store="entity_memory",
        scopes=[namespace_scope("global", "alice")],
        kinds=["fact", "event", "relation"],
    )
    query = "Where did Acme move its office?"

    def scores(config: RankingConfig) -> dict[str, float]:
        hits = hybrid_search(lm.db, None, query, where, limit=5, config=config, now=NOW)
        return {hit.record.id: hit.score for hit in hits}

    boosted, plain = scores(RankingConfig()), scores(RankingConfig(subject_boost=0))
    assert boosted[acme.id] / plain[acme.id] == pytest.approx(1.4)
    assert boosted[globex.id] == pytest.approx(plain[globex.id])


def test_a_date_in_the_query_boosts_memories_created_then(lm: LearningMachine) -> None:
    august = say(lm, "We cooked a big paella.", session="aug", at=datetime(2023, 8, 20, tzinfo=UTC))
    may = say(lm, "We cooked a big paella.", session="may", at=DAY)
    assert found(lm, "What did we cook on 7 May 2023?")[:2] == [may, august]
    assert found(lm, "What did we cook in August 2023?")[:2] == [august, may]


def test_now_anchors_relative_time_words(lm: LearningMachine) -> None:
    old = say(lm, "We cooked a big paella.", session="old", at=DAY - timedelta(days=60))
    recent = say(lm, "We cooked a big paella.", session="new", at=DAY - timedelta(days=3))
    for now, first in ((DAY, recent), (DAY - timedelta(days=55), old)):
        hits = hybrid_search(lm.db, None, "paella last week", ALICE_MEMORIES, limit=2, now=now)
        assert hits[0].record.id == first


# --- what a search may see -------------------------------------------------------------------


@pytest.mark.parametrize("embedder", [None, "hash"])
def test_other_users_rows_never_appear(db: SqlDb, embedder: str | None) -> None:
    lm = LearningMachine(db=db, user_memory=True, embedder=embedder)
    query = "Which hotel did we book in Lisbon for the conference?"
    mine = say(lm, "The conference is in Lisbon.", session="shared")
    # Bob's rows match every word, sit in the same session id right next to Alice's, and have
    # her query's exact vector: the best candidates and neighbours, if the scope leaked.
    theirs = [
        say(lm, query, user="bob", session="shared", at=DAY + timedelta(seconds=s)) for s in (1, 2)
    ]
    say(lm, "We booked the Hotel Lisboa for the Lisbon conference.", user="bob", session="b2")

    assert found(lm, query) == [mine]
    assert set(found(lm, query, user="bob")[:2]) == set(theirs)  # what would have leaked


def test_deleted_and_proposed_rows_never_appear(db: SqlDb, lm: LearningMachine) -> None:
    kept = say(lm, "The conference is in Lisbon.")
    gone = say(lm, "We booked the Hotel Lisboa for the Lisbon conference.", at=DAY + timedelta(1))
    lm.user_memory.delete(gone, user_id="alice")
    proposal = LearningRecord(
        id="proposed-1",
        store="user_memory",
        kind="memory",
        scope=user_scope("alice"),
        content={"content": "Which hotel in Lisbon? We booked the Hotel Lisboa."},
        text="Which hotel in Lisbon? We booked the Hotel Lisboa.",
        user_id="alice",
        session_id="s1",
        status="proposed",
        created_at=DAY + timedelta(seconds=1),
    )
    db.apply([Create(proposal)])

    assert found(lm, "Which hotel did we book in Lisbon?") == [kept]
    assert lm.db.load_neighbours(ALICE_MEMORIES, [kept, gone, "proposed-1"]) == [
        RankingRow(kept, "s1", DAY, None, user_scope("alice"), "The conference is in Lisbon.")
    ]


def test_vectors_fuse_in_with_an_embedder(db: SqlDb) -> None:
    with_vectors = LearningMachine(db=db, user_memory=True, embedder=HashEmbedder())
    text_only = LearningMachine(db=db, user_memory=True)
    # Its only words in common with the query are stopwords, which full-text drops: only the
    # vectors (which hash every word and word pair) can find it.
    promise = say(with_vectors, "I will be there for you.", session="a")
    say(with_vectors, "Tomorrow the shop opens late.", session="b")
    query = "will you be there for me tomorrow"
    assert promise not in found(text_only, query)
    assert promise in found(with_vectors, query)


def test_vectors_of_another_embedder_are_skipped(db: SqlDb) -> None:
    small = LearningMachine(db=db, user_memory=True, embedder=HashEmbedder(64))
    large = LearningMachine(db=db, user_memory=True, embedder=HashEmbedder(256))
    say(small, "I will be there for you.", session="a")
    kept = say(large, "I will be there for you.", session="b")
    assert found(large, "will you be there for me tomorrow") == [kept]


@pytest.mark.parametrize("query", ["", "   ", "?!", "— … —"])
@pytest.mark.parametrize("embedder", [None, "hash"])
def test_a_query_without_a_searchable_word_finds_nothing(
    db: SqlDb, query: str, embedder: str | None
) -> None:
    lm = LearningMachine(db=db, user_memory=True, embedder=embedder)
    say(lm, "Anything at all?! — …")
    assert found(lm, query) == []


# --- the read methods the pipeline uses --------------------------------------------------------


def test_text_scores_are_search_texts_ids_and_scores(lm: LearningMachine) -> None:
    other_sessions(lm)
    say(lm, "We went to the beach in July.")
    say(lm, "Swimming at the beach, then work.", user="bob")
    hits = lm.db.search_text("beach work", ALICE_MEMORIES)
    assert lm.db.search_text_scores("beach work", ALICE_MEMORIES) == [
        (hit.record.id, hit.score) for hit in hits
    ]
    assert len(hits) == 3
    assert lm.db.search_text_scores("beach work", ALICE_MEMORIES, limit=1) == [
        (hits[0].record.id, hits[0].score)
    ]
    assert lm.db.search_text_scores("?!", ALICE_MEMORIES) == []
    assert lm.db.search_text_scores("beach", ALICE_MEMORIES, limit=0) == []


def test_load_neighbours_reads_whole_sessions_within_the_filter(lm: LearningMachine) -> None:
    minute = timedelta(minutes=1)
    a1 = say(lm, "one", session="a", speaker="Caroline")
    a2 = say(lm, "two", session="a", at=DAY + minute)
    b1 = say(lm, "three", session="b", at=DAY - minute)
    c1 = say(lm, "four", session="c")
    loose = lm.user_memory.add("no session", user_id="alice", created_at=DAY + 2 * minute).id
    say(lm, "bob's", user="bob", session="a", at=DAY + minute / 2)

    rows = lm.db.load_neighbours(ALICE_MEMORIES, [a2, loose, "unknown"])
    scope = user_scope("alice")
    assert rows == [
        RankingRow(a1, "a", DAY, None, scope, "Caroline: one"),
        RankingRow(a2, "a", DAY + minute, None, scope, "two"),
        RankingRow(loose, None, DAY + 2 * minute, None, scope, "no session"),
    ]
    assert {row.id for row in lm.db.load_neighbours(ALICE_MEMORIES, [b1, c1])} == {b1, c1}
    assert lm.db.load_neighbours(ALICE_MEMORIES, []) == []


def test_the_ids_filter_narrows_any_read(lm: LearningMachine) -> None:
    first, second = say(lm, "one"), say(lm, "two", user="bob")
    assert [r.id for r in lm.db.list_learnings(replace(ALICE_MEMORIES, ids=[first, second]))] == [
        first
    ]
    assert lm.db.count_learnings(replace(ALICE_MEMORIES, ids=[])) == 0


def test_hybrid_search_returns_full_rows_best_first(lm: LearningMachine) -> None:
    other_sessions(lm)
    memory = say(lm, "Alice's favourite tea is genmaicha.")
    hits = hybrid_search(lm.db, None, "favourite tea", ALICE_MEMORIES, limit=5, now=NOW)
    assert [hit.record.id for hit in hits] == [memory]
    record = hits[0].record
    assert record.content == {"content": "Alice's favourite tea is genmaicha."}
    assert hybrid_search(lm.db, None, "favourite tea", ALICE_MEMORIES, limit=0) == []


QUERY = "favourite tea"


@pytest.mark.parametrize("step", ["search_text_scores", "load_texts"])
def test_the_query_is_embedded_while_the_full_text_step_runs(
    db: SqlDb, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    """With an embedder, the full-text step does not wait for the query's embedding (a
    model's forward pass and a database query use different cores): neither the full-text
    candidates nor the texts query coverage reads of them (they depend on those candidates
    only); the answer is what ``hybrid_search`` gives for the same vector."""
    import asyncio
    import threading

    from kern.search.embedders import Vector

    stepped = threading.Event()

    class WaitsForTheStep(HashEmbedder):
        async def embed(self, texts: Sequence[str]) -> list[Vector]:
            if texts == [QUERY]:  # the query, not a stored memory
                assert await asyncio.to_thread(stepped.wait, 10), f"{step} waited"
            return await super().embed(texts)

    lm = LearningMachine(db=db, user_memory=True, embedder=WaitsForTheStep())
    other_sessions(lm)
    tea = say(lm, "Alice's favourite tea is genmaicha.")
    read = getattr(db, step)

    def reads(*args: Any, **kwargs: Any) -> Any:
        stepped.set()
        return read(*args, **kwargs)

    monkeypatch.setattr(db, step, reads)
    items = lm.user_memory.search(QUERY, user_id="alice", limit=5)
    assert items[0].id == tea
    (vector,) = asyncio.run(HashEmbedder().embed([QUERY]))
    where = lm.user_memory._where(lm.user_memory._context("alice"), kinds=["memory"])
    expected = hybrid_search(db, vector, QUERY, where, limit=5)
    assert [item.id for item in items] == [hit.record.id for hit in expected]


def test_a_question_spread_over_adjacent_turns_ranks_their_passage_first(
    lm: LearningMachine,
) -> None:
    """Query coverage (``RankingConfig.coverage_weight``): the turn saying where ("pottery")
    sits two turns before the one saying who and what ("kids", "make"); together they hold
    all but one word of the question, while two stray sessions repeat "pottery workshop"."""
    other_sessions(lm)
    minute = timedelta(minutes=1)
    filler = []
    for n in range(2):
        at = DAY - timedelta(days=10 + n)
        text = "Pottery workshop, pottery workshop, pottery workshop!"
        say(lm, text, speaker="Caroline", session=f"stray-{n}", at=at)
        filler.append(say(lm, "Sounds nice.", speaker="Melanie", session=f"stray-{n}", at=at))
    where = say(lm, "We went to the pottery class on Saturday.", speaker="Melanie")
    say(lm, "And?", speaker="Caroline", at=DAY + minute)
    what = say(
        lm,
        "The kids loved to make little bowls and cups for their grandma, who was visiting us"
        " from far away that weekend.",
        speaker="Melanie",
        at=DAY + 2 * minute,
    )

    query = "What did the kids make at the pottery workshop?"
    results = found(lm, query)
    assert results[0] == what
    assert all(results.index(where) < results.index(other) for other in filler)

    uncovered = RankingConfig(coverage_weight=0)
    hits = hybrid_search(lm.db, None, query, ALICE_MEMORIES, limit=10, config=uncovered)
    assert [hit.record.id for hit in hits][:4] != results[:4]
    if lm.db.engine.dialect.name == "sqlite":  # its BM25 ranks the stray turns first
        assert hits[0].record.id != what


def test_load_texts_reads_only_rows_the_filter_admits(lm: LearningMachine) -> None:
    mine = say(lm, "Mine: the pottery class.")
    theirs = say(lm, "Theirs: the pottery class.", user="bob")
    assert lm.db.load_texts(ALICE_MEMORIES, [mine, theirs, "no-such-id"]) == {
        mine: "Mine: the pottery class."
    }
    assert lm.db.load_texts(ALICE_MEMORIES, []) == {}
