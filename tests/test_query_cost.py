"""A long message is a cheap query: terms are de-duplicated in one pass and capped, and search
reads the message's head and end (its cost is measured in benchmarks/query_cost.py)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event

from kern.db.base import LearningFilter
from kern.db.sqlite import SqliteDb
from kern.learn import LearningMachine
from kern.learn.scope import user_scope
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


def test_a_read_by_ids_looks_the_ids_up_instead_of_walking_the_scope(sqlite_db: SqliteDb) -> None:
    """Search reads its top rows by id. SQLite has no statistics and took the (store, scope,
    status, created_at) index, testing every row of the scope: ~6 ms for 10 of 1,000."""
    lm = LearningMachine(db=sqlite_db, user_memory=True)
    items = [lm.user_memory.add(f"memory {n}", user_id="alice") for n in range(3)]
    statements: list[tuple[str, Any]] = []

    def record(*args: Any) -> None:
        statements.append((args[2], args[3]))  # the statement and its parameters

    event.listen(sqlite_db.engine, "before_cursor_execute", record)
    where = LearningFilter(store="user_memory", scopes=[user_scope("alice")], ids=[items[1].id])
    assert [row.id for row in sqlite_db.list_learnings(where)] == [items[1].id]
    event.remove(sqlite_db.engine, "before_cursor_execute", record)
    ((statement, parameters),) = [s for s in statements if "FROM learnings" in s[0]]
    with sqlite_db.engine.connect() as conn:
        plan = " ".join(
            row[-1] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)
        )
    assert "USING INDEX sqlite_autoindex_learnings" in plan  # the unique index of ``id``
    assert "ix_learnings_store_scope_status_created_at" not in plan
