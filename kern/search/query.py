"""Read a natural-language query: its search terms, and the calendar ranges it names.

The words and the full-text syntax live below ``kern.search`` (``kern._text`` and
``kern.db.fulltext``, so the database engines need nothing from here); this module re-exports
them where they were always found.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from kern._text import STOPWORDS, query_terms, tokenize
from kern.db.fulltext import fts5_match, tsquery

__all__ = [
    "STOPWORDS",
    "TimeRange",
    "fts5_match",
    "query_terms",
    "time_ranges",
    "tokenize",
    "tsquery",
]

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
#: Calendar ranges one query may name; more would make the overlap check quadratic.
_MAX_TIME_RANGES = 16
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
            if len(found) >= _MAX_TIME_RANGES:  # a long message: its first dates are enough
                break
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
