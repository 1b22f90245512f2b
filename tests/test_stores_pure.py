"""Each built-in store alone: no LearningMachine, no database. Its hooks are pure or flows
(generators of backend requests), driven here by hand with the data a backend would return."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import numpy as np
import pytest

from kern.agent import Agent
from kern.context import RunContext
from kern.db.base import Create, LearningRecord, Put, SearchHit, SetStatus, Update
from kern.db.sqlite import SqliteDb
from kern.errors import ConfigError, NotFoundError
from kern.learn import (
    DecisionLogConfig,
    LearningMachine,
    LearningMode,
    SessionContextConfig,
    Turn,
    UserMemoryConfig,
    UserProfileConfig,
)
from kern.learn.backend import Apply, Flow, Get, LearningBackend, Now, Read, Request, Search
from kern.learn.stores import (
    DecisionLogStore,
    EntityMemoryStore,
    SessionContextStore,
    UserMemoryStore,
    UserProfileStore,
)
from kern.learn.stores.keyed import ProfileField
from kern.models.testing import FunctionModel
from kern.search.embedders import HashEmbedder, Vector
from tests.learning_helpers import extraction_model

NOW = datetime(2026, 1, 5, tzinfo=UTC)
CTX = RunContext(run_id="r1", session_id="s1", user_id="alice", agent_id="a", input="tea?")


def row(store: str, kind: str, content: dict[str, Any], **extra: Any) -> LearningRecord:
    values: dict[str, Any] = {
        "id": f"id-{json.dumps(content, sort_keys=True)}",
        "store": store,
        "kind": kind,
        "scope": "user/alice",
        "content": content,
        "text": " ".join(str(v) for v in content.values()),
        "user_id": "alice",
        "created_at": NOW,
        "updated_at": NOW,
    }
    return LearningRecord(**{**values, **extra})


def memory(text: str, **extra: Any) -> LearningRecord:
    return row("user_memory", "memory", {"content": text}, **extra)


T = TypeVar("T")


def drive(flow: Flow[T], answer: Callable[[Request], Any]) -> tuple[T, list[Request]]:
    """Run a flow as the backend does, answering each request with ``answer`` (and ``Now``
    with ``NOW``); returns the flow's value and what it asked, ``Now`` left out."""
    asked: list[Request] = []
    value: Any = None
    while True:
        try:
            request = flow.send(value)
        except StopIteration as stop:
            return stop.value, asked
        if isinstance(request, Now):
            value = NOW
            continue
        asked.append(request)
        value = answer(request)


def no_io(request: Request) -> Any:
    raise AssertionError(f"unexpected request {request!r}")


# ---------------------------------------------------------------------- recall views


def test_memory_recall_is_the_search_hits_topped_up_with_recent_items() -> None:
    store = UserMemoryStore(UserMemoryConfig(limit=3))
    tea, cats, tea_again = memory("likes tea"), memory("has cats"), memory("green tea")

    def answer(request: Request) -> Any:
        if isinstance(request, Search):
            return [SearchHit(tea, 0.9)]
        return [tea, cats, tea_again]  # the newest rows: tea is not repeated

    recalled, asked = drive(store.recall(CTX), answer)
    assert [i.content for i in recalled.items] == ["likes tea", "has cats", "green tea"]
    search, recent = asked
    assert isinstance(search, Search) and search.query == "tea?" and search.limit == 3
    assert search.where.scopes == ["user/alice"] and search.where.kinds == ["memory"]
    assert isinstance(recent, Read) and recent.where.scopes == ["user/alice"]
    assert "likes tea" in store.build_context(recalled)


