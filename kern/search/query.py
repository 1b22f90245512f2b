"""Turn a natural-language query into safe full-text search expressions.

The user's words never become SQL: the store binds the returned string as a parameter. The
string itself is still a small query language (FTS5 ``MATCH``, Postgres ``tsquery``), so every
term is quoted here and keywords such as ``NEAR``, ``AND``, ``-`` or ``*`` typed by a user are
searched as plain words. A query with no searchable word yields ``None``: the caller returns
no full-text hits instead of matching everything.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

__all__ = [
    "STOPWORDS",
    "TimeRange",
    "fts5_match",
    "query_terms",
    "time_ranges",
    "tokenize",
    "tsquery",
]

# \w is Unicode-aware in Python: letters and digits of any script, plus "_". FTS5's unicode61
# tokenizer treats "_" as a separator, so it is split off here too, keeping both sides aligned.
_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")

# Function words and question words: in an OR query they match most memories and only add
# noise to BM25. Kept short on purpose; content words ("work", "name", "year") are not here.
_STOPWORD_TEXT = """
    a about above after again against all am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for from
    further had has have having he her here hers herself him himself his how i if in into is
    it its itself just me more most my myself no nor not now of off on once only or other our
    ours ourselves out over own same she should so some such than that the their theirs them
    themselves then there these they this those through to too under until up very was we
    were what when where which while who whom why will with would you your yours yourself
    yourselves s t d ll m re ve don didn doesn isn wasn weren aren won wouldn shouldn couldn
    also get got ever might may must shall let us yes ok okay
