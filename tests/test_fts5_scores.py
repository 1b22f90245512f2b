"""SQLite's scoped full-text ranking computed outside FTS5 (``kern.db._fts5``): FTS5's own
tokens and ``bm25()`` scores, bit for bit, and never a stale document count (issue 13)."""

from __future__ import annotations

import itertools
import random
import sqlite3
from contextlib import closing
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

import kern.db.sqlite as sqlite_module
from kern.db._fts5 import fts5_tokens, porter
from kern.db.base import Create, LearningFilter, LearningRecord, SetStatus, Update
from kern.db.sqlite import SqliteDb

ALICE, BOB = "user:alice", "user:bob"

_SUFFIXES = (
    "ational tional enci anci izer logi bli alli entli eli ousli ization ation ator alism "
    "iveness fulness ousness aliti iviti biliti ical ness icate iciti ful ative alize al ance "
    "ence er ic able ible ant ement ment ent ion sion tion ou ism ate iti ous ive ize eed ed "
    "ing at bl iz sses ies ss s y ly ll e"
)
_ENGLISH = (
    "caresses ponies ties caress cats feed agreed plastered bled motoring sing conflated "
    "troubled sized hopping tanned falling hissing fizzed failing filing happy sky "
    "relational conditional rational valenci hesitanci digitizer conformabli radicalli "
    "differentli vileli analogousli vietnamization predication operator feudalism "
    "decisiveness hopefulness callousness formaliti sensitiviti sensibiliti triplicate "
    "formative formalize electriciti electrical hopeful goodness revival allowance inference "
    "airliner gyroscopic adjustable defensible irritant replacement adjustment dependent "
    "adoption homologou communism activate angulariti homologous effective bowdlerize probate "
    "rate cease controll roll aed ied yed eed oed by bye yyy ays"
)


def _fts5_stems(words: list[str]) -> list[str]:
    """What FTS5's ``porter unicode61`` tokenizer makes of each word, one token each."""
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE VIRTUAL TABLE t USING fts5(x, tokenize='porter unicode61')")
    conn.execute("CREATE VIRTUAL TABLE v USING fts5vocab(t, instance)")
    conn.executemany("INSERT INTO t (rowid, x) VALUES (?, ?)", enumerate(words, 1))
    stems = {doc: term for term, doc in conn.execute("SELECT term, doc FROM v")}
    conn.close()
    return [stems[i] for i in range(1, len(words) + 1)]


def _fts5_text_tokens(texts: list[str]) -> list[list[str]]:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE VIRTUAL TABLE t USING fts5(x, tokenize='porter unicode61')")
    conn.execute("CREATE VIRTUAL TABLE v USING fts5vocab(t, instance)")
    conn.executemany("INSERT INTO t (rowid, x) VALUES (?, ?)", enumerate(texts, 1))
    tokens: list[list[tuple[int, str]]] = [[] for _ in texts]
    for term, doc, offset in conn.execute("SELECT term, doc, offset FROM v"):
        tokens[doc - 1].append((offset, term))
    conn.close()
    return [[term for _, term in sorted(found)] for found in tokens]


def test_porter_stems_as_fts5_does() -> None:
    """Every short word over letters that steer the algorithm (vowels, y, doubled and
    special consonants), suffixes stacked at random, and English words of each rule."""
    rng = random.Random(13)
    suffixes = _SUFFIXES.split()
    letters = "aeiouydslbztngcrw"
    words = {"".join(c) for n in (3, 4) for c in itertools.product(letters[:12], repeat=n)}
    words |= {
        "".join(rng.choice(letters) for _ in range(rng.randint(0, 5)))
        + "".join(rng.choice(suffixes) for _ in range(rng.randint(1, 3)))
        for _ in range(40_000)
    }
    words |= set(_ENGLISH.split()) | {"a" * 64 + "ing", "b" * 70, "at", "ed"}
    ordered = sorted(words)
    assert [porter(w) for w in ordered] == _fts5_stems(ordered)


def test_tokens_are_fts5s_or_none() -> None:
    texts = [
        "Caroline's DOG, running 3 miles... (again) at 10:30pm!",
        "tabs\tnew\nlines_and-dashes/slashes x1y2 A",
        "I\u2019m sure \u201cquoted\u201d \u2014 dash \u00a0nbsp \u2026 \U0001f600 emoji",
        "x" * 80 + "ing " + "Y" * 3,
    ]
    assert [fts5_tokens(t) for t in texts] == _fts5_text_tokens(texts)
    # Letters, digits and marks outside ASCII are folded by FTS5's own tables: not vouched for.
    for text in ("Caf\u00e9", "nai\u0308ve", "\u0663 items", "\u4e2d\u6587", "\ue000"):
        assert fts5_tokens(text) is None