def test_profile_recall_reads_active_and_this_sessions_proposals_in_propose_mode() -> None:
    store = UserProfileStore(UserProfileConfig(mode=LearningMode.PROPOSE))
    name = row("user_profile", "field", {"field": "name", "value": "Alice"})
    mine = row("user_profile", "field", {"field": "role", "value": "CTO"}, session_id="s1")
    other = row("user_profile", "field", {"field": "city", "value": "Oslo"}, session_id="s9")

    def answer(request: Request) -> Any:
        assert isinstance(request, Read)
        return [name] if request.where.statuses == ("active",) else [mine, other]

    recalled, _ = drive(store.recall(CTX), answer)
    assert [i.data.value for i in recalled.items] == ["Alice"]
    assert [i.data.value for i in recalled.pending] == ["CTO"]
    text = store.build_context(recalled)
    assert "The user's name is Alice." in text and "NOT saved" in text


def test_session_context_recall_reads_one_keyed_row_of_this_session() -> None:
    store = SessionContextStore(SessionContextConfig())
    current = row(
        "session_context", "session_context", {"summary": "Planning a trip"}, key="context"
    )
    recalled, (read,) = drive(store.recall(CTX), lambda r: [current])
    assert isinstance(read, Read) and read.where.key == "context" and read.limit == 1
    assert read.where.scopes == ["user/alice/session/s1"]
    assert "Planning a trip" in store.build_context(recalled)


# ---------------------------------------------------------------------- extraction


def test_list_extraction_numbers_neighbours_and_turns_the_answer_into_operations() -> None:
    store = UserMemoryStore()
    tea, cats = memory("likes tea"), memory("has cats", version=3)
    view, asked = drive(
        store.extraction_view(CTX, Turn("I moved my cats", "ok")),
        lambda r: [SearchHit(tea, 1.0), SearchHit(cats, 0.5)] if isinstance(r, Search) else [],
    )
    # The turn's neighbours, then the items related to each of them, then the newest items.
    search, *related, newest = asked
    assert isinstance(search, Search) and search.query == "I moved my cats\nok"
    assert [r.query for r in related if isinstance(r, Search)] == ["likes tea", "has cats"]
    assert isinstance(newest, Read) and newest.where.scopes == ["user/alice"]
    assert view is not None and view.local_ids == {1: tea.id, 2: cats.id}
    assert view.data == "[1] likes tea\n[2] has cats"

    value = view.output.__args__[0].model_validate(
        {
            "add": [{"content": "The user lives in Oslo."}],
            "update": [{"id": 2, "content": "The user has two cats."}, {"id": 7, "content": "x"}],
            "delete": [2, 1, 9],  # 2 is being updated; 9 was never shown
        }
    )
    ops, (read,) = drive(store.extraction_writes(value, view, CTX), lambda r: [cats, tea])
    # One read of every row the answer names (fresh, still active, in scope).
    assert isinstance(read, Read) and list(read.where.ids or []) == [cats.id, tea.id]
    assert read.where.scopes == ["user/alice"] and read.where.statuses == ("active",)
    create, update, delete = ops
    assert isinstance(create, Create) and create.record.text == "The user lives in Oslo."
    assert create.record.scope == "user/alice" and create.embedding is None  # backend embeds
    assert isinstance(update, Update) and update.id == cats.id and update.expected_version == 3
    assert delete == SetStatus(tea.id, "deleted", "delete")


def test_list_extraction_skips_an_update_of_a_row_no_longer_active() -> None:
    store = UserMemoryStore()
    cats = memory("has cats")
    view, _ = drive(
        store.extraction_view(CTX, Turn("hi", "ok")),
        lambda r: [SearchHit(cats, 1)] if isinstance(r, Search) else [],
    )
    assert view is not None
    value = view.output.__args__[0].model_validate(
        {"update": [{"id": 1, "content": "The user has a dog."}]}
    )
    ops, _ = drive(store.extraction_writes(value, view, CTX), lambda r: [])  # deleted meanwhile
    assert ops == []


