"""FTS5's ``bm25()`` for a scoped SQLite search, computed outside FTS5 from bounded reads.

Why: ``bm25()`` counts each query word's rows over the whole table (its inverse document
frequency) by walking every row that holds the word, on every search and whatever the scope:
~60 ns a row, ~45 ms for a word in 750,000 of 1M rows, while the scoped ``MATCH`` itself takes
under a millisecond (benchmarks/scale.md). Here the same formula is computed from its inputs:

- which of the scope's rows hold each word: one ``MATCH`` per word, bounded by the scope;
- each word's whole-table document count: read once per state of the index from FTS5's own
  vocabulary (``fts5vocab``, the same walk ``bm25()`` does) and remembered
  (``DocumentCounts``);
- each candidate row's term frequencies: its text tokenized here exactly as FTS5's
  ``porter unicode61`` tokenizer does (``fts5_tokens``: ASCII letters and digits; a text
  with other letters goes to FTS5's own tokenizer, ``kern.db.sqlite``), checked against
  FTS5's own token count of the row (``learnings_fts_docsize``);
- the table's row count and average length from FTS5's averages record;

then ``fts5Bm25Function``'s arithmetic in its order, so the scores are ``bm25()``'s bit for bit
(tests compare them). Nothing remembered can be stale: the document counts are keyed by FTS5's
structure and averages records, which every committed change to the index rewrites, and are
read in the same read transaction as the matches. When the only writes since are inserts, the
counts are brought up to date by the inserted rows' own tokens (``DocumentCounts.advance``)
rather than counted again: a table that grows between every two searches, as memories do, is
then ranked here too.
"""

from __future__ import annotations

import math
import re
import threading
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache

__all__ = ["DocumentCounts", "bm25_scores", "fts5_tokens", "porter", "stem", "varints"]

#: ``bm25()``'s constants (``fts5Bm25Function``).
K1 = 1.2
B = 0.75

_ASCII_TOKEN = re.compile(r"[A-Za-z0-9]+")

#: Tokens longer than this (bytes) or shorter than 3 are not stemmed (FTS5_PORTER_MAX_TOKEN).
_PORTER_MAX = 64


def fts5_tokens(text: str) -> list[str] | None:
    """The tokens FTS5's ``porter unicode61`` tokenizer makes of ``text``, in order, or
    ``None`` when this function cannot be sure of them.

    unicode61 folds ASCII letters to lower case and keeps runs of letters and digits; every
    other ASCII character separates. Outside ASCII, punctuation, symbols, spaces and controls
    separate too (Unicode categories P*, S*, Z*, C* but private use): they are read as
    separators here. A letter, digit, mark or private-use character outside ASCII is folded
    by tables of FTS5's own (case, diacritics) that are not reproduced here: ``None``.
    """
    if not text.isascii():
        for char in text:
            if ord(char) > 127:
                category = unicodedata.category(char)
                if category[0] in "LNM" or category == "Co":
                    return None
    return [stem(token) for token in _ASCII_TOKEN.findall(text)]


@lru_cache(maxsize=65_536)
def stem(token: str) -> str:
    """``porter`` of a token as it stands in a text, folded to lower case (remembered: texts
    repeat words, and stemming costs more than the lookup; one cache for this module's
    tokenizer and search's query coverage)."""
    return porter(token.lower())


def porter(token: str) -> str:
    """FTS5's Porter stemmer (``fts5PorterCb``) on one lower-case ASCII token.

    It is the original Porter algorithm as FTS5 writes it, quirks included: ``y`` is a vowel
    after a consonant while measuring and anywhere but first in ``*v*``; of the suffixes a step
    lists for the same second-to-last letter, only the first that the word ends with (and is
    longer than) is tried, and its condition decides; a step with a one-letter word does
    nothing.
    """
    if len(token) > _PORTER_MAX or len(token) < 3:
        return token
    word = _step1a(token)
    word, removed = _apply(_STEP1B, word)
    if removed:
        word, added = _apply(_STEP1B2, word)
        if not added:
            last = word[-1]
            if not _vowel(last, False) and last not in "lsz" and word[-2:-1] == last:
                word = word[:-1]
            elif _m_eq1(word) and _cvc(word):
                word += "e"
    if word[-1] == "y" and _has_vowel(word[:-1]):
        word = word[:-1] + "i"
    word = _apply(_STEP2, word)[0]
    word = _apply(_STEP3, word)[0]
    word = _apply(_STEP4, word)[0]
    if word[-1] == "e" and (_m_gt1(word[:-1]) or (_m_eq1(word[:-1]) and not _cvc(word[:-1]))):
        word = word[:-1]
    if len(word) > 1 and word.endswith("ll") and _m_gt1(word[:-1]):
        word = word[:-1]
    return word


