"""Facts that change, through the stores (DESIGN.md section 11): supersession, closing, validity,
expiry and pinning in the direct API, recall, extraction and the profile, on SQLite and
PostgreSQL. The database clock is set by each test (``Clock``), so "now" is known."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kern._sync import run_sync
from kern.agent import Agent
from kern.context import RunContext
from kern.errors import NotFoundError
from kern.learn import LearningMachine
from kern.learn.prompts import DATED_ITEM_RULES, extraction_prompt
from kern.models.base import ModelRequest
from kern.models.testing import FunctionModel
from tests.learning_helpers import extraction_model, prompt_text
from tests.test_db_learnings import Clock, clock, db_clock

__all__ = ["clock", "db_clock"]  # fixtures

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
U = "alice"


def machine(db: Any, **stores: Any) -> LearningMachine:
    return LearningMachine(db=db, **(stores or {"user_memory": True}))


def block(lm: LearningMachine, question: str) -> str:
    ctx = RunContext(run_id="r", session_id="q", user_id=U, input=question)
    return run_sync(lm.recall(ctx)).context


def test_supersede_close_and_search_in_time(db: Any, clock: Clock) -> None:
    lm = machine(db)
    memories = lm.user_memory
    lisbon = memories.add("The user lives in Lisbon.", user_id=U)
    clock.advance(30 * 86400)
    moved = T0 + 20 * DAY
    berlin = memories.supersede(lisbon.id, "The user lives in Berlin.", user_id=U, valid_from=moved)
    old = memories.get(lisbon.id, user_id=U)
    assert old is not None
    assert (old.status, old.valid_to, old.superseded_by) == ("superseded", moved, berlin.id)
    assert (berlin.status, berlin.valid_from) == ("active", moved)

    assert [i.content for i in memories.search("lives", user_id=U)] == ["The user lives in Berlin."]
    then = memories.search("lives", user_id=U, as_of=T0 + 10 * DAY)
    assert [(i.content, i.past) for i in then] == [("The user lives in Lisbon.", False)]
    both = {i.content: i.past for i in memories.search("lives", user_id=U, include_past=True)}
    assert both == {"The user lives in Berlin.": False, "The user lives in Lisbon.": True}
    assert [i.id for i in memories.list(user_id=U)] == [berlin.id]
    assert {i.id for i in memories.list(user_id=U, include_past=True)} == {berlin.id, lisbon.id}

    dog = memories.add("The user has a dog named Rex.", user_id=U)
    closed = memories.close(dog.id, user_id=U, valid_to=T0 + 25 * DAY)
    assert (closed.status, closed.valid_to) == ("active", T0 + 25 * DAY)
    assert memories.search("dog", user_id=U) == []
    gone = memories.search("dog", user_id=U, include_past=True)[0]  # then its time context
    assert gone.past
    # Another user's item cannot be superseded or closed (nor learnt to exist).
    with pytest.raises(NotFoundError):
        memories.supersede(berlin.id, "The user lives in Rome.", user_id="bob")
    with pytest.raises(NotFoundError):
        memories.close(berlin.id, user_id="bob")
    with pytest.raises(ValueError, match="exclude each other"):
        memories.search("lives", user_id=U, as_of=T0, include_past=True)


def test_recall_is_about_now_unless_the_question_is_about_the_past(db: Any, clock: Clock) -> None:
    lm = machine(db)
    lisbon = lm.user_memory.add("The user lives in Lisbon.", user_id=U)
    clock.advance(30 * 86400)
    lm.user_memory.supersede(
        lisbon.id, "The user lives in Berlin.", user_id=U, valid_from=T0 + 20 * DAY
    )
    now = block(lm, "Which city do I live in?")
    assert "Berlin" in now and "Lisbon" not in now
    assert '"since": "2025-01-21"' in now
    past = block(lm, "Where did I live before Berlin?")
    (line,) = [line for line in past.splitlines() if "Lisbon" in line]
    assert '"until": "2025-01-21"' in line and '"past": true' in line
    assert any("Berlin" in x and '"past"' not in x for x in past.splitlines())


def test_expired_items_leave_recall_and_near_duplicates_are_shown_once(
    db: Any, clock: Clock
) -> None:
    lm = machine(db)
    lm.user_memory.add("The user is in Oslo this week.", user_id=U, expires_at=T0 + 3 * DAY)
    lm.user_memory.add("The user likes green tea.", user_id=U)
    lm.user_memory.add("the user likes green tea", user_id=U)
    first = block(lm, "Which city am I in this week? Do I like tea?")
    assert "Oslo" in first and '"expires": "2025-01-04"' in first
    assert first.lower().count("likes green tea") == 1
    clock.advance(5 * 86400)
    later = block(lm, "Which city am I in this week?")
    assert "Oslo" not in later
    assert lm.user_memory.search("Oslo", user_id=U) == []
    expired = lm.user_memory.search("Oslo", user_id=U, include_past=True)[0]
    assert expired.past


def test_the_profile_keeps_each_fields_past_values(db: Any, clock: Clock) -> None:
    lm = machine(db, user_profile=True)
    lm.user_profile.update({"location": "Lisbon", "name": "Alice"}, user_id=U)
    clock.advance(10 * 86400)
    lm.user_profile.update({"location": "Berlin", "name": "Alice"}, user_id=U)
    assert lm.user_profile.get(user_id=U).location == "Berlin"
    assert lm.user_profile.get(user_id=U, as_of=T0 + DAY).location == "Lisbon"
    assert lm.user_profile.get(user_id=U, as_of=T0 - DAY).location == "Lisbon"  # since unknown
    history = lm.user_profile.fields(user_id=U, include_past=True)
    locations = [(i.data.value, i.past) for i in history if i.data.field == "location"]
    assert locations == [("Lisbon", True), ("Berlin", False)]
    # An unchanged value is not a new version.
    assert len([i for i in history if i.data.field == "name"]) == 1


def test_entity_relations_hold_over_time(db: Any, clock: Clock) -> None:
    lm = machine(db, entity_memory=True)
    entities = lm.entity_memory
    june = datetime(2025, 6, 1, tzinfo=UTC)
    netflix = entities.add_relation("Alice", "works_at", "Netflix", valid_from=T0 - 400 * DAY)
    clock.current = june + 30 * DAY
    entities.close(netflix.id, valid_to=june)
    entities.add_relation("Alice", "works_at", "Stripe", valid_from=june)
    now = [i.data.object for i in entities.search("Alice works_at")]
    assert now == ["Stripe"]
    march = [i.data.object for i in entities.search("Alice works_at", as_of=june - 90 * DAY)]
    assert march == ["Netflix"]


def _numbers(prompt: str) -> dict[str, int]:
    """The numbers extraction was shown, by a distinctive word of each item."""
    numbers: dict[str, int] = {}
    for line in prompt.splitlines():
        if line.startswith("[") and "] " in line:
            number, text = line[1:].split("] ", 1)
            numbers[text] = int(number)
    return numbers


def test_extraction_is_dated_and_supersedes_and_closes_in_one_call(db: Any, clock: Clock) -> None:
    prompts: list[str] = []

    def extract(request: ModelRequest) -> dict[str, Any]:
        prompt = prompt_text(request)
        prompts.append(prompt)
        if len(prompts) == 1:
            return {"user_memory": {"add": [{"content": "The user lives in Lisbon."}]}}
        if len(prompts) == 2:
            gym = {"content": "The user trains at Iron Gym in Lisbon.", "expires_at": "2024-01-01"}
            return {"user_memory": {"add": [gym]}}
        shown = _numbers(prompt)
        lives = next(n for text, n in shown.items() if "lives in Lisbon" in text)
        gym_n = next(n for text, n in shown.items() if "Iron Gym" in text)
        return {
            "user_memory": {
                "supersede": [
                    {
                        "id": lives,
                        "content": "The user lives in Berlin.",
                        "valid_from": "2025-02-25",
                    }
                ],
                "close": [{"id": gym_n, "valid_to": "2025-02-25"}, {"id": 99, "valid_to": None}],
            }
        }

    lm = LearningMachine(user_memory=True, background=False)
    agent = Agent(model=FunctionModel(extraction_model("Noted.", extract)), db=db, learning=lm)
    agent.run("I live in Lisbon.", user_id=U, session_id="s1")
    clock.advance(5 * 86400)
    agent.run("I train at Iron Gym near my flat in Lisbon.", user_id=U, session_id="s2")
    clock.current = datetime(2025, 3, 4, 9, tzinfo=UTC)
    agent.run("I moved to Berlin last week.", user_id=U, session_id="s3")

    assert 'date="2025-01-01 (Wednesday)"' in prompts[0]
    assert 'date="2025-03-04 (Tuesday)"' in prompts[2]
    current = [i.content for i in lm.user_memory.list(user_id=U)]
    assert current == ["The user lives in Berlin."]
    everything = {i.content: i for i in lm.user_memory.list(user_id=U, include_past=True)}
    ended = datetime(2025, 2, 25, tzinfo=UTC)
    assert everything["The user lives in Lisbon."].valid_to == ended
    assert everything["The user lives in Lisbon."].status == "superseded"
    gym = everything["The user trains at Iron Gym in Lisbon."]
    assert (gym.valid_to, gym.expires_at) == (ended, None)  # a past expiry is not kept
    assert everything["The user lives in Berlin."].valid_from == ended


def test_the_extraction_prompt_speaks_time() -> None:
    for words in ("SUPERSEDE", "CLOSE", "UPDATE", "expires_at", "YYYY-MM-DD", "exchange's date"):
        assert words in DATED_ITEM_RULES
    prompt = extraction_prompt("I moved", "ok", [], date=T0)
    assert prompt.startswith('<exchange date="2025-01-01 (Wednesday)">')


def test_the_curator_never_removes_pinned_items_and_merges_reworded_chains(
    db: Any, clock: Clock
) -> None:
    lm = machine(db)
    memories = lm.user_memory
    pinned = memories.add("The user is allergic to penicillin.", user_id=U, pinned=True)
    copy = memories.add("The user is allergic to penicillin.", user_id=U)  # a later duplicate
    old = memories.add("The user likes tea.", user_id=U)
    clock.advance(100 * 86400)
    aged = lm.curator.prune(user_id=U, max_age_days=30, dry_run=True).ids
    assert sorted(aged) == sorted([copy.id, old.id])
    assert pinned.id not in lm.curator.prune(user_id=U, max_count=0, dry_run=True).ids

    lives = memories.add("The user lives in Berlin.", user_id=U)
    reworded = memories.supersede(lives.id, "the user lives in Berlin", user_id=U)
    moved = memories.supersede(reworded.id, "The user lives in Vienna.", user_id=U)
    lisbon = memories.add("The user lives in Lisbon.", user_id=U, valid_to=T0)
    memories.add("The user lives in Lisbon.", user_id=U)  # now, not the past one again
    report = lm.curator.deduplicate(user_id=U)
    reasons = {r.id: (r.reason, r.kept_id) for r in report.removed}
    assert pinned.id not in reasons and lisbon.id not in reasons
    assert reasons[lives.id] == ("chain link", reworded.id)
    assert reworded.id not in reasons  # Berlin → Vienna is a change, not a rewording
    assert [r.reason for r in report.removed].count("exact duplicate") == 1
    assert lm.curator.undo(report) == len(report)
    restored = memories.get(lives.id, user_id=U)
    assert restored is not None and restored.status == "superseded"
    assert memories.get(moved.id, user_id=U).status == "active"  # type: ignore[union-attr]
