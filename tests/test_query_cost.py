"""A long message is a cheap query: terms are de-duplicated in one pass and capped, and search
reads the message's head and end (its cost is measured in benchmarks/query_cost.py)."""

from __future__ import annotations

from kern.db.sqlite import SqliteDb
from kern.learn import LearningMachine
from kern.limits import MAX_QUERY_CHARS, MAX_QUERY_TERMS
from kern.search.query import query_terms


def distinct_words(n: int) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    return [
        letters[i % 26] + letters[i // 26 % 26] + letters[i // 676 % 26] + "x" for i in range(n)
    ]


def test_query_terms_are_capped_in_first_seen_order() -> None:
    words = distinct_words(14_000)
    terms = query_terms(" ".join(words))
    assert terms == words[:MAX_QUERY_TERMS]
    assert len(query_terms(" ".join(words), limit=None)) == 14_000  # callers may ask for all
    assert query_terms("who am I?") == ["who", "am", "i"]  # all stopwords: kept


def test_search_reads_the_head_and_the_end_of_a_long_message(sqlite_db: SqliteDb) -> None:
    lm = LearningMachine(db=sqlite_db, user_memory=True)
    lm.user_memory.add("Alice keeps a zebracorn", user_id="alice")
    lm.user_memory.add("Alice plays the theremin", user_id="alice")
    filler = " ".join(distinct_words(20_000))
    assert len(filler) > 20 * MAX_QUERY_CHARS
    question = filler + " What about my zebracorn?"
    hits = lm.user_memory.search(question, user_id="alice")
    # The match first; the other memory, recorded in the same minutes, follows as its context.
    assert hits[0].content == "Alice keeps a zebracorn"