def test_profile_extraction_puts_only_changed_fields() -> None:
    store = UserProfileStore()
    name = row("user_profile", "field", {"field": "name", "value": "Alice"})
    view, _ = drive(store.extraction_view(CTX, Turn("I'm Alice, CTO", "hi")), lambda r: [name])
    assert view is not None and "Alice" in view.data
    value = store.updates.model_validate({"name": "Alice", "role": "CTO"})
    ops, (read,) = drive(store.extraction_writes(value, view, CTX), lambda r: [name])
    assert isinstance(read, Read) and read.where.scopes == ["user/alice"]
    (put,) = ops
    assert isinstance(put, Put) and put.record.key == "role"
    assert ProfileField.model_validate(put.record.content).value == "CTO"


def test_entity_extraction_writes_facts_events_relations_and_deletes_by_number() -> None:
    store = EntityMemoryStore()
    old = row("entity_memory", "fact", {"entity": "Atlas", "fact": "ships in May"})
    view, _ = drive(
        store.extraction_view(CTX, Turn("Atlas slipped", "ok")),
        lambda r: [SearchHit(old, 1)] if isinstance(r, Search) else [],
    )
    assert view is not None
    value = view.output.__args__[0].model_validate(
        {
            "facts": [{"entity": "Atlas", "fact": "ships in June"}],
            "events": [{"entity": "Atlas", "event": "slipped"}],
            "relations": [{"subject": "Alice", "relation": "leads", "object": "Atlas"}],
            "delete": [1, 1, 5],
        }
    )
    ops, _ = drive(store.extraction_writes(value, view, CTX), no_io)
    kinds = [op.record.kind for op in ops if isinstance(op, Create)]
    assert kinds == ["fact", "event", "relation"]
    assert ops[3:] == [SetStatus(old.id, "deleted", "delete")]


# ---------------------------------------------------------------------- tools


class FakeBackend(LearningBackend):
    """Answers requests from canned rows and records what it was asked: no database."""

    def __init__(self, rows: Sequence[LearningRecord] = ()) -> None:
        super().__init__(agent_id="a")
        self.rows = {r.id: r for r in rows}
        self.asked: list[Request] = []

    async def answer(self, request: Request) -> Any:
        self.asked.append(request)
        if isinstance(request, Get):
            return self.rows.get(request.id)
        if isinstance(request, Now):
            return NOW
        if isinstance(request, Apply):
            return [
                op.record if isinstance(op, Create | Put) else self.rows[op.id]
                for op in request.ops
            ]
        return list(self.rows.values())


def tools_of(store: Any, backend: FakeBackend) -> dict[str, Any]:
    store.use(backend)
    return {t.name: t for t in store.get_tools(CTX)}


def call(tool: Any, arguments: dict[str, Any]) -> str:
    outcome = asyncio.run(tool.call(json.dumps(arguments), CTX))
    return str(outcome.content)


def test_update_tool_turns_arguments_into_a_compare_and_swap_of_an_owned_row() -> None:
    cats = memory("has cats", version=4)
    backend = FakeBackend([cats])
    tools = tools_of(UserMemoryStore(UserMemoryConfig(mode=LearningMode.AGENTIC)), backend)
    reply = call(tools["update_memory"], {"id": cats.id, "content": "The user has a dog."})
    assert reply == f"Updated memory {cats.id}."
    get, apply = backend.asked
    assert isinstance(apply, Apply) and apply.turn_of == "alice"  # the write policy applies
    assert get == Get(cats.id)
    assert isinstance(apply, Apply) and apply.actor == "tool" and apply.run_id == "r1"
    (update,) = apply.ops
    assert isinstance(update, Update) and update.expected_version == 4
    assert update.content == {"content": "The user has a dog."}


def test_tools_refuse_ids_outside_the_runs_scope() -> None:
    bobs = memory("bob's secret", scope="user/bob")
    backend = FakeBackend([bobs])
    tools = tools_of(UserMemoryStore(UserMemoryConfig(mode=LearningMode.AGENTIC)), backend)
    reply = asyncio.run(tools["delete_memory"].call(json.dumps({"id": bobs.id}), CTX))
    assert reply.is_error and "No user_memory item" in reply.content
    assert not any(isinstance(r, Apply) for r in backend.asked)


