"""The REST API: runs (plain and SSE), learnings CRUD with filters, pagination and history,
proposals, custom schemas in the API, tokens and error mapping."""

from __future__ import annotations

import json
import logging
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from kern.agent import Agent
from kern.db.sqlite import SqliteDb
from kern.errors import ConfigError
from kern.learn import EntityMemoryConfig, LearningMode
from kern.models.testing import FunctionModel, TestModel
from kern.server import TokenConfig, create_app, load_app
from kern.server.app import UI_DIR
from tests.test_server_support import (
    ADMIN,
    ALICE,
    BOB,
    TOKENS,
    agent,
    answer,
    app,
    auth,
    client,
    machine,
    seed,
    served,
    server_db,
)

__all__ = ["agent", "app", "client", "served", "server_db"]  # fixtures, used by name

A = auth(ADMIN)
AL = auth(ALICE)
BO = auth(BOB)


def items(client: TestClient, store: str, user: str = "alice", token: str = ADMIN, **params: Any):
    response = client.get(
        f"/v1/users/{user}/stores/{store}/items", headers=auth(token), params=params
    )
    assert response.status_code == 200, response.text
    return response.json()


def sse_events(text: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.split("\n"))
        events.append((lines["event"], json.loads(lines["data"])))
    return events


# --------------------------------------------------------------------------- runs


