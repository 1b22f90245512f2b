"""Namespaces: user-scoped data never crosses users; global is shared; groups stay in-group."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kern._sync import run_sync
from kern.agent import Agent
from kern.context import RunContext
from kern.errors import NotFoundError
from kern.learn import (
    EntityMemoryConfig,
    LearnedKnowledgeConfig,
    LearningMachine,
    LearningMode,
    Recalled,
)
from kern.models.base import ModelResponse, ToolCall, ToolResultMessage
from kern.models.testing import FunctionModel, TestModel


def lm_for(db: Any, namespace: str) -> LearningMachine:
    machine = LearningMachine(
        db=db,
        entity_memory=EntityMemoryConfig(mode=LearningMode.AGENTIC, namespace=namespace),
        learned_knowledge=LearnedKnowledgeConfig(mode=LearningMode.AGENTIC, namespace=namespace),
    )
    Agent(model=TestModel(), db=db, learning=machine)
    return machine


def ctx(user: str) -> RunContext:
    return RunContext(run_id=f"r-{user}", session_id=f"s-{user}", user_id=user, input="Atlas")


def recall(machine: LearningMachine, store: Any, user: str) -> Recalled:
    """A store's recall for ``user``, driven by the machine's backend as a run does."""
    return run_sync(machine.backend.call(store.recall, ctx(user)))  # type: ignore[no-any-return]


def visible(machine: LearningMachine, user: str) -> dict[str, Any]:
    """Everything ``user`` can reach: recall, direct API, search tools."""
    recalled = {
        name: list(r.items)
        for name, r in ((n, recall(machine, s, user)) for n, s in machine.stores.items())
    }
    tools = {t.name: t for s in machine.stores.values() for t in s.get_tools(ctx(user))}
    import asyncio

    tool_out = asyncio.run(tools["search_entities"].call('{"query": "Atlas"}', ctx(user))).content
    tool_out += asyncio.run(tools["search_learnings"].call('{"query": "Atlas"}', ctx(user))).content
    return {
        "recall": sum(len(v) for v in recalled.values()),
        "api": len(machine.entity_memory.search("Atlas", user_id=user))
        + len(machine.learned_knowledge.list(user_id=user)),
        "tools": "Atlas" in tool_out,
    }


def seed(machine: LearningMachine, user: str) -> tuple[str, str]:
    fact = machine.entity_memory.add_fact("Atlas", "Atlas ships in May.", user_id=user)
    learning = machine.learned_knowledge.add(
        {"title": "Atlas", "learning": "Atlas deploys need a freeze."}, user_id=user
    )
    return fact.id, learning.id


def test_user_namespace_is_private(db: Any) -> None:
    machine = lm_for(db, "user")
    fact_id, learning_id = seed(machine, "alice")
    assert visible(machine, "alice") == {"recall": 2, "api": 2, "tools": True}
    assert visible(machine, "bob") == {"recall": 0, "api": 0, "tools": False}
    assert machine.entity_memory.get(fact_id, user_id="bob") is None
    assert machine.learned_knowledge.get(learning_id, user_id="bob") is None
    with pytest.raises(NotFoundError, match="No entity_memory item"):
        machine.entity_memory.delete(fact_id, user_id="bob")
    assert machine.entity_memory.get(fact_id, user_id="alice") is not None


def test_agentic_tools_cannot_touch_another_users_items_by_id(db: Any) -> None:
    machine = lm_for(db, "user")
    fact_id, _ = seed(machine, "alice")
    model = FunctionModel(
        lambda r: (
            ModelResponse(
                tool_calls=(ToolCall("c", "forget_entity_item", json.dumps({"id": fact_id})),)
            )
            if not any(isinstance(m, ToolResultMessage) for m in r.messages)
            else ModelResponse("done")
        )
    )
    Agent(model=model, db=db, learning=machine).run("forget it", user_id="bob", session_id="b")
    result = next(m for m in model.requests[-1].messages if isinstance(m, ToolResultMessage))
    assert result.is_error
    assert machine.entity_memory.get(fact_id, user_id="alice") is not None


def test_global_namespace_is_shared(db: Any) -> None:
    machine = lm_for(db, "global")
    seed(machine, "alice")
    assert visible(machine, "bob") == {"recall": 2, "api": 2, "tools": True}


def test_custom_namespace_is_shared_only_within_itself(db: Any) -> None:
    engineering = lm_for(db, "engineering")
    sales = lm_for(db, "sales")
    seed(engineering, "alice")
    assert visible(engineering, "bob")["api"] == 2
    assert visible(sales, "bob") == {"recall": 0, "api": 0, "tools": False}
    assert visible(sales, "alice") == {"recall": 0, "api": 0, "tools": False}


def test_user_memories_never_cross_users(db: Any) -> None:
    machine = LearningMachine(db=db, user_memory=True)
    Agent(model=TestModel(), db=db, learning=machine)
    item = machine.user_memory.add("Alice's locker code is 4411.", user_id="alice")
    assert machine.user_memory.search("locker code", user_id="bob") == []
    assert machine.user_memory.get(item.id, user_id="bob") is None
    assert machine.user_memory.list(user_id="bob") == []
    assert recall(machine, machine.user_memory, "bob").items == []
