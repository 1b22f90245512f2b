"""The pure time logic of recall and extraction (kern.learn.timeline): no database, no model."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from kern.db.base import LearningFilter, LearningRecord
from kern.learn.distinct import distinct
from kern.learn.timeline import (
    TimeScope,
    at_day_start,
    is_current,
    past_question,
    time_fields,
    time_scope,
)

NOW = datetime(2026, 3, 15, 12, tzinfo=UTC)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


DAY = timedelta(days=1)


def row(text: str, **fields: object) -> LearningRecord:
    return LearningRecord(
        id=text, store="user_memory", kind="memory", scope="user:a", content={}, text=text,
        **fields,  # type: ignore[arg-type]
    )  # fmt: skip


@pytest.mark.parametrize(
    ("question", "window"),
    [
        ("Where did I live before Berlin?", None),
        ("What did I use to drink every morning?", None),
        ("Which car did I have previously?", None),
        ("Which company did I work at in 2023?", (utc(2023, 1, 1), utc(2024, 1, 1))),
        ("What was I doing in March 2025?", (utc(2025, 3, 1), utc(2025, 4, 1))),
        ("Where did I work last year?", (utc(2025, 1, 1), utc(2026, 1, 1))),
    ],
)  # fmt: skip
def test_questions_about_the_past_are_recognised(
    question: str, window: tuple[datetime, datetime] | None
) -> None:
    found = past_question(question, NOW)
    assert found is not None and found.window == window


@pytest.mark.parametrize(
    "question",
    ["Which city do I live in?", "Am I on call?", "What will I do in 2027?", "How old am I?"],
)
def test_questions_about_now_are_not(question: str) -> None:
    assert past_question(question, NOW) is None


def test_current_past_expired_and_planned_rows() -> None:
    lives = row("lives in Berlin", valid_from=NOW - 10 * DAY)
    lived = row("lives in Lisbon", status="superseded", valid_to=NOW - 10 * DAY)
    closed = row("has a dog", valid_to=NOW - DAY)
    oslo = row("in Oslo this week", expires_at=NOW + 2 * DAY)
    gone = row("in Rome last week", expires_at=NOW - 3 * DAY)
    planned = row("moves to Kyoto", valid_from=NOW + 30 * DAY)
    assert [is_current(r, NOW) for r in (lives, lived, closed, oslo, gone, planned)] == [
        True, False, False, True, False, False,
    ]  # fmt: skip
    assert time_fields(lives, NOW) == {"since": "2026-03-05"}
    assert time_fields(lived, NOW) == {"until": "2026-03-05", "past": True}
    assert time_fields(closed, NOW) == {"until": "2026-03-14", "past": True}
    assert time_fields(oslo, NOW) == {"expires": "2026-03-17"}
    assert time_fields(gone, NOW) == {"until": "2026-03-12", "past": True}
    assert time_fields(planned, NOW) == {"since": "2026-04-14", "planned": True}


def test_time_scope_filters() -> None:
    base = LearningFilter(store="user_memory", scopes=["user:a"])
    now = time_scope(NOW).where(base)
    assert (now.statuses, now.valid_at, now.unexpired_at) == (("active",), NOW, NOW)
    then = time_scope(NOW, as_of=NOW - 100 * DAY).where(base)
    assert (then.statuses, then.valid_at) == (("active", "superseded"), NOW - 100 * DAY)
    ever = time_scope(NOW, include_past=True).where(base)
    assert (ever.statuses, ever.valid_at, ever.unexpired_at) == (
        ("active", "superseded"),
        None,
        None,
    )
    window = (NOW - 400 * DAY, NOW - 35 * DAY)
    during = TimeScope(NOW, past=True, window=window).where(base)
    assert during.valid_during == window
    with pytest.raises(ValueError, match="exclude each other"):
        time_scope(NOW, as_of=NOW, include_past=True)
    with pytest.raises(ValueError, match="timezone-aware"):
        time_scope(NOW, as_of=datetime(2025, 1, 1))


def test_distinct_drops_near_identical_rows_but_not_past_ones() -> None:
    a = row("The user lives in Berlin.")
    b = row("the user lives in Berlin")
    c = row("The user lives in Berlin, Germany.")
    past = row("The user lives in Berlin.", status="superseded", valid_to=NOW - DAY)
    assert distinct([a, b, past, c, a], text=lambda r: r.text) == [a, past, c]


def test_dates_from_an_answer() -> None:
    assert at_day_start(date(2026, 3, 1)) == datetime(2026, 3, 1, tzinfo=UTC)
    assert at_day_start(datetime(2026, 3, 1, 8)) == datetime(2026, 3, 1, 8, tzinfo=UTC)
    assert at_day_start(None) is None