@pytest.fixture
def ranked_outside(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Each scoped search records whether it was ranked outside FTS5 (True) or by the
    ``bm25()`` statement (False)."""
    used: list[bool] = []
    method = SqliteDb._scores_outside_fts5

    def spy(self: SqliteDb, *args: Any) -> Any:
        result = method(self, *args)
        used.append(result is not None)
        return result

    monkeypatch.setattr(SqliteDb, "_scores_outside_fts5", spy)
    return used


@pytest.fixture
def outside(monkeypatch: pytest.MonkeyPatch, ranked_outside: list[bool]) -> list[bool]:
    """As ``ranked_outside``, with every table counted as large."""
    monkeypatch.setattr(sqlite_module, "_OUTSIDE_MIN_ROWS", 0)
    return ranked_outside


def rec(key: str, text: str, scope: str = ALICE, status: str = "active") -> LearningRecord:
    return LearningRecord(
        id=key,
        store="user_memory",
        kind="memory",
        scope=scope,
        content={"content": text},
        text=text,
        user_id=scope.split(":")[1],
        content_hash=f"hash-{key}",
        status=status,
    )


def same_as_bm25(db: SqliteDb, query: str, where: LearningFilter, limit: int = 500) -> bool:
    """``search_text_scores`` gives what the ``bm25()`` statement behind ``search_text``
    gives: the same rows, order and scores, bit for bit."""
    fts5 = [(hit.record.id, hit.score) for hit in db.search_text(query, where, limit=limit)]
    return db.search_text_scores(query, where, limit=limit) == fts5


_WORDS = (
    "apple apples pear running runs run cat dog the big red tree house 1999 don't "
    "relational relate connection connected happy happiness"
)


def test_scores_are_bm25_score_for_score(tmp_path: Path, outside: list[bool]) -> None:
    """Stems, repeated words, several scopes, other statuses, limits."""
    rng = random.Random(13)
    words = _WORDS.split()
    db = SqliteDb(tmp_path / "kern.db")
    scopes = [f"user:u{n}" for n in range(5)]
    db.apply(
        [
            Create(
                rec(
                    f"r{i}",
                    " ".join(rng.choice(words) for _ in range(rng.randint(1, 30))),
                    scope=scopes[i % 5],
                    status="active" if i % 9 else "proposed",
                )
            )
            for i in range(400)
        ]
    )
    for n in range(120):
        query = " ".join(rng.choice(words) for _ in range(rng.randint(1, 6)))
        where = LearningFilter(scopes=scopes[n % 5 : n % 5 + 1 + n % 2])
        assert same_as_bm25(db, query, where), query
        assert same_as_bm25(db, query, replace(where, statuses=("proposed",)), limit=3), query
    assert outside.count(False) == 1  # the first search: bm25() itself (see below)
    db.close()


def test_a_write_between_two_searches_changes_the_answer(
    tmp_path: Path, outside: list[bool]
) -> None:
    """The document counts remembered between searches belong to one state of the index: a
    write in another scope, by another connection to the file, changes the next searches'
    scores exactly as it changes ``bm25()``'s. Inserts alone bring the counts up to date by
    the new rows' tokens; after any other write the first search is ranked by ``bm25()``
    itself (counting would cost as much, and is worth it only if the index stays as it is)
    and the next one counts anew and remembers."""
    db = SqliteDb(tmp_path / "kern.db")
    other = SqliteDb(tmp_path / "kern.db")
    mine = LearningFilter(scopes=[ALICE])

    def twice(counts_kept: bool) -> list[tuple[str, float]]:
        first = db.search_text_scores("jazz blues", mine)
        assert db.search_text_scores("jazz blues", mine) == first
        assert same_as_bm25(db, "jazz blues", mine)
        assert outside[-3:] == [counts_kept, True, True]  # bm25() or not; counted; remembered
        return first

    db.apply([Create(rec("a1", "jazz concert")), Create(rec("a2", "jazz and blues"))])
    db.apply([Create(rec(f"b{i}", "rock", scope=BOB)) for i in range(9)])
    before = twice(counts_kept=False)  # nothing counted yet
    other.apply([Create(rec(f"j{i}", "jazz", scope=BOB)) for i in range(4)])
    after = twice(counts_kept=True)  # inserts: the counts brought up to date
    assert after != before
    other.apply([Update("j0", {"content": "blues"}, "blues", "h")])
    assert twice(counts_kept=False) != after
    other.apply([SetStatus("a2", "deleted", "delete")])  # the filter's, not the index's
    assert [key for key, _ in twice(counts_kept=True)] == ["a1"]
    other.close()
    db.close()


def test_inserts_between_searches_keep_the_counts_exact(
    tmp_path: Path, outside: list[bool], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A table that grows between every two searches (memories do) is ranked outside FTS5
    from the second search on, score for score ``bm25()``'s: new rows holding the query's
    words, in the searched scope or another, with letters outside ASCII. A write that is not
    only inserts (a row deleted by hand, a text updated, a status changed next to an insert:
    nothing else tells the first two from an insert's tick), or more rows
    than ``_ADVANCE_MAX_ROWS``, leaves the counts behind: ``bm25()`` ranks, then they are
    counted anew."""
    rng = random.Random(7)
    words = [*_WORDS.split(), "caf\u00e9", "na\u00efve"]
    db = SqliteDb(tmp_path / "kern.db")
    other = SqliteDb(tmp_path / "kern.db")
    scopes = [ALICE, BOB, "user:carol"]

    def text() -> str:
        return " ".join(rng.choice(words) for _ in range(rng.randint(1, 12)))

    db.apply([Create(rec(f"r{i}", text(), scope=scopes[i % 3])) for i in range(60)])
    queries = ["apple run", "caf\u00e9 tree", "happy relational dog", "pear 1999 red"]
    for n in range(60, 180):  # a row written before every search, from the first one on
        writer = (db, other)[n % 2]
        writer.apply([Create(rec(f"r{n}", text(), scope=rng.choice(scopes)))])
        query, where = queries[n % 4], LearningFilter(scopes=[rng.choice(scopes)])
        assert same_as_bm25(db, query, where), (n, query)
    # bm25() for the first (nothing counted yet), then counted and brought up to date.
    assert outside == [False] + [True] * 119

    def first_search_after(write: Any) -> bool:
        write()
        assert same_as_bm25(db, "apple run", LearningFilter(scopes=[BOB]))
        return outside[-1]

    def insert_and_delete_by_hand() -> None:  # as another program would
        other.apply([Create(rec("new", "apple", scope=BOB))])
        with closing(sqlite3.connect(tmp_path / "kern.db")) as conn, conn:
            conn.execute(
                "DELETE FROM learnings WHERE seq = (SELECT min(seq) FROM learnings "
                "WHERE text LIKE '%apple%')"
            )

    def text_updated() -> None:
        other.apply([Update("new", {"content": "apple run apple"}, "apple run apple", "h1")])

    def insert_and_set_status() -> None:
        other.apply(
            [Create(rec("x1", "apple run", scope=BOB)), SetStatus("new", "deleted", "delete")]
        )

    for write in (insert_and_delete_by_hand, text_updated, insert_and_set_status):
        assert first_search_after(write) is False, write
        assert first_search_after(lambda: None) is True, write
    monkeypatch.setattr(sqlite_module, "_ADVANCE_MAX_ROWS", 2)
    many = [Create(rec(f"y{i}", "run")) for i in range(3)]
    assert first_search_after(lambda: other.apply(many)) is False
    other.close()
    db.close()


def test_text_outside_ascii_is_tokenized_by_fts5_itself(
    tmp_path: Path, outside: list[bool], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A word or a candidate row with letters outside ASCII is tokenized by FTS5's own
    tokenizer (a temporary table): the same scores. Past ``_OUTSIDE_MAX_UNSURE`` such texts,
    or ``_OUTSIDE_MAX_PAIRS`` matches, the ``bm25()`` statement ranks."""
    db = SqliteDb(tmp_path / "kern.db")
    mine = LearningFilter(scopes=[ALICE])
    assert db.search_text_scores("latte", mine) == [] and outside == [False]  # no index yet
    texts = [
        "caf\u00e9 latte",
        "CAF\u00c9 latte latte art",
        "latte art at Z\u00fcrich",
        "na\u00efve latte \u4e2d\u6587 art",
        "flat white",
        "Cafe latte",
    ]
    db.apply([Create(rec(f"a{i}", text)) for i, text in enumerate(texts)])
    db.apply([Create(rec(f"b{i}", "caf\u00e9 art", scope=BOB)) for i in range(3)])
    db.search_text_scores("latte", mine)  # the state a search saw: worth counting from now
    for query in ("caf\u00e9", "latte", "cafe art", "z\u00fcrich latte", "\u4e2d\u6587", "white"):
        assert same_as_bm25(db, query, mine) and outside[-1] is True, query
    monkeypatch.setattr(sqlite_module, "_OUTSIDE_MAX_UNSURE", 1)
    assert same_as_bm25(db, "latte", mine) and outside[-1] is False
    monkeypatch.setattr(sqlite_module, "_OUTSIDE_MAX_PAIRS", 1)
    assert same_as_bm25(db, "white art", mine) and outside[-1] is False
    db.close()


def test_a_small_table_is_ranked_by_bm25_itself(tmp_path: Path, ranked_outside: list[bool]) -> None:
    """Below ``_OUTSIDE_MIN_ROWS`` rows a word's walk costs little: ``bm25()`` ranks."""
    db = SqliteDb(tmp_path / "kern.db")
    db.apply([Create(rec("a1", "jazz concert"))])
    assert same_as_bm25(db, "jazz", LearningFilter(scopes=[ALICE]))
    assert ranked_outside == [False]
    db.close()
