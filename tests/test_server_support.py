"""What the server tests share (no tests here): tokens, a learning agent whose model is a
script, seeded users, and a snapshot of every table to prove a refused request changed
nothing."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any, Literal

import pytest
from pydantic import Field
from sqlalchemy import delete, select

from kern._sync import wait_for_background
from kern.agent import Agent
from kern.db.base import JobRecord
from kern.db.schema import metadata
from kern.db.sqlite import SqliteDb
from kern.learn import (
    DecisionLogConfig,
    EntityFact,
    EntityMemoryConfig,
    LearnedKnowledgeConfig,
    LearningMachine,
    LearningMode,
    SessionContextConfig,
    UserMemoryConfig,
    UserProfile,
    UserProfileConfig,
)
from kern.models.base import ModelRequest, ModelResponse, ToolCall, ToolResultMessage, UserMessage
from kern.models.testing import FunctionModel

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi import FastAPI
from fastapi.testclient import TestClient

from kern.server import TokenConfig, create_app

ADMIN = "admin-token-1f2e3d4c5b6a7980"
ALICE = "alice-token-0a1b2c3d4e5f6a7b"
BOB = "bob-token-9z8y7x6w5v4u3t2s1"
TOKENS = TokenConfig.of(admin=[ADMIN], users={ALICE: "alice", BOB: "bob"})


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class CustomerProfile(UserProfile):
    plan: Literal["free", "pro", "enterprise"] | None = Field(None, description="Billing plan")


class CompanyFact(EntityFact):
    ticker: str | None = Field(None, description="Stock ticker, for listed companies")


def answer(request: ModelRequest) -> ModelResponse | str | dict[str, Any]:
    """The scripted model. Extraction: nothing to learn. "propose: X" → the propose_memory
    tool; otherwise it says what it recalled about food, so tests can see recall work."""
    if request.output_schema is not None:
        return dict.fromkeys(request.output_schema.schema.get("properties", {}))
    last_user = next(m for m in reversed(request.messages) if isinstance(m, UserMessage))
    answered = isinstance(request.messages[-1], ToolResultMessage)
    tools = {t.name for t in request.tools}
    if last_user.content.startswith("propose: ") and not answered and "propose_memory" in tools:
        content = last_user.content.removeprefix("propose: ")
        return ModelResponse(
            tool_calls=(ToolCall("call-1", "propose_memory", json.dumps({"content": content})),)
        )
    if answered:
        return "I noted that; please confirm."
    recalled = request.instructions or ""
    if "vegetarian" in recalled:
        return "You are vegetarian, so: a mushroom risotto."
    return "I do not know your diet yet."


def machine(**overrides: Any) -> LearningMachine:
    """Every built-in store, with custom schemas, propose mode for memories, agentic shared
    stores, a content-sensitive embedder (vectors exist, so forget must remove them)."""
    options: dict[str, Any] = {
        "user_profile": UserProfileConfig(schema=CustomerProfile),
        "user_memory": UserMemoryConfig(mode=LearningMode.PROPOSE),
        "session_context": SessionContextConfig(),
        "entity_memory": EntityMemoryConfig(mode=LearningMode.AGENTIC, schema=CompanyFact),
        "learned_knowledge": LearnedKnowledgeConfig(mode=LearningMode.AGENTIC),
        "decision_log": DecisionLogConfig(mode=LearningMode.AGENTIC),
        "embedder": "hash",
        "background": False,
        "agent_id": "helper",
    }
    options.update(overrides)
    return LearningMachine(**options)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SqliteDb, Agent, FastAPI]]:
    """One database, agent and app per test module: building a FastAPI app with a route per
    store costs about a second, so tests share it and ``server_db`` empties the database."""
    db = SqliteDb(db_file=str(tmp_path_factory.mktemp("server") / "server.db"))
    agent = Agent(model=FunctionModel(answer), db=db, learning=machine())
    yield db, agent, create_app(agent, tokens=TOKENS)
    wait_for_background()
    db.close()


@pytest.fixture
def server_db(served: tuple[SqliteDb, Agent, FastAPI]) -> SqliteDb:
    """The shared database, emptied (every table; the FTS index follows by trigger)."""
    db = served[0]
    with db.transaction() as conn:
        for table in reversed(metadata.sorted_tables):
            if table.name != "kern_migrations":
                conn.execute(delete(table))
    return db


@pytest.fixture
def agent(served: tuple[SqliteDb, Agent, FastAPI], server_db: SqliteDb) -> Agent:
    return served[1]


@pytest.fixture
def app(served: tuple[SqliteDb, Agent, FastAPI], server_db: SqliteDb) -> FastAPI:
    return served[2]


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


def seed(agent: Agent, user: str = "alice") -> dict[str, str]:
    """A user with something in every store, a pending proposal, a deleted memory and a
    session with two runs; returns the ids tests need."""
    lm = agent.get_learning_machine()
    assert lm is not None
    session = f"{user}-s1"
    agent.run("Hello there", user_id=user, session_id=session)
    agent.run(f"propose: {user} is vegetarian", user_id=user, session_id=session)
    (proposal,) = lm.proposals.list(user_id=user)
    memory = lm.user_memory.add(f"{user} likes hiking in the Alps", user_id=user)
    gone = lm.user_memory.add(f"{user} once lived in Oslo", user_id=user)
    lm.user_memory.update(memory.id, f"{user} loves hiking in the Alps", user_id=user)
    lm.user_memory.delete(gone.id, user_id=user)
    lm.user_profile.update({"name": user.title(), "plan": "pro"}, user_id=user)
    lm.session_context.set(session, {"goal": "plan dinner"}, user_id=user)
    fact = lm.entity_memory.add_fact(f"Acme-{user}", "makes anvils", user_id=user, ticker="ACME")
    event = lm.entity_memory.add_event(f"Acme-{user}", "moved to Tucson", user_id=user)
    relation = lm.entity_memory.add_relation(user, "works_at", f"Acme-{user}", user_id=user)
    learning = lm.learned_knowledge.add(f"Ask {user} about dietary needs first", user_id=user)
    decision = lm.decision_log.add(
        {"decision": f"Suggest risotto to {user}", "reasoning": "vegetarian"}, user_id=user
    )
    return {
        "session": session,
        "proposal": proposal.id,
        "memory": memory.id,
        "deleted_memory": gone.id,
        "fact": fact.id,
        "event": event.id,
        "relation": relation.id,
        "learning": learning.id,
        "decision": decision.id,
    }


def failed_job(agent: Agent, user: str, error: str = "ModelHTTPError: HTTP 500") -> JobRecord:
    """An extraction job of ``user`` that failed for good (as a broken model server leaves
    it), through the queue's own calls."""
    lm = agent.get_learning_machine()
    assert lm is not None
    job = JobRecord(
        id=f"job-{user}-{uuid.uuid4().hex[:8]}",
        kind="extract",
        payload={"user": f"{user} says hi", "assistant": "hello", "input": f"{user} says hi"},
        user_id=user,
        session_id=f"{user}-s1",
        max_attempts=1,
    )
    lm.db.enqueue_job(job)
    claimed = lm.db.claim_job(job_id=job.id)
    assert claimed is not None
    lm.db.fail_job(claimed, error)
    (failed,) = lm.db.list_jobs(job_id=job.id)
    assert failed.status == "failed"
    return failed


def snapshot(db: SqliteDb) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every kern table (the FTS index follows ``learnings`` by trigger)."""
    with db.transaction(write=False) as conn:
        return {
            table.name: [tuple(row) for row in conn.execute(select(table)).all()]
            for table in metadata.sorted_tables
        }
