"""The curator: prune and deduplicate change only what they should, with dry-run and undo."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kern.agent import Agent
from kern.errors import ConfigError
from kern.learn import (
    DecisionLogConfig,
    EntityMemoryConfig,
    LearnedKnowledgeConfig,
    LearningMachine,
)
from kern.models.testing import TestModel

NOW = datetime.now(UTC)


@pytest.fixture
def lm(db: Any) -> Any:
    machine = LearningMachine(
        db=db,
        user_memory=True,
        entity_memory=EntityMemoryConfig(namespace="user"),
        learned_knowledge=LearnedKnowledgeConfig(namespace="user"),
        decision_log=DecisionLogConfig(namespace="user"),
    )
    Agent(model=TestModel(), db=db, learning=machine)
    return machine


def add(lm: Any, store: str, text: str, *, user: str = "alice", days_ago: float = 0) -> str:
    created = NOW - timedelta(days=days_ago)
    content: Any = {
        "user_memory": text,
        "entity_memory": {"entity": "Atlas", "fact": text},
        "learned_knowledge": {"title": "t", "learning": text},
        "decision_log": {"decision": text, "reasoning": "because"},
    }[store]
    return str(getattr(lm, store).add(content, user_id=user, created_at=created).id)


STORES = ["user_memory", "entity_memory", "learned_knowledge", "decision_log"]


@pytest.mark.parametrize("store", STORES)
def test_prune_by_age_with_dry_run_and_undo(lm: Any, store: str) -> None:
    old = add(lm, store, "an old thing about ferries", days_ago=200)
    new = add(lm, store, "a new thing about trains", days_ago=1)
    bobs = add(lm, store, "bob's old thing about ferries", user="bob", days_ago=200)

    preview = lm.curator.prune(user_id="alice", max_age_days=90, dry_run=True)
    assert preview.ids == [old]
    assert {i.id for i in getattr(lm, store).list(user_id="alice")} == {old, new}

    report = lm.curator.prune(user_id="alice", max_age_days=90)
    assert report.ids == [old]
    assert [i.id for i in getattr(lm, store).list(user_id="alice")] == [new]
    assert [i.id for i in getattr(lm, store).list(user_id="bob")] == [bobs]
    assert lm.db.history(learning_id=old)[0].action == "prune"

    assert lm.curator.undo(report) == 1
    assert {i.id for i in getattr(lm, store).list(user_id="alice")} == {old, new}
    assert lm.db.history(learning_id=old)[0].action == "restore"


@pytest.mark.parametrize("store", STORES)
def test_prune_by_count_keeps_the_newest(lm: Any, store: str) -> None:
    ids = [add(lm, store, f"note number {i}", days_ago=10 - i) for i in range(5)]
    report = lm.curator.prune(user_id="alice", max_count=2, stores=[store])
    assert sorted(report.ids) == sorted(ids[:3])
    assert {i.id for i in getattr(lm, store).list(user_id="alice")} == set(ids[3:])


@pytest.mark.parametrize("store", STORES)
def test_deduplicate_exact_and_near_duplicates(lm: Any, store: str) -> None:
    first = add(lm, store, "Alice moved to Lisbon in March 2024", days_ago=5)
    exact = add(lm, store, "Alice moved to Lisbon in March 2024", days_ago=4)
    near = add(lm, store, "alice moved to lisbon in march, 2024", days_ago=3)
    other = add(lm, store, "Alice adopted a greyhound named Pixel", days_ago=2)
    bobs = add(lm, store, "Alice moved to Lisbon in March 2024", user="bob")

    preview = lm.curator.deduplicate(user_id="alice", dry_run=True)
    assert sorted(preview.ids) == sorted([exact, near])
    assert len(getattr(lm, store).list(user_id="alice")) == 4

    report = lm.curator.deduplicate(user_id="alice")
    assert {r.id: r.kept_id for r in report.removed} == {exact: first, near: first}
    assert {i.id for i in getattr(lm, store).list(user_id="alice")} == {first, other}
    assert [i.id for i in getattr(lm, store).list(user_id="bob")] == [bobs]
    assert lm.db.history(learning_id=near)[0].action == "merge"
    assert lm.curator.undo(report) == 2
    assert len(getattr(lm, store).list(user_id="alice")) == 4


def test_prune_needs_a_criterion(lm: Any) -> None:
    with pytest.raises(ConfigError, match="max_age_days"):
        lm.curator.prune(user_id="alice")


def test_shared_namespace_curation_by_user_only_touches_that_users_rows(db: Any) -> None:
    machine = LearningMachine(db=db, learned_knowledge=True)  # global namespace
    Agent(model=TestModel(), db=db, learning=machine)
    mine = machine.learned_knowledge.add(
        "Use retries for flaky APIs", user_id="alice", created_at=NOW - timedelta(days=100)
    )
    theirs = machine.learned_knowledge.add(
        "Use retries for flaky APIs", user_id="bob", created_at=NOW - timedelta(days=100)
    )
    assert machine.curator.prune(user_id="alice", max_age_days=30).ids == [mine.id]
    assert [i.id for i in machine.learned_knowledge.list(user_id="bob")] == [theirs.id]


class FirstWordEmbedder:
    """Every text that starts with the same word gets the same vector: cosine 1.0 between
    "Alice has two kids." and "Alice has three kids." (MiniLM gives them ≥ 0.92)."""

    dimensions = 8

    async def embed(self, texts: Any) -> list[Any]:
        import numpy as np

        vectors = []
        for text in texts:
            vector = np.zeros(self.dimensions, dtype=np.float32)
            vector[hash(text.split()[0].lower()) % self.dimensions] = 1.0
            vectors.append(vector)
        return vectors


@pytest.mark.parametrize("embedder", [None, "first-word"])
def test_deduplicate_never_merges_facts_that_differ_in_a_number_date_name_or_negation(
    db: Any, embedder: str | None
) -> None:
    machine = LearningMachine(
        db=db, user_memory=True, embedder=FirstWordEmbedder() if embedder else None
    )
    Agent(model=TestModel(), db=db, learning=machine)
    distinct = [
        "Alice has two kids.",
        "Alice has three kids.",
        "Alice's flight is on May 3.",
        "Alice's flight is on May 4.",
        "Alice works with Bob on the launch.",
        "Alice works with Carol on the launch.",
        "Alice likes the new office.",
        "Alice does not like the new office.",
    ]
    for days, text in enumerate(distinct):
        machine.user_memory.add(text, user_id="alice", created_at=NOW - timedelta(days=20 - days))
    paraphrase = machine.user_memory.add("Alice has 2 kids.", user_id="alice")
    report = machine.curator.deduplicate(user_id="alice")
    # Only the same fact in other words is merged, and only where similarity says so.
    assert report.ids == ([paraphrase.id] if embedder else [])
    kept = {i.content for i in machine.user_memory.list(user_id="alice")}
    assert set(distinct) <= kept