def test_a_plain_run_answers_with_what_was_recalled(client: TestClient, agent: Agent) -> None:
    seed(agent)
    lm = agent.get_learning_machine()
    assert lm is not None
    lm.user_memory.add("alice is vegetarian", user_id="alice")
    response = client.post("/v1/users/alice/runs", headers=AL, json={"message": "dinner ideas?"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["content"] == "You are vegetarian, so: a mushroom risotto."
    assert "alice is vegetarian" in body["recalled"]
    assert body["user_id"] == "alice" and body["session_id"]
    assert [m["role"] for m in body["messages"]] == ["user", "assistant"]
    # This machine learns before answering (background=False): the job has run.
    assert body["learning"]["state"] == "done" and body["learning"]["error"] is None
    jobs = client.get("/v1/users/alice/jobs", headers=AL).json()
    assert body["learning"]["job_id"] in [job["id"] for job in jobs]
    # Continuing the session keeps it.
    again = client.post(
        "/v1/users/alice/runs",
        headers=AL,
        json={"message": "and dessert?", "session_id": body["session_id"]},
    )
    assert again.json()["session_id"] == body["session_id"]


def test_a_streamed_run_sends_events_and_ends_with_the_output(client: TestClient) -> None:
    response = client.post(
        "/v1/users/alice/runs", headers=AL, json={"message": "hi there", "stream": True}
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response.text)
    names = [name for name, _ in events]
    assert names[0] == "run_started" and names[-1] == "run_completed"
    assert "content_delta" in names
    text = "".join(data["text"] for name, data in events if name == "content_delta")
    assert text == events[-1][1]["content"] == "I do not know your diet yet."
    assert "recalled" in events[-1][1]


def test_a_streamed_run_shows_tool_calls(client: TestClient) -> None:
    response = client.post(
        "/v1/users/alice/runs",
        headers=AL,
        json={"message": "propose: alice likes tea", "stream": True},
    )
    names = [name for name, _ in sse_events(response.text)]
    assert names.index("tool_call_started") < names.index("tool_call_completed")


def test_a_failing_model_is_an_error_event_or_a_502(server_db: SqliteDb) -> None:
    from kern.errors import ModelError

    def broken(request: Any) -> str:
        raise ModelError("the provider is down", provider="fake")

    app = create_app(Agent(model=FunctionModel(broken), db=server_db), tokens=TOKENS)
    with TestClient(app) as client:
        plain = client.post("/v1/users/u/runs", headers=A, json={"message": "hi"})
        assert plain.status_code == 502
        assert plain.json() == {"detail": "fake: the provider is down", "error": "ModelError"}
        streamed = client.post(
            "/v1/users/u/runs", headers=A, json={"message": "hi", "stream": True}
        )
        assert sse_events(streamed.text)[-1] == (
            "error",
            {"error": "ModelError", "detail": "fake: the provider is down", "status": 502},
        )


def test_a_run_whose_learning_failed_says_so_in_its_response(server_db: SqliteDb) -> None:
    def no_json_extraction(request: Any) -> str:
        return "not JSON" if request.output_schema is not None else "Hello."

    lm = machine(background=False)
    app = create_app(
        Agent(model=FunctionModel(no_json_extraction), db=server_db, learning=lm), tokens=TOKENS
    )
    with TestClient(app) as client:
        body = client.post("/v1/users/u/runs", headers=A, json={"message": "I'm Bo."}).json()
        streamed = client.post(
            "/v1/users/u/runs", headers=A, json={"message": "I'm Bo.", "stream": True}
        )
    assert body["content"] == "Hello."
    assert body["learning"]["state"] == "failed"
    assert "extraction output invalid" in body["learning"]["error"]
    assert sse_events(streamed.text)[-1][1]["learning"]["state"] == "failed"


def test_a_run_without_learning_has_no_learning_in_its_response(server_db: SqliteDb) -> None:
    app = create_app(Agent(model=TestModel("hi"), db=server_db), tokens=TOKENS)
    with TestClient(app) as client:
        body = client.post("/v1/users/u/runs", headers=A, json={"message": "hi"}).json()
    assert body["learning"] is None


def test_a_session_of_another_user_cannot_be_continued(client: TestClient, agent: Agent) -> None:
    ids = seed(agent, "bob")
    for stream in (False, True):
        response = client.post(
            "/v1/users/alice/runs",
            headers=AL,
            json={"message": "hi", "session_id": ids["session"], "stream": stream},
        )
        assert response.status_code == 403
        assert "another user" in response.json()["detail"]


def test_run_input_is_validated(client: TestClient) -> None:
    for body in ({}, {"message": ""}, {"message": "hi", "bogus": 1}, {"message": 3}):
        assert client.post("/v1/users/alice/runs", headers=AL, json=body).status_code == 422


# --------------------------------------------------------------------------- items


def test_list_filters_and_pagination(client: TestClient, agent: Agent) -> None:
    lm = agent.get_learning_machine()
    assert lm is not None
    for n in range(7):
        lm.user_memory.add(f"memory number {n}", user_id="alice")
    page = items(client, "user_memory", limit=3, offset=0)
    assert page["total"] == 7 and page["limit"] == 3 and len(page["items"]) == 3
    assert [i["content"] for i in page["items"]] == [f"memory number {n}" for n in (6, 5, 4)]
    last = items(client, "user_memory", limit=3, offset=6)
    assert [i["content"] for i in last["items"]] == ["memory number 0"]
    deleted = page["items"][0]["id"]
    assert (
        client.delete(f"/v1/users/alice/stores/user_memory/items/{deleted}", headers=AL).status_code
        == 200
    )
    assert items(client, "user_memory")["total"] == 6
    assert [i["id"] for i in items(client, "user_memory", status="deleted")["items"]] == [deleted]
    found = items(client, "user_memory", q="number 3")
    assert found["total"] is None and found["items"][0]["content"] == "memory number 3"
    assert found["items"][0]["score"] is not None
    bad = client.get("/v1/users/alice/stores/user_memory/items", headers=A, params={"limit": 0})
    assert bad.status_code == 422


def test_entity_memory_kinds_create_filter_and_patch(client: TestClient) -> None:
    base = "/v1/users/alice/stores/entity_memory/items"
    fact = client.post(
        base,
        headers=A,
        json={"kind": "fact", "data": {"entity": "Acme", "fact": "anvils", "ticker": "ACM"}},
    )
    assert fact.status_code == 201, fact.text
    assert fact.json()["data"]["ticker"] == "ACM"  # the custom schema field
    event = client.post(
        base, headers=A, json={"kind": "event", "data": {"entity": "Acme", "event": "IPO"}}
    )
    relation = client.post(
        base,
        headers=A,
        json={"kind": "relation", "data": {"subject": "a", "relation": "r", "object": "b"}},
    )
    assert event.status_code == relation.status_code == 201
    # "kind" picks the schema: an event's fields are refused as a fact.
    wrong = client.post(
        base, headers=A, json={"kind": "fact", "data": {"entity": "x", "event": "y"}}
    )
    assert wrong.status_code == 422
    assert [i["kind"] for i in items(client, "entity_memory", kind="event")["items"]] == ["event"]
    assert client.get(base, headers=A, params={"kind": "memory"}).status_code == 422
    # PATCH changes only the fields sent, validated against the row's own kind.
    event_id = event.json()["id"]
    patched = client.patch(f"{base}/{event_id}", headers=A, json={"data": {"date": "2026-01-02"}})
    assert patched.status_code == 200, patched.text
    assert patched.json()["data"] == {"entity": "Acme", "event": "IPO", "date": "2026-01-02"}
    assert patched.json()["version"] == 2
    history = client.get(f"{base}/{event_id}/history", headers=A).json()
    assert [h["action"] for h in history] == ["update", "create"]
    assert history[0]["before"]["content"]["date"] is None


def test_patch_with_a_stale_version_is_a_409_and_changes_nothing(client: TestClient) -> None:
    base = "/v1/users/alice/stores/learned_knowledge/items"
    created = client.post(base, headers=A, json={"data": {"learning": "Check the units"}}).json()
    url = f"{base}/{created['id']}"
    ok = client.patch(url, headers=A, json={"data": {"title": "Units"}, "version": 1})
    assert ok.status_code == 200 and ok.json()["version"] == 2
    stale = client.patch(url, headers=A, json={"data": {"title": "Other"}, "version": 1})
    assert stale.status_code == 409 and stale.json()["error"] == "ConflictError"
    assert client.get(url, headers=A).json()["data"]["title"] == "Units"
    invalid = client.patch(url, headers=A, json={"data": {"learning": None}})
    assert invalid.status_code == 422
    assert client.delete(url, headers=A).status_code == 200
    again = client.delete(url, headers=A)
    assert again.status_code == 409 and "deleted" in again.json()["detail"]


def test_decision_log_crud(client: TestClient) -> None:
    base = "/v1/users/alice/stores/decision_log/items"
    body = {"data": {"decision": "Use Postgres", "reasoning": "scale", "confidence": 0.7}}
    created = client.post(base, headers=A, json=body)
    assert created.status_code == 201
    assert (
        client.post(base, headers=A, json={"data": {**body["data"], "confidence": 3}}).status_code
        == 422
    )
    url = f"{base}/{created.json()['id']}"
    done = client.patch(url, headers=A, json={"data": {"outcome": "worked"}})
    assert done.json()["data"]["outcome"] == "worked" and done.json()["data"]["confidence"] == 0.7


def test_profile_fields_are_items_and_the_profile_is_typed(client: TestClient) -> None:
    base = "/v1/users/alice/stores/user_profile/items"
    created = client.post(base, headers=AL, json={"field": "plan", "value": "pro"})
    assert created.status_code == 201, created.text
    assert client.post(base, headers=AL, json={"field": "plan", "value": "gold"}).status_code == 422
    assert client.post(base, headers=AL, json={"field": "shoe", "value": "42"}).status_code == 422
    assert client.post(base, headers=AL, json={"field": "name", "value": None}).status_code == 422
    patched = client.patch(
        f"{base}/{created.json()['id']}", headers=AL, json={"value": "enterprise"}
    )
    assert patched.status_code == 200 and patched.json()["data"] == {
        "field": "plan",
        "value": "enterprise",
    }
    set_more = client.patch(
        "/v1/users/alice/profile", headers=AL, json={"name": "Alice", "role": "CTO"}
    )
    assert set_more.status_code == 200, set_more.text
    profile = client.get("/v1/users/alice/profile", headers=AL).json()
    assert profile["profile"]["plan"] == "enterprise" and profile["profile"]["role"] == "CTO"
    assert sorted(f["data"]["field"] for f in profile["fields"]) == ["name", "plan", "role"]
    assert (
        client.patch("/v1/users/alice/profile", headers=AL, json={"plan": "gold"}).status_code
        == 422
    )


def test_session_contexts(client: TestClient, agent: Agent) -> None:
    ids = seed(agent)
    url = f"/v1/users/alice/sessions/{ids['session']}/context"
    assert client.get(url, headers=AL).json()["goal"] == "plan dinner"
    assert client.get("/v1/users/alice/sessions/nope/context", headers=AL).status_code == 404
    base = "/v1/users/alice/stores/session_context/items"
    (context,) = items(client, "session_context")["items"]
    assert context["session_id"] == ids["session"]
    merged = client.post(
        base, headers=AL, json={"session_id": ids["session"], "data": {"plan": ["shop", "cook"]}}
    )
    assert merged.status_code == 201
    assert merged.json()["data"]["goal"] == "plan dinner" and merged.json()["data"]["plan"] == [
        "shop",
        "cook",
    ]
    new = client.post(base, headers=AL, json={"session_id": "fresh", "data": {"summary": "new"}})
    assert new.status_code == 201 and new.json()["session_id"] == "fresh"
    assert len(items(client, "session_context")["items"]) == 2
    sessions = client.get("/v1/users/alice/sessions", headers=AL).json()
    assert [s["session_id"] for s in sessions] == [ids["session"]]
    messages = client.get(f"/v1/users/alice/sessions/{ids['session']}/messages", headers=AL).json()
    assert messages[0] == {"role": "user", "content": "Hello there"}


def test_search_across_stores(client: TestClient, agent: Agent) -> None:
    seed(agent)
    found = client.get("/v1/users/alice/search", headers=AL, params={"q": "hiking Alps"}).json()
    assert [i["content"] for i in found["results"]["user_memory"]] == [
        "alice loves hiking in the Alps"
    ]
    anvils = client.get("/v1/users/alice/search", headers=AL, params={"q": "anvils"}).json()
    assert anvils["results"]["entity_memory"][0]["data"]["ticker"] == "ACME"
    assert client.get("/v1/users/alice/search", headers=AL).status_code == 422


def test_unknown_store_and_item(client: TestClient, agent: Agent) -> None:
    ids = seed(agent)
    missing = client.get("/v1/users/alice/stores/nope/items", headers=A)
    assert missing.status_code == 404 and "user_memory" in missing.json()["detail"]
    assert client.get("/v1/users/alice/stores/user_memory/items/nope", headers=A).status_code == 404
    # An item is addressed through its own store only.
    wrong_store = f"/v1/users/alice/stores/learned_knowledge/items/{ids['memory']}"
    assert client.get(wrong_store, headers=A).status_code == 404


# --------------------------------------------------------------------------- shared namespaces


def test_shared_items_are_readable_by_users_and_changed_by_admins_only(
    client: TestClient, agent: Agent
) -> None:
    ids = seed(agent, "alice")
    # Bob reads the global entity memory alice's runs wrote, through his own path…
    bob_view = items(client, "entity_memory", user="bob", token=BOB)
    assert {i["id"] for i in bob_view["items"]} == {ids["fact"], ids["event"], ids["relation"]}
    url = f"/v1/users/bob/stores/entity_memory/items/{ids['fact']}"
    fact = client.get(url, headers=BO).json()
    # The content is shared; who (and which session or run) produced it is not.
    assert fact["data"]["fact"] == "makes anvils"
    assert fact["user_id"] is fact["session_id"] is fact["run_id"] is None
    assert all(i["user_id"] is None for i in bob_view["items"])
    assert all(e["run_id"] is None for e in client.get(f"{url}/history", headers=BO).json())
    assert client.get(url, headers=A).json()["user_id"] == "alice"
    # …but neither he nor alice herself may change shared items with a user token.
    for token, user in ((BOB, "bob"), (ALICE, "alice")):
        base = f"/v1/users/{user}/stores/entity_memory/items"
        assert (
            client.patch(
                f"{base}/{ids['fact']}", headers=auth(token), json={"data": {"fact": "x"}}
            ).status_code
            == 403
        )
        assert client.delete(f"{base}/{ids['fact']}", headers=auth(token)).status_code == 403
        create = client.post(
            base, headers=auth(token), json={"kind": "fact", "data": {"entity": "E", "fact": "f"}}
        )
        assert create.status_code == 403
    assert client.patch(url, headers=A, json={"data": {"fact": "makes rockets"}}).status_code == 200


def test_a_user_namespace_is_private_and_writable(server_db: SqliteDb) -> None:
    config = EntityMemoryConfig(mode=LearningMode.AGENTIC, namespace="user")
    agent = Agent(model=FunctionModel(answer), db=server_db, learning=machine(entity_memory=config))
    with TestClient(create_app(agent, tokens=TOKENS)) as client:
        base = "/v1/users/alice/stores/entity_memory/items"
        created = client.post(
            base, headers=AL, json={"kind": "fact", "data": {"entity": "E", "fact": "f"}}
        )
        assert created.status_code == 201
        assert items(client, "entity_memory", user="bob", token=BOB)["items"] == []
        stores = {s["name"]: s for s in client.get("/v1/stores", headers=BO).json()}
        assert stores["entity_memory"]["shared"] is False
        assert stores["learned_knowledge"]["shared"] is True
        assert stores["session_context"]["per_session"] is True


def test_another_users_proposal_in_a_shared_namespace_stays_private(server_db: SqliteDb) -> None:
    import asyncio

    from kern.context import RunContext
    from kern.learn import LearnedKnowledgeConfig

    config = LearnedKnowledgeConfig(mode=LearningMode.PROPOSE)
    lm = machine(learned_knowledge=config)
    agent = Agent(model=FunctionModel(answer), db=server_db, learning=lm)
    ctx = RunContext(run_id="r1", session_id="bob-s", user_id="bob", agent_id="helper")
    (tool,) = [t for t in lm.learned_knowledge.get_tools(ctx) if t.name == "propose_learning"]
    asyncio.run(tool.call('{"learning": "Always cc the CEO"}', ctx))
    (proposal,) = lm.proposals.list(user_id="bob")
    with TestClient(create_app(agent, tokens=TOKENS)) as client:
        base = "/v1/users/alice/stores/learned_knowledge/items"
        assert items(client, "learned_knowledge", token=ALICE, status="proposed")["items"] == []
        assert client.get(f"{base}/{proposal.id}", headers=AL).status_code == 404
        assert client.get(f"{base}/{proposal.id}/history", headers=AL).status_code == 404
        assert client.post(f"/v1/proposals/{proposal.id}/approve", headers=AL).status_code == 404
        mine = items(client, "learned_knowledge", user="bob", token=BOB, status="proposed")
        assert [i["id"] for i in mine["items"]] == [proposal.id]
        assert items(client, "learned_knowledge", status="proposed")["total"] == 1  # admin
        # Bob proposed it but may not approve shared knowledge himself: an admin does.
        refused = client.post(f"/v1/proposals/{proposal.id}/approve", headers=BO)
        assert refused.status_code == 403 and "only an admin" in refused.json()["detail"]
        # Once approved it is shared knowledge, for alice too (without bob's ids).
        assert client.post(f"/v1/proposals/{proposal.id}/approve", headers=A).status_code == 200
        shared = client.get(f"{base}/{proposal.id}", headers=AL).json()
        assert shared["content"] == "Always cc the CEO" and shared["user_id"] is None


# --------------------------------------------------------------------------- proposals


def test_approving_a_proposal_makes_it_recalled(client: TestClient, agent: Agent) -> None:
    ids = seed(agent)
    pending = client.get("/v1/users/alice/proposals", headers=AL).json()
    assert [p["id"] for p in pending] == [ids["proposal"]]
    assert client.get("/v1/proposals", headers=A, params={"user_id": "alice"}).json() == pending
    before = client.post("/v1/users/alice/runs", headers=AL, json={"message": "dinner?"}).json()
    assert "vegetarian" not in before["recalled"]
    approved = client.post(f"/v1/proposals/{ids['proposal']}/approve", headers=AL)
    assert approved.status_code == 200 and approved.json()["status"] == "active"
    after = client.post("/v1/users/alice/runs", headers=AL, json={"message": "dinner?"}).json()
    assert "alice is vegetarian" in after["recalled"]
    assert after["content"] == "You are vegetarian, so: a mushroom risotto."
    twice = client.post(f"/v1/proposals/{ids['proposal']}/approve", headers=AL)
    assert twice.status_code == 409
    history = client.get(
        f"/v1/users/alice/stores/user_memory/items/{ids['proposal']}/history", headers=AL
    )
    assert [h["action"] for h in history.json()] == ["approve", "create"]


def test_rejecting_and_the_owner_rule(client: TestClient, agent: Agent) -> None:
    alice = seed(agent, "alice")
    bob = seed(agent, "bob")
    assert client.post(f"/v1/proposals/{alice['proposal']}/reject", headers=BO).status_code == 404
    assert (
        client.post(f"/v1/proposals/{bob['proposal']}/reject", headers=BO).json()["status"]
        == "rejected"
    )
    assert client.get("/v1/users/bob/proposals", headers=BO).json() == []
    assert client.post("/v1/proposals/no-such-id/approve", headers=A).status_code == 404
    assert client.post(f"/v1/proposals/{alice['memory']}/approve", headers=A).status_code == 409
    assert client.get("/v1/proposals", headers=AL).status_code == 403


# --------------------------------------------------------------------------- tokens


def test_tokens_from_env_and_files(tmp_path: Path) -> None:
    env = {
        "KERN_ADMIN_TOKENS": f" {ADMIN} ,",
        "KERN_USER_TOKENS": f"{ALICE}:alice,{BOB}:b:o:b",
    }
    tokens = TokenConfig.from_env(env)
    assert tokens.authenticate(ADMIN).role == "admin"  # type: ignore[union-attr]
    assert tokens.authenticate(BOB).user_id == "b:o:b"  # type: ignore[union-attr]
    assert tokens.authenticate("x" * 20) is None
    as_json = tmp_path / "tokens.json"
    as_json.write_text(json.dumps({"admin_tokens": [ADMIN], "user_tokens": {ALICE: "alice"}}))
    as_toml = tmp_path / "tokens.toml"
    as_toml.write_text(f'admin_tokens = ["{ADMIN}"]\n[user_tokens]\n"{ALICE}" = "alice"\n')
    for path in (as_json, as_toml):
        loaded = TokenConfig.load(path, environ={"KERN_USER_TOKENS": f"{BOB}:bob"})
        assert loaded.authenticate(ALICE).user_id == "alice"  # type: ignore[union-attr]
        assert loaded.authenticate(BOB).user_id == "bob"  # type: ignore[union-attr]
        assert len(loaded) == 3


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"KERN_ADMIN_TOKENS": "short"}, "shorter than 16"),
        ({"KERN_USER_TOKENS": ALICE}, "not 'token:user_id'"),
        ({"KERN_USER_TOKENS": f"{ALICE}:"}, "non-empty user_id"),
        ({"KERN_ADMIN_TOKENS": ADMIN, "KERN_USER_TOKENS": f"{ADMIN}:a"}, "listed twice"),
    ],
)
def test_bad_token_configuration_is_refused_without_echoing_tokens(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        TokenConfig.from_env(env)
    assert ADMIN not in str(info.value) and ALICE not in str(info.value)


def test_a_broken_tokens_file_is_refused_without_echoing_it(tmp_path: Path) -> None:
    path = tmp_path / "tokens.toml"
    path.write_text(f'admin_tokens = ["{ADMIN}"\n')
    with pytest.raises(ConfigError, match="not valid") as info:
        TokenConfig.from_file(path)
    assert ADMIN not in str(info.value)
    with pytest.raises(ConfigError, match="cannot read"):
        TokenConfig.from_file(tmp_path / "missing.json")


def test_no_tokens_no_app(agent: Agent) -> None:
    with pytest.raises(ConfigError, match="KERN_ADMIN_TOKENS"):
        create_app(agent, tokens=TokenConfig.from_env({}))


def test_tokens_are_never_logged_or_shown(
    client: TestClient, agent: Agent, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    seed(agent)
    for token in (ADMIN, ALICE, BOB, "wrong-token-000000000000"):
        client.get("/v1/users/alice/stores/user_memory/items", headers=auth(token))
        client.post("/v1/users/alice/runs", headers=auth(token), json={"message": "hi"})
    logged = "\n".join(r.getMessage() for r in caplog.records) + caplog.text
    for token in (ADMIN, ALICE, BOB, "wrong-token-000000000000"):
        assert token not in logged
        assert token not in repr(TOKENS)
    assert repr(TOKENS) == "TokenConfig(admin_tokens=1, user_tokens=2)"
    unknown = client.get("/v1/me", headers=auth("wrong-token-000000000000"))
    assert unknown.status_code == 401 and "wrong-token" not in unknown.text
    assert unknown.headers["www-authenticate"].startswith("Bearer")


def test_me_stores_and_users(client: TestClient, agent: Agent) -> None:
    seed(agent, "alice")
    seed(agent, "bob")
    assert client.get("/v1/me", headers=AL).json() == {"role": "user", "user_id": "alice"}
    assert client.get("/v1/me", headers=A).json() == {"role": "admin", "user_id": None}
    assert client.get("/v1/users", headers=A).json() == [{"user_id": "alice"}, {"user_id": "bob"}]
    stores = {s["name"]: s for s in client.get("/v1/stores", headers=AL).json()}
    assert set(stores) == {
        "user_profile", "user_memory", "session_context", "entity_memory",
        "learned_knowledge", "decision_log",
    }  # fmt: skip
    assert "ticker" in stores["entity_memory"]["schemas"]["fact"]["properties"]


# --------------------------------------------------------------------------- OpenAPI, errors, UI


def test_custom_schema_fields_flow_into_the_openapi_document(app: Any) -> None:
    schema = app.openapi()
    components = schema["components"]["schemas"]
    assert "ticker" in components["CompanyFact"]["properties"]
    assert "plan" in components["CustomerProfile"]["properties"]
    create_field = components["UserProfileCreate"]["properties"]["field"]
    assert "plan" in create_field["enum"]
    assert "/v1/users/{user_id}/stores/entity_memory/items/{item_id}/history" in schema["paths"]
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


def test_the_openapi_document_is_public(client: TestClient) -> None:
    assert client.get("/openapi.json").status_code == 200


def test_a_closed_database_is_a_503_with_a_message(tmp_path: Path) -> None:
    db = SqliteDb(db_file=str(tmp_path / "closed.db"))
    agent = Agent(model=FunctionModel(answer), db=db, learning=machine())
    with TestClient(create_app(agent, tokens=TOKENS)) as client:
        db.close()
        response = client.get("/v1/users/alice/stores/user_memory/items", headers=A)
        assert response.status_code == 503
        assert response.json()["error"] == "StorageError" and "closed" in response.json()["detail"]


def test_an_agent_without_learning_still_runs(server_db: SqliteDb) -> None:
    app = create_app(Agent(model=TestModel("plain"), db=server_db), tokens=TOKENS)
    with TestClient(app) as client:
        assert (
            client.post("/v1/users/u/runs", headers=A, json={"message": "x"}).json()["content"]
            == "plain"
        )
        assert client.get("/v1/users/u/stores/user_memory/items", headers=A).status_code == 404
        assert client.get("/v1/users/u/proposals", headers=A).status_code == 404
        assert client.get("/v1/stores", headers=A).json() == []


def test_the_ui_is_served_with_a_strict_policy(client: TestClient) -> None:
    assert client.get("/", follow_redirects=False).headers["location"] == "/ui/"
    page = client.get("/ui/")
    assert page.status_code == 200 and "app.js" in page.text
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert client.get("/ui/app.js").status_code == 200
    # Data is only ever inserted as text.
    script = (UI_DIR / "app.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script
    assert client.get("/v1/me", headers=A).headers["cache-control"] == "no-store"


def test_load_app_builds_the_app_from_a_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "kern_server_demo_app.py").write_text(
        textwrap.dedent(
            """
            from kern.agent import Agent
            from kern.models.testing import TestModel
            agent = Agent(model=TestModel("from module"))
            def make():
                return agent
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("KERN_ADMIN_TOKENS", ADMIN)
    for spec in ("kern_server_demo_app:agent", "kern_server_demo_app:make"):
        with TestClient(load_app(spec)) as client:
            run = client.post("/v1/users/u/runs", headers=A, json={"message": "x"})
            assert run.json()["content"] == "from module"
    for bad, message in (
        ("no-colon", "module:name"),
        ("kern_server_no_such_module:agent", "cannot import"),
        ("kern_server_demo_app:missing", "no attribute"),
        ("json:dumps", "not an Agent"),
    ):
        with pytest.raises(ConfigError, match=message):
            load_app(bad)
    sys.modules.pop("kern_server_demo_app", None)


def test_serve_runs_uvicorn_with_tokens_from_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import uvicorn

    from kern.server import serve

    (tmp_path / "kern_server_serve_app.py").write_text(
        "from kern.agent import Agent\n"
        "from kern.models.testing import TestModel\n"
        "agent = Agent(model=TestModel('served'))\n"
    )
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"user_tokens": {ALICE: "alice"}}))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("KERN_ADMIN_TOKENS", raising=False)
    monkeypatch.delenv("KERN_USER_TOKENS", raising=False)
    started: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: started.update(app=app, **options))
    serve("kern_server_serve_app:agent", host="127.0.0.1", port=8123, tokens_file=tokens)
    assert started["host"] == "127.0.0.1" and started["port"] == 8123
    # Where the UI is, printed before the server starts.
    printed = capsys.readouterr().out
    assert "web UI at http://127.0.0.1:8123/ui/" in printed and "KERN_ADMIN_TOKENS" in printed
    with TestClient(started["app"]) as client:
        assert client.get("/v1/me", headers=AL).json() == {"role": "user", "user_id": "alice"}
        assert client.get("/v1/me", headers=A).status_code == 401
    with pytest.raises(ConfigError, match="no API tokens"):
        serve("kern_server_serve_app:agent")
    sys.modules.pop("kern_server_serve_app", None)
