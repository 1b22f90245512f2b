"""Time in the db layer: supersession and closing in one transaction, and the validity, expiry
and pinning filters applied inside the queries (lists and search candidates), on SQLite and
PostgreSQL."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, timedelta, timezone

import pytest

from kern.db.base import Close, Create, LearningFilter, Put, SetStatus, Supersede
from kern.db.sql import SqlDb
from kern.errors import ConflictError, InvalidArgumentError
from tests.test_db_learnings import ALICE, T0, Clock, clock, db_clock, field, ids, rec

__all__ = ["clock", "db_clock"]  # fixtures, shared with test_db_learnings

DAY = timedelta(days=1)
ALICE_MEMORIES = LearningFilter(store="user_memory", scopes=[ALICE])
EVER = replace(ALICE_MEMORIES, statuses=("active", "superseded"))


def test_create_stores_the_time_fields(db: SqlDb) -> None:
    (saved,) = db.apply(
        [
            Create(
                rec(
                    "m1",
                    "Alice is in Oslo this week",
                    valid_from=T0 - DAY,
                    valid_to=T0 + 5 * DAY,
                    expires_at=T0 + 6 * DAY,
                    pinned=True,
                )
            )
        ]
    )
    assert db.get_learning("m1") == saved
    assert (saved.valid_from, saved.valid_to, saved.expires_at, saved.pinned) == (
        T0 - DAY,
        T0 + 5 * DAY,
        T0 + 6 * DAY,
        True,
    )
    (event,) = db.history(learning_id="m1")
    assert event.after is not None and event.after["pinned"] is True
    assert event.after["expires_at"] == (T0 + 6 * DAY).isoformat()


def test_supersede_closes_the_old_row_and_opens_the_new_one_in_one_step(
    db: SqlDb, clock: Clock
) -> None:
    db.apply([Create(rec("lisbon", "Alice lives in Lisbon"))])
    clock.advance(86400 * 30)
    moved = T0 + 20 * DAY
    (berlin,) = db.apply(
        [Supersede("lisbon", rec("berlin", "Alice lives in Berlin", valid_from=moved))],
        run_id="run-2",
        actor="extraction",
    )
    old = db.get_learning("lisbon")
    assert old is not None
    assert (old.status, old.valid_to, old.superseded_by, old.version) == (
        "superseded",
        moved,
        "berlin",
        2,
    )
    assert (berlin.status, berlin.valid_from, berlin.run_id) == ("active", moved, "run-2")
    assert db.get_learning("berlin") == berlin
    assert [(e.learning_id, e.action) for e in db.history(user_id="alice")][:2] == [
        ("berlin", "create"),
        ("lisbon", "supersede"),
    ]
    # Default reads see what is current; both stay readable.
    assert ids(db.list_learnings(ALICE_MEMORIES)) == ["berlin"]
    assert sorted(ids(db.list_learnings(EVER))) == ["berlin", "lisbon"]


def test_supersede_without_a_date_starts_the_successor_now(db: SqlDb, clock: Clock) -> None:
    db.apply([Create(rec("a", "Alice drinks coffee"))])
    clock.advance(3600)
    (new,) = db.apply([Supersede("a", rec("b", "Alice drinks tea"))])
    old = db.get_learning("a")
    assert old is not None and old.valid_to == new.valid_from == T0 + timedelta(hours=1)


def test_a_failed_supersede_changes_nothing(db: SqlDb) -> None:
    db.apply([Create(rec("a", "Alice drinks coffee")), SetStatus("a", "deleted", "delete")])
    with pytest.raises(ConflictError, match="is deleted"):
        db.apply([Create(rec("c", "unrelated")), Supersede("a", rec("b", "Alice drinks tea"))])
    assert db.get_learning("b") is None and db.get_learning("c") is None
    db.apply([Create(rec("x", "Alice rides a bike"))])
    with pytest.raises(ConflictError, match="version"):
        db.apply([Supersede("x", rec("y", "Alice rides a scooter"), expected_version=7)])
    current = db.get_learning("x")
    assert current is not None and current.status == "active"


def test_close_ends_a_fact_without_a_successor(db: SqlDb, clock: Clock) -> None:
    db.apply([Create(rec("dog", "Alice has a dog named Rex", valid_from=T0 - 400 * DAY))])
    clock.advance(86400 * 10)
    (closed,) = db.apply([Close("dog", valid_to=T0 + 3 * DAY)], actor="api")
    assert (closed.status, closed.valid_to, closed.version) == ("active", T0 + 3 * DAY, 2)
    assert db.history(learning_id="dog")[0].action == "close"
    assert ids(db.list_learnings(ALICE_MEMORIES)) == ["dog"]  # status filter alone: still there
    now = LearningFilter(store="user_memory", scopes=[ALICE], valid_at=clock())
    assert ids(db.list_learnings(now)) == []
    with pytest.raises(InvalidArgumentError, match="holds only from"):
        db.apply([Close("dog", valid_to=T0 - 500 * DAY)])
    with pytest.raises(ConflictError, match="cannot close"):
        db.apply([Close("missing")])


def test_put_with_supersede_keeps_a_keyed_fields_past_values(db: SqlDb, clock: Clock) -> None:
    paris = field("f1", "Paris")
    db.apply([replace(paris, supersede=True)])
    clock.advance(86400)
    berlin = field("f2", "Berlin")
    (new,) = db.apply([replace(berlin, supersede=True)])
    assert (new.id, new.valid_from) == ("f2", T0 + DAY)
    old = db.get_learning("f1")
    assert old is not None and (old.status, old.superseded_by, old.valid_to) == (
        "superseded",
        "f2",
        T0 + DAY,
    )
    # The same value again rewrites nothing into history: the key keeps one active row.
    same = field("f3", "Berlin")
    (kept,) = db.apply([Put(same.record, supersede=True)])
    assert kept.id == "f2"
    profile = LearningFilter(store="user_profile", scopes=[ALICE])
    assert ids(db.list_learnings(profile)) == ["f2"]
    then = replace(profile, statuses=("active", "superseded"), valid_at=T0 + timedelta(hours=1))
    assert ids(db.list_learnings(then)) == ["f1"]


def test_validity_expiry_and_pinning_filter_inside_lists_and_search(
    db: SqlDb, clock: Clock
) -> None:
    db.apply(
        [
            Create(rec("always", "Alice likes sailing boats")),
            Create(rec("was", "Alice sailing club member", valid_to=T0 - DAY)),
            Create(rec("will", "Alice sailing trip planned", valid_from=T0 + 10 * DAY)),
            Create(rec("oslo", "Alice sailing in Oslo this week", expires_at=T0 + 2 * DAY)),
            Create(rec("pin", "Alice sailing licence number", pinned=True)),
        ]
    )
    now = replace(ALICE_MEMORIES, valid_at=T0, unexpired_at=T0)
    assert sorted(ids(db.list_learnings(now))) == ["always", "oslo", "pin"]
    assert sorted(ids(db.search_text("sailing", now))) == ["always", "oslo", "pin"]
    assert sorted(i for i, _ in db.search_text_scores("sailing", now)) == ["always", "oslo", "pin"]
    later = replace(ALICE_MEMORIES, valid_at=T0 + 11 * DAY, unexpired_at=T0 + 11 * DAY)
    assert sorted(ids(db.list_learnings(later))) == ["always", "pin", "will"]
    assert db.count_learnings(later) == 3
    window = replace(ALICE_MEMORIES, valid_during=(T0 - 3 * DAY, T0 - 2 * DAY))
    assert sorted(ids(db.list_learnings(window))) == ["always", "oslo", "pin", "was"]
    assert ids(db.list_learnings(replace(ALICE_MEMORIES, pinned=True))) == ["pin"]
    assert db.count_learnings(replace(ALICE_MEMORIES, pinned=False)) == 4


def test_stored_moments_read_back_exactly(db: SqlDb) -> None:
    """``UtcDateTime`` remembers parsed values by what is stored: each row still reads back
    its own moment, a microsecond apart or in another offset, and always in UTC."""
    tokyo = timezone(timedelta(hours=9))
    moments = [T0, T0 + timedelta(microseconds=1), T0, (T0 + DAY).astimezone(tokyo)]
    db.apply([Create(rec(f"m{n}", f"moment {n}", created_at=at)) for n, at in enumerate(moments)])
    for _ in range(2):  # the second read is answered from the memo
        rows = {r.id: r.created_at for r in db.list_learnings(ALICE_MEMORIES)}
        assert [rows[f"m{n}"] for n in range(4)] == moments
        assert {at.tzinfo for at in rows.values()} == {UTC}
