"""Propose mode is enforced in the data, not by a prompt."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kern.agent import Agent
from kern.errors import ConflictError
from kern.learn import LearningMachine, LearningMode, UserMemoryConfig, UserProfileConfig
from kern.models.base import ModelRequest, ModelResponse, ToolCall, ToolResultMessage
from kern.models.testing import FunctionModel


def scripted(*steps: ModelResponse) -> FunctionModel:
    queue = list(steps)
    return FunctionModel(lambda request: queue.pop(0) if queue else ModelResponse("done"))


def call(name: str, **args: Any) -> ModelResponse:
    return ModelResponse(tool_calls=(ToolCall(f"c-{name}", name, json.dumps(args)),))


def results(request: ModelRequest) -> list[ToolResultMessage]:
    return [m for m in request.messages if isinstance(m, ToolResultMessage)]


def machine(db: Any) -> LearningMachine:
    return LearningMachine(
        db=db,
        user_memory=UserMemoryConfig(mode=LearningMode.PROPOSE),
        user_profile=UserProfileConfig(mode=LearningMode.PROPOSE),
    )


def test_a_proposal_is_invisible_to_recall_until_approved(db: Any) -> None:
    lm = machine(db)
    model = scripted(call("propose_memory", content="The user is vegetarian."), ModelResponse("ok"))
    agent = Agent(model=model, db=db, learning=lm)
    agent.run("I'm vegetarian", user_id="u", session_id="s1")
    (proposal,) = lm.proposals.list(user_id="u")
    assert proposal.status == "proposed" and proposal.content == "The user is vegetarian."
    assert lm.user_memory.search("vegetarian", user_id="u") == []
    assert lm.user_memory.list(user_id="u") == []

    # Shown as pending (with its id) in the session that proposed it, never as knowledge.
    agent.run("anything vegetarian?", user_id="u", session_id="s1")
    same_session = model.requests[-1].instructions or ""
    assert "NOT saved" in same_session and proposal.id in same_session
    assert "<user_memory>" not in same_session
    agent.run("anything vegetarian?", user_id="u", session_id="s2")
    assert "vegetarian" not in (model.requests[-1].instructions or "")

    lm.proposals.approve(proposal.id)
    assert [m.content for m in lm.user_memory.search("vegetarian", user_id="u")] == [
        "The user is vegetarian."
    ]
    history = db.history(learning_id=proposal.id)
    assert [h.action for h in history] == ["approve", "create"]


def test_reject_and_double_decisions(db: Any) -> None:
    lm = machine(db)
    agent = Agent(
        model=scripted(call("propose_memory", content="Likes jazz."), ModelResponse("ok")),
        db=db,
        learning=lm,
    )
    agent.run("I like jazz", user_id="u", session_id="s")
    (proposal,) = lm.proposals.list(user_id="u")
    lm.proposals.reject(proposal.id)
    assert lm.proposals.list(user_id="u") == []
    assert lm.user_memory.search("jazz", user_id="u") == []
    with pytest.raises(ConflictError):
        lm.proposals.approve(proposal.id)


def test_confirmation_in_the_same_run_is_refused_and_works_in_a_later_one(db: Any) -> None:
    lm = machine(db)
    proposal_ids: list[str] = []

    def model_fn(request: ModelRequest) -> ModelResponse:
        done = results(request)
        if request.messages[-1].__class__.__name__ == "UserMessage":
            if "yes" in request.messages[-1].content:  # type: ignore[union-attr]
                return call("confirm_proposal", proposal_id=proposal_ids[0])
            return call("propose_user_profile_update", role="pilot")
        last = done[-1]
        if last.name == "propose_user_profile_update":
            proposal_ids.append(last.content.split()[1].rstrip(","))
            return call("confirm_proposal", proposal_id=proposal_ids[0])  # sneaky: same run
        return ModelResponse(last.content)

    agent = Agent(model=FunctionModel(model_fn), db=db, learning=lm)
    out = agent.run("I'm a pilot", user_id="u", session_id="s")
    assert "Refused" in (out.content or "")
    assert lm.user_profile.get(user_id="u").role is None

    out = agent.run("yes, save it", user_id="u", session_id="s")
    assert "approved" in (out.content or "")
    assert lm.user_profile.get(user_id="u").role == "pilot"


def test_another_user_cannot_confirm_a_proposal(db: Any) -> None:
    lm = machine(db)
    agent = Agent(
        model=scripted(call("propose_memory", content="Secret."), ModelResponse("ok")),
        db=db,
        learning=lm,
    )
    agent.run("x", user_id="alice", session_id="s")
    (proposal,) = lm.proposals.list(user_id="alice")
    model = scripted(call("confirm_proposal", proposal_id=proposal.id), ModelResponse("ok"))
    Agent(model=model, db=db, learning=lm).run("yes", user_id="mallory", session_id="m")
    (result,) = results(model.requests[-1])
    assert result.is_error and "No pending proposal" in result.content
    assert lm.proposals.list(user_id="alice")[0].status == "proposed"