def test_propose_tool_creates_a_proposed_row_and_says_it_is_not_saved() -> None:
    backend = FakeBackend()
    tools = tools_of(UserProfileStore(UserProfileConfig(mode=LearningMode.PROPOSE)), backend)
    reply = call(tools["propose_user_profile_update"], {"role": "CTO"})
    (apply,) = backend.asked
    assert isinstance(apply, Apply)
    (create,) = apply.ops
    assert isinstance(create, Create) and create.record.status == "proposed"
    assert "NOT saved" in reply and create.record.id in reply and "confirm_proposal" in reply


def test_decision_outcome_tool_updates_the_logged_decision() -> None:
    decision = row(
        "decision_log",
        "decision",
        {"decision": "Use Postgres", "reasoning": "scale"},
        scope="agent/a/ns/global",
    )
    backend = FakeBackend([decision])
    store = DecisionLogStore(DecisionLogConfig(mode=LearningMode.AGENTIC))
    tools = tools_of(store, backend)
    call(tools["record_decision_outcome"], {"id": decision.id, "outcome": "It scaled."})
    apply = backend.asked[-1]
    assert isinstance(apply, Apply)
    (update,) = apply.ops
    assert isinstance(update, Update) and update.content["outcome"] == "It scaled."


def test_a_store_alone_has_no_backend_and_says_so() -> None:
    store = UserMemoryStore()
    with pytest.raises(ConfigError, match="not part of a LearningMachine"):
        store.add("The user likes tea.")
    store.use(LearningBackend())
    with pytest.raises(ConfigError, match="already belongs"):
        store.use(LearningBackend())


def test_the_machines_stores_are_typed_attributes_and_a_missing_one_says_how_to_enable_it() -> None:
    lm = LearningMachine(user_memory=True)
    assert isinstance(lm.user_memory, UserMemoryStore)
    with pytest.raises(AttributeError, match="pass entity_memory=True"):
        lm.entity_memory  # noqa: B018
    assert not hasattr(lm, "decision_log")
    assert "__getattr__" not in vars(LearningMachine)
    with pytest.raises(NotFoundError):
        asyncio.run(FakeBackend().run(UserMemoryStore()._owned(CTX, "nope")))


# ---------------------------------------------------------------------- the backend


class CountingEmbedder(HashEmbedder):
    """Records every batch it embeds; embeds in a worker thread, like LocalEmbedder."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[list[str]] = []

    async def embed(self, texts: Sequence[str]) -> list[Vector]:
        self.calls.append(list(texts))
        vectors = await asyncio.to_thread(lambda: [self._vector(t) for t in texts])
        return [v / (np.linalg.norm(v) or 1.0) for v in vectors]


def test_one_extraction_job_embeds_all_its_writes_in_one_call(tmp_path: Any) -> None:
    embedder = CountingEmbedder()
    db = SqliteDb(db_file=str(tmp_path / "e.db"))
    lm = LearningMachine(db=db, user_memory=True, embedder=embedder)
    memories = ["The user likes tea.", "The user has two cats.", "The user lives in Oslo."]
    model = FunctionModel(
        extraction_model("ok", {"user_memory": {"add": [{"content": m} for m in memories]}})
    )
    Agent(model=model, db=db, learning=lm).run("Tea, cats, Oslo.", user_id="alice")
    assert lm.wait_for_jobs("alice", timeout=30)
    writes = [c for c in embedder.calls if set(c) & set(memories)]
    assert writes == [memories]
    stored = db.load_vectors(lm.user_memory._where(RunContext("", "", "alice")))[0]
    assert len(stored) == 3  # every row got its vector from that one call
    db.close()