def _vowel(char: str, y_is_vowel: bool) -> bool:
    return char in "aeiou" or (y_is_vowel and char == "y")


def _vc(stem: str, after_consonant: bool) -> int:
    """The length of ``stem``'s first vowels-then-consonant run (``fts5PorterGobbleVC``):
    where the next measure would start, or 0 when there is none."""
    consonant = after_consonant
    i, n = 0, len(stem)
    while i < n:
        consonant = not _vowel(stem[i], consonant)
        if not consonant:
            break
        i += 1
    i += 1
    while i < n:
        consonant = not _vowel(stem[i], consonant)
        if consonant:
            return i + 1
        i += 1
    return 0


def _m_gt0(stem: str) -> bool:
    return _vc(stem, False) > 0


def _m_gt1(stem: str) -> bool:
    n = _vc(stem, False)
    return n > 0 and _vc(stem[n:], True) > 0


def _m_eq1(stem: str) -> bool:
    n = _vc(stem, False)
    return n > 0 and _vc(stem[n:], True) == 0


def _m_gt1_s_or_t(stem: str) -> bool:
    return stem[-1:] in ("s", "t") and _m_gt1(stem)


def _cvc(stem: str) -> bool:
    """Porter's ``*o``: consonant, vowel, consonant at the end, the last not w, x or y."""
    if stem[-1] in "wxy":
        return False
    mask, consonant = 0, False
    for char in stem:
        consonant = not _vowel(char, consonant)
        mask = (mask << 1) + consonant
    return (mask & 7) == 5


def _has_vowel(stem: str) -> bool:
    """Porter's ``*v*`` as FTS5 tests it: ``y`` is a vowel anywhere but first."""
    return any(_vowel(char, i > 0) for i, char in enumerate(stem))


#: A suffix rule: ``(suffix, replacement, condition on the stem, reports a change)``.
_Rule = tuple[str, str, Callable[[str], bool], bool]


def _rules(*rules: _Rule) -> dict[str, list[_Rule]]:
    """Suffix rules grouped by their second-to-last letter, in the order they are tried
    (FTS5 dispatches on that letter, then tries its suffixes in turn)."""
    groups: dict[str, list[_Rule]] = {}
    for rule in rules:
        groups.setdefault(rule[0][-2], []).append(rule)
    return groups


def _apply(rules: dict[str, list[_Rule]], word: str) -> tuple[str, bool]:
    """The first rule of ``word``'s group whose suffix ``word`` ends with and is longer than,
    applied if its condition holds: the word, and whether a rule that reports changes ran."""
    for suffix, replacement, condition, changes in rules.get(word[-2:-1], ()):
        if len(word) > len(suffix) and word.endswith(suffix):
            stem = word[: -len(suffix)]
            if condition(stem):
                return stem + replacement, changes
            return word, False
    return word, False


def _step1a(word: str) -> str:
    if word[-1] == "s":
        if word[-2] == "e":
            n = len(word)
            if (n > 4 and word[-4:-2] == "ss") or (n > 3 and word[-3] == "i"):
                return word[:-2]
            return word[:-1]
        if word[-2] != "s":
            return word[:-1]
    return word


def _always(stem: str) -> bool:
    return True


def _step(condition: Callable[[str], bool], *pairs: str) -> dict[str, list[_Rule]]:
    """A step whose rules share ``condition``: ``pairs`` is suffix, replacement, ..."""
    return _rules(*((s, r, condition, False) for s, r in zip(pairs[::2], pairs[1::2], strict=True)))


_STEP1B = _rules(
    ("eed", "ee", _m_gt0, False), ("ed", "", _has_vowel, True), ("ing", "", _has_vowel, True)
)
_STEP1B2 = _rules(
    ("at", "ate", _always, True), ("bl", "ble", _always, True), ("iz", "ize", _always, True)
)
# fmt: off
_STEP2 = _step(
    _m_gt0,
    "ational", "ate", "tional", "tion", "enci", "ence", "anci", "ance", "izer", "ize",
    "logi", "log", "bli", "ble", "alli", "al", "entli", "ent", "eli", "e", "ousli", "ous",
    "ization", "ize", "ation", "ate", "ator", "ate", "alism", "al", "iveness", "ive",
    "fulness", "ful", "ousness", "ous", "aliti", "al", "iviti", "ive", "biliti", "ble",
)
_STEP3 = _step(
    _m_gt0,
    "ical", "ic", "ness", "", "icate", "ic", "iciti", "ic", "ful", "", "ative", "",
    "alize", "al",
)
_STEP4 = _rules(
    *((s, "", _m_gt1, False) for s in ("al", "ance", "ence", "er", "ic", "able", "ible", "ant",
                                       "ement", "ment", "ent")),
    ("ion", "", _m_gt1_s_or_t, False),
    *((s, "", _m_gt1, False) for s in ("ou", "ism", "ate", "iti", "ous", "ive", "ize")),
)
# fmt: on


