"""Time in recall and extraction, without I/O: which rows a read may see, how a past row is
shown, whether a question asks about the past, and dates from a model's answer.

Every item has two clocks: when it was recorded (``created_at``) and when it held in the world
(``valid_from``, ``valid_to``; ``None`` = unknown or still true). An item is *current* at an
instant when it held then and had not expired; everything else that is not deleted, proposed
or rejected is *past*. Recall shows what is current unless asked for more (``as_of``,
``include_past``) or the question is about the past.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Protocol

from kern.db.base import LearningFilter

__all__ = [
    "EVER",
    "PastQuestion",
    "TimeScope",
    "at_day_start",
    "is_current",
    "past_question",
    "time_fields",
    "time_scope",
]

#: The statuses a row that ever held can have: current rows are active; superseded rows (and
#: active rows past their ``valid_to`` or ``expires_at``) are past.
EVER: tuple[Any, ...] = ("active", "superseded")


class _Timed(Protocol):
    @property
    def status(self) -> str: ...
    @property
    def valid_from(self) -> datetime | None: ...
    @property
    def valid_to(self) -> datetime | None: ...
    @property
    def expires_at(self) -> datetime | None: ...


def is_current(row: _Timed, at: datetime) -> bool:
    """Whether ``row`` (a record or an item) held at ``at`` and had not expired by then. A
    superseded row held until its successor started (``valid_to``)."""
    if row.status == "superseded":
        held = row.valid_to is not None and row.valid_to > at
    else:
        held = row.status == "active" and (row.valid_to is None or row.valid_to > at)
    return (
        held
        and (row.valid_from is None or row.valid_from <= at)
        and (row.expires_at is None or row.expires_at > at)
    )


@dataclass(frozen=True, slots=True)
class TimeScope:
    """Which moment a read is about: ``at`` (what held then), or every time (``past``) and,
    when ``window`` is set, only what held at some time inside it."""

    at: datetime
    past: bool = False
    window: tuple[datetime, datetime] | None = None
    #: ``at`` is the present (not an ``as_of`` instant).
    now: bool = True

    def where(self, base: LearningFilter) -> LearningFilter:
        """``base`` narrowed to this scope, inside the query."""
        if self.past:
            return replace(base, statuses=EVER, valid_during=self.window)
        # Current means active: a superseded row has its successor, even one that starts later.
        statuses = ("active",) if self.now else EVER
        return replace(base, statuses=statuses, valid_at=self.at, unexpired_at=self.at)


def time_scope(
    now: datetime, *, as_of: datetime | None = None, include_past: bool = False
) -> TimeScope:
    """The scope of a search: now by default, ``as_of`` a past instant, or everything."""
    if as_of is not None and include_past:
        raise ValueError("as_of and include_past exclude each other: pick one")
    if as_of is not None:
        if as_of.tzinfo is None:
            raise ValueError(f"as_of must be timezone-aware, got {as_of!r}")
        return TimeScope(as_of.astimezone(UTC), now=False)
    return TimeScope(now, past=include_past)


def time_fields(row: _Timed, at: datetime) -> dict[str, Any]:
    """How a row's time is shown to a model: ``since`` when its start is known, and for a row
    that no longer holds at ``at``, ``until`` and ``"past": true`` ("lived in Lisbon until
    2026-03-01"); ``expires`` for a current short-lived fact."""
    fields: dict[str, Any] = {}
    if row.valid_from is not None:
        fields["since"] = row.valid_from.date().isoformat()
    if is_current(row, at):
        if row.valid_to is not None:
            fields["until"] = row.valid_to.date().isoformat()
        if row.expires_at is not None:
            fields["expires"] = row.expires_at.date().isoformat()
        return fields
    ended = [t for t in (row.valid_to, row.expires_at) if t is not None and t <= at]
    if ended:
        fields["until"] = min(ended).date().isoformat()
    elif row.valid_from is not None and row.valid_from > at:
        fields["planned"] = True  # starts later; not a past fact
        return fields
    fields["past"] = True
    return fields


# -- questions about the past -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PastQuestion:
    """A question that asks about the past; ``window`` when it names a period ("in 2023")."""

    window: tuple[datetime, datetime] | None = None


_PAST_WORDS = re.compile(
    r"\b(used? to|before|previous(ly)?|former(ly)?|no longer|any ?more|back (then|when|in)"
    r"|ago|last year|in the past|earlier|history|ex-\w+|old (job|address|car|place))\b",
    re.IGNORECASE,
)
_YEAR = re.compile(r"\b(?:in|during|back in|of)\s+((?:19|20)\d\d)\b", re.IGNORECASE)
_MONTHS = [
    "january", "february", "march", "april", "may", "june", "july", "august", "september",
    "october", "november", "december",
]  # fmt: skip
_MONTH_YEAR = re.compile(r"\b(" + "|".join(_MONTHS) + r")\s+((?:19|20)\d\d)\b", re.IGNORECASE)


def past_question(question: str, now: datetime) -> PastQuestion | None:
    """Whether ``question`` asks about the past ("used to", "before Berlin", "in 2023"), and
    the period it names; ``None`` for a question about now. Words, not a model: cheap enough
    for every recall, and wrong only towards showing more (past rows are marked past)."""
    month = _MONTH_YEAR.search(question)
    if month:
        start = datetime(
            int(month.group(2)), _MONTHS.index(month.group(1).lower()) + 1, 1, tzinfo=UTC
        )
        end = (start + timedelta(days=32)).replace(day=1)
        if start < now:
            return PastQuestion((start, end))
    year = _YEAR.search(question)
    if year and int(year.group(1)) < now.year:
        start = datetime(int(year.group(1)), 1, 1, tzinfo=UTC)
        return PastQuestion((start, start.replace(year=start.year + 1)))
    if re.search(r"\blast year\b", question, re.IGNORECASE):
        start = datetime(now.year - 1, 1, 1, tzinfo=UTC)
        return PastQuestion((start, start.replace(year=now.year)))
    if _PAST_WORDS.search(question):
        return PastQuestion()
    return None


# -- dates from a model's answer ---------------------------------------------------------------


def at_day_start(day: date | datetime | None) -> datetime | None:
    """A date from an extraction answer as the instant it starts (UTC); datetimes are kept
    (naive ones read as UTC)."""
    if day is None:
        return None
    if isinstance(day, datetime):
        return day.replace(tzinfo=UTC) if day.tzinfo is None else day.astimezone(UTC)
    return datetime.combine(day, time(0, 0), tzinfo=UTC)