"""
STOPWORDS: frozenset[str] = frozenset(_STOPWORD_TEXT.split())


def tokenize(text: str) -> list[str]:
    """Lower-cased words of ``text`` (any script), apostrophe contractions kept whole."""
    return [m.group(0).replace("’", "'").lower() for m in _WORD.finditer(text)]


def query_terms(text: str, *, stopwords: Iterable[str] = STOPWORDS) -> list[str]:
    """Distinct search terms of ``text`` in first-seen order, stopwords dropped.

    Possessives lose their ``'s`` ("Caroline's" → "caroline"). If every word is a stopword
    the words are kept, so "who am I?" still searches for something.
    """
    stop = stopwords if isinstance(stopwords, frozenset | set) else frozenset(stopwords)
    words: list[str] = []
    for word in tokenize(text):
        base = word[:-2] if word.endswith("'s") else word
        for part in base.split("'"):
            if part and part not in words:
                words.append(part)
    kept = [w for w in words if w not in stop]
    return kept or words


def _searchable(terms: Sequence[str]) -> list[str]:
    # Ready-made terms with no letter or digit would match nothing; drop them so that "no
    # searchable word" is always ``None``, never an expression that cannot match.
    return [t for t in terms if _WORD.search(t)]


def _quote(term: str) -> str:
    # An FTS5 string is delimited by double quotes; a quote inside is written twice.
    return '"' + term.replace('"', '""') + '"'


def fts5_match(
    text: str | Sequence[str],
    *,
    operator: str = "OR",
    prefix: bool = False,
) -> str | None:
    """An FTS5 ``MATCH`` expression for ``text`` (a query or ready-made terms), or ``None``.

    Terms are quoted strings joined by ``OR`` (rank by BM25, any term may match) or ``AND``.
    ``prefix`` appends ``*`` so "paint" also finds "painting" under a non-stemming tokenizer.
    """
    if operator not in ("OR", "AND"):
        raise ValueError("operator must be 'OR' or 'AND'")
    terms = query_terms(text) if isinstance(text, str) else _searchable(text)
    if not terms:
        return None
    star = "*" if prefix else ""
    return f" {operator} ".join(_quote(t) + star for t in terms)


def tsquery(text: str | Sequence[str], *, operator: str = "|") -> str | None:
    """A Postgres ``to_tsquery`` argument for ``text``: quoted lexemes joined by ``|`` or ``&``.

    Bind it as a parameter (``to_tsquery('english', :q)``); quoting keeps user input from
    being read as tsquery operators.
    """
    if operator not in ("|", "&"):
        raise ValueError("operator must be '|' or '&'")
    terms = query_terms(text) if isinstance(text, str) else _searchable(text)
    if not terms:
        return None
    # Inside a tsquery a quote is doubled and a backslash escapes; words from tokenize() hold
    # neither, ready-made terms may.
    quoted = ("'" + t.replace("\\", "\\\\").replace("'", "''") + "'" for t in terms)
    return f" {operator} ".join(quoted)


# --- time expressions -------------------------------------------------------------------------

_MONTHS = {
    name: i + 1
    for i, names in enumerate(
        [
            ("january", "jan"),
            ("february", "feb"),
            ("march", "mar"),
            ("april", "apr"),
            ("may",),
            ("june", "jun"),
            ("july", "jul"),
            ("august", "aug"),
            ("september", "sep", "sept"),
            ("october", "oct"),
            ("november", "nov"),
            ("december", "dec"),
        ]
    )
    for name in names
}
_SEASONS = {"spring": (3, 5), "summer": (6, 8), "autumn": (9, 11), "fall": (9, 11)}
_MONTH_RE = "|".join(sorted(_MONTHS, key=len, reverse=True))
_YEAR_RE = r"(?:19|20)\d\d"
_DAY_RE = r"(?:[12]\d|3[01]|0?[1-9])(?:st|nd|rd|th)?"
_TIME_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("dmy", re.compile(rf"\b({_DAY_RE})\s+(?:of\s+)?({_MONTH_RE})\.?,?\s+({_YEAR_RE})\b")),
    ("mdy", re.compile(rf"\b({_MONTH_RE})\.?\s+({_DAY_RE}),?\s+({_YEAR_RE})\b")),
    ("iso", re.compile(rf"\b({_YEAR_RE})-(0?[1-9]|1[0-2])-([12]\d|3[01]|0?[1-9])\b")),
    ("my", re.compile(rf"\b({_MONTH_RE})\.?,?\s+(?:of\s+)?({_YEAR_RE})\b")),
    ("sy", re.compile(rf"\b(spring|summer|autumn|fall)\s+(?:of\s+)?({_YEAR_RE})\b")),
    ("y", re.compile(rf"\b(?:in|during|of|since|from|year)\s+({_YEAR_RE})\b")),
)
_RELATIVE = re.compile(r"\b(today|yesterday|(?:last|this|past)\s+(?:week|month|year))\b")


@dataclass(frozen=True, slots=True)
class TimeRange:
    """A half-open interval ``[start, end)`` of calendar time named by a query."""

    start: datetime
    end: datetime

    def __contains__(self, moment: object) -> bool:
        if not isinstance(moment, datetime):
            return False
        return self.start <= _naive(moment) < self.end


def _naive(moment: datetime) -> datetime:
    # Ranges are naive UTC; an aware time is converted, a naive one is taken as UTC already.
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def _month_range(year: int, month: int, months: int = 1) -> TimeRange:
    end_month = month - 1 + months
    return TimeRange(
        datetime(year, month, 1), datetime(year + end_month // 12, end_month % 12 + 1, 1)
    )


def _day_range(year: int, month: int, day: int) -> TimeRange | None:
    try:
        start = datetime(year, month, day)
    except ValueError:  # "31 February"
        return None
    return TimeRange(start, start + timedelta(days=1))


def _day(text: str) -> int:
    return int(re.sub(r"\D", "", text))


def time_ranges(text: str, *, now: datetime | None = None) -> list[TimeRange]:
    """Calendar ranges a query names: "on 25 May, 2023", "in July 2022", "summer 2021",
    "in 2020", and, relative to ``now`` (naive UTC), "yesterday", "last week", "this year".

    A bare month without a year ("in May") is ambiguous across years and is not a range.
    """
    lowered = text.lower()
    found: list[TimeRange] = []
    taken: list[tuple[int, int]] = []

    def free(span: tuple[int, int]) -> bool:
        return all(span[1] <= a or span[0] >= b for a, b in taken)

    for kind, pattern in _TIME_PATTERNS:
        for m in pattern.finditer(lowered):
            if not free(m.span()):
                continue
            g = m.groups()
            found_range: TimeRange | None
            if kind == "dmy":
                found_range = _day_range(int(g[2]), _MONTHS[g[1]], _day(g[0]))
            elif kind == "mdy":
                found_range = _day_range(int(g[2]), _MONTHS[g[0]], _day(g[1]))
            elif kind == "iso":
                found_range = _day_range(int(g[0]), int(g[1]), int(g[2]))
            elif kind == "my":
                found_range = _month_range(int(g[1]), _MONTHS[g[0]])
            elif kind == "sy":
                first, last = _SEASONS[g[0]]
                found_range = _month_range(int(g[1]), first, last - first + 1)
            else:
                found_range = TimeRange(datetime(int(g[0]), 1, 1), datetime(int(g[0]) + 1, 1, 1))
            if found_range is not None:
                found.append(found_range)
                taken.append(m.span())
    if now is not None:
        now = _naive(now)
        today = datetime(now.year, now.month, now.day)
        for m in _RELATIVE.finditer(lowered):
            phrase = m.group(1).split()
            unit = phrase[-1]
            if unit == "today":
                found.append(TimeRange(today, today + timedelta(days=1)))
            elif unit == "yesterday":
                found.append(TimeRange(today - timedelta(days=1), today))
            elif unit == "week":
                found.append(
                    TimeRange(
                        today - timedelta(days=7 if phrase[0] == "this" else 14),
                        today + timedelta(days=1),
                    )
                )
            elif unit == "month":
                found.append(
                    TimeRange(
                        today - timedelta(days=31 if phrase[0] == "this" else 62),
                        today + timedelta(days=1),
                    )
                )
            else:
                found.append(TimeRange(today - timedelta(days=366), today + timedelta(days=1)))
    return found