def varints(blob: bytes) -> list[int]:
    """SQLite varints as FTS5 writes its records: 7 bits a byte, the high bit set on all but
    the last byte of a value (values below 2**56, which every count here is)."""
    values, value = [], 0
    for byte in blob:
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            values.append(value)
            value = 0
    return values


class DocumentCounts:
    """Whole-table document counts of tokens, remembered for one state of the index.

    ``state`` is FTS5's averages and structure records as read in the caller's transaction:
    a committed insert, update or delete anywhere (any connection, any process) rewrites
    them, and every remembered count is dropped with the old state, never served for the new
    one, unless ``advance`` brings the counts to the new state (inserts only). ``writes`` is
    what the caller needs to tell that: the table's write counter and highest ``seq``, read
    in the same transaction as ``state``. Thread-safe; at most ``MAX_REMEMBERED`` tokens.

    Counting a token costs what ``bm25()`` costs (the same walk of its rows), so it pays only
    if the counts last: ``sight`` says so when the state is the counts' own (no write since
    the previous search, or inserts they were brought up to date by). A table rewritten
    between every two searches is then ranked by ``bm25()`` itself, at its own cost, not
    counted in vain.
    """

    MAX_REMEMBERED = 100_000

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state: bytes = b""
        self._writes: tuple[int, int] = (0, 0)
        self._counts: dict[str, int] = {}

    def behind(self, state: bytes) -> tuple[bytes, tuple[int, int]] | None:
        """The counts' own state and ``writes`` when they are of a state other than
        ``state`` (one ``advance`` might bring them to); ``None`` when they are ``state``'s or
        of none yet."""
        with self._lock:
            if not self._state or state == self._state:
                return None
            return self._state, self._writes

    def advance(
        self, old: bytes, new: bytes, writes: tuple[int, int], inserted: Iterable[set[str]]
    ) -> None:
        """The counts of ``old`` brought to ``new``, which differs from it by the rows
        ``inserted`` alone (each row's set of tokens); nothing if the counts are no longer
        ``old``'s (another search moved them meanwhile)."""
        with self._lock:
            if self._state != old:
                return
            counts = self._counts
            for tokens in inserted:
                for token in tokens:
                    if token in counts:
                        counts[token] += 1
            self._state, self._writes = new, writes

    def sight(self, state: bytes, writes: tuple[int, int]) -> bool:
        """Whether counting for ``state`` pays: it is the counts' own. Else the counts start
        over, empty, at ``state`` (the next search tells whether it lasts) and the answer is
        no."""
        with self._lock:
            if state == self._state:
                return True
            self._state, self._writes, self._counts = state, writes, {}
            return False

    def known(self, state: bytes, tokens: Iterable[str]) -> dict[str, int]:
        """The remembered counts of ``tokens`` for ``state`` (those it has)."""
        with self._lock:
            if state != self._state:
                return {}
            return {t: self._counts[t] for t in tokens if t in self._counts}

    def remember(self, state: bytes, counts: dict[str, int]) -> None:
        """Keep ``counts`` of ``state`` if it is still the counts' own."""
        with self._lock:
            if state != self._state:
                return
            if len(self._counts) > self.MAX_REMEMBERED:
                self._counts = {}
            self._counts.update(counts)


def bm25_scores(
    phrases: Sequence[str],
    holders: Sequence[Iterable[int]],
    frequencies: dict[tuple[str, int], int],
    lengths: dict[int, int],
    document_counts: dict[str, int],
    rows: int,
    total_tokens: int,
) -> dict[int, float]:
    """``bm25(learnings_fts, 1.0, 0.0)`` negated (higher is better) of every row holding a
    phrase, by ``seq``: ``phrases`` are the query's one-token phrases in the order of the
    ``MATCH`` expression, ``holders`` the rows holding each, ``frequencies`` each token's
    count in each row's text, ``lengths`` each row's tokens in all columns, and
    ``document_counts``, ``rows`` and ``total_tokens`` the whole table's. The arithmetic is
    ``fts5Bm25Function``'s, in its order (the scope phrase adds 0.0 there: weight 0)."""
    average = float(total_tokens) / float(rows)
    idf = []
    for token in phrases:
        hits = document_counts[token]
        value = math.log((rows - hits + 0.5) / (hits + 0.5))
        idf.append(value if value > 0.0 else 1e-6)
    candidates = sorted({seq for held in holders for seq in held})
    scores: dict[int, float] = {}
    for seq in candidates:
        length = float(lengths[seq])
        score = 0.0
        for i, token in enumerate(phrases):
            f = float(frequencies.get((token, seq), 0))
            score += idf[i] * ((f * (K1 + 1.0)) / (f + K1 * (1 - B + B * length / average)))
        scores[seq] = score
    return scores
