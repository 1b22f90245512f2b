"""The REST routes the web UI needs: jobs (list, retry), restoring a deleted item, sessions
with a message count and a preview, profile field labels, and what a run recalled and why."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from kern.agent import Agent
from kern.db.base import JobRecord
from kern.db.sqlite import SqliteDb
from kern.errors import ConflictError, NotFoundError
from tests.test_server_support import (
    ADMIN,
    ALICE,
    BOB,
    agent,
    app,
    auth,
    client,
    failed_job,
    seed,
    served,
    server_db,
)

__all__ = ["agent", "app", "client", "served", "server_db"]  # fixtures, used by name


# --------------------------------------------------------------------------- jobs


def test_the_queue_retries_only_a_failed_job_with_all_its_attempts(server_db: SqliteDb) -> None:
    job = JobRecord(id="j1", kind="extract", payload={}, user_id="alice", max_attempts=2)
    server_db.enqueue_job(job)
    with pytest.raises(ConflictError, match="pending, not failed"):
        server_db.retry_job("j1")
    for _ in range(2):
        claimed = server_db.claim_job(job_id="j1")
        assert claimed is not None
        server_db.fail_job(claimed, "boom", retry_in=0)
    (failed,) = server_db.list_jobs(job_id="j1")
    assert (failed.status, failed.attempts) == ("failed", 2)
    queued = server_db.retry_job("j1")
    assert (queued.status, queued.attempts, queued.error) == ("pending", 0, "boom")
    assert server_db.list_jobs(job_id="j1") == [queued]
    assert server_db.claim_job(job_id="j1") is not None  # runnable again, at once
    with pytest.raises(NotFoundError):
        server_db.retry_job("nope")
    assert [j.id for j in server_db.list_jobs(user_id="alice")] == ["j1"]
    assert server_db.list_jobs(user_id="bob") == []


def test_jobs_are_listed_per_user_with_a_short_error_and_retried(
    agent: Agent, client: TestClient
) -> None:
    traceback = "Traceback (most recent call last):\n" + "  File 'x.py', line 1\n" * 200
    mine = failed_job(agent, "alice", "ModelHTTPError: HTTP 500\n" + traceback)
    theirs = failed_job(agent, "bob")

    listed = client.get("/v1/users/alice/jobs", headers=auth(ALICE)).json()
    assert [j["id"] for j in listed] == [mine.id]
    (job,) = listed
    assert job["status"] == "failed" and job["turn"] == "alice says hi"
    assert job["error"].startswith("ModelHTTPError: HTTP 500 Traceback")
    assert len(job["error"]) <= 240 and "\n" not in job["error"]
    assert client.get("/v1/users/alice/jobs?status=done", headers=auth(ALICE)).json() == []

    everyone = client.get("/v1/jobs", headers=auth(ADMIN)).json()
    assert {j["id"] for j in everyone} == {mine.id, theirs.id}
    only_bob = client.get("/v1/jobs?user_id=bob", headers=auth(ADMIN)).json()
    assert [j["id"] for j in only_bob] == [theirs.id]
    assert client.get("/v1/jobs", headers=auth(ALICE)).status_code == 403

    # A user retries only their own job; another's is unknown to them.
    assert client.post(f"/v1/jobs/{theirs.id}/retry", headers=auth(ALICE)).status_code == 404
    retried = client.post(f"/v1/jobs/{mine.id}/retry", headers=auth(ALICE))
    assert retried.status_code == 200, retried.text
    assert retried.json()["status"] == "pending" and retried.json()["attempts"] == 0
    again = client.post(f"/v1/jobs/{mine.id}/retry", headers=auth(ALICE))
    assert again.status_code == 409 and "not failed" in again.json()["detail"]
    # This process runs jobs itself: the retried job ran after the answer (the test model
    # extracts nothing, so it succeeds), while bob's stays failed.
    statuses = {j["id"]: j["status"] for j in client.get("/v1/jobs", headers=auth(ADMIN)).json()}
    assert statuses == {mine.id: "done", theirs.id: "failed"}
    assert client.post(f"/v1/jobs/{theirs.id}/retry", headers=auth(ADMIN)).status_code == 200


# --------------------------------------------------------------------------- restore


def test_a_deleted_item_is_restored_and_the_history_says_so(
    agent: Agent, client: TestClient
) -> None:
    ids = seed(agent, "alice")
    base = "/v1/users/alice/stores/user_memory/items"
    gone = ids["deleted_memory"]
    restored = client.post(f"{base}/{gone}/restore", headers=auth(ALICE))
    assert restored.status_code == 200, restored.text
    assert restored.json()["status"] == "active"
    active = client.get(base, headers=auth(ALICE)).json()["items"]
    assert gone in {i["id"] for i in active}
    history = client.get(f"{base}/{gone}/history", headers=auth(ALICE)).json()
    assert [e["action"] for e in history][:2] == ["restore", "delete"]
    assert history[0]["actor"] == "api"
    # Only a deleted item is restored; bob cannot reach alice's.
    twice = client.post(f"{base}/{gone}/restore", headers=auth(ALICE))
    assert twice.status_code == 409 and "expected one of ['deleted']" in twice.json()["detail"]
    bob_path = f"/v1/users/bob/stores/user_memory/items/{gone}/restore"
    assert client.post(bob_path, headers=auth(BOB)).status_code == 404


def test_a_deleted_profile_field_is_not_restored_over_a_newer_value(
    agent: Agent, client: TestClient
) -> None:
    seed(agent, "alice")
    base = "/v1/users/alice/stores/user_profile/items"
    items = client.get(base, headers=auth(ALICE)).json()["items"]
    (name,) = [i for i in items if i["data"]["field"] == "name"]
    assert client.delete(f"{base}/{name['id']}", headers=auth(ALICE)).status_code == 200
    client.patch("/v1/users/alice/profile", headers=auth(ALICE), json={"name": "Ally"})
    refused = client.post(f"{base}/{name['id']}/restore", headers=auth(ALICE))
    assert refused.status_code == 409 and "active value of key 'name'" in refused.text
    profile = client.get("/v1/users/alice/profile", headers=auth(ALICE)).json()["profile"]
    assert profile["name"] == "Ally"


# --------------------------------------------------------------------------- sessions, profile


def test_sessions_carry_a_message_count_and_a_preview(agent: Agent, client: TestClient) -> None:
    seed(agent, "alice")
    agent.run("x" * 500, user_id="alice", session_id="long")
    sessions = {
        s["session_id"]: s
        for s in client.get("/v1/users/alice/sessions", headers=auth(ALICE)).json()
    }
    first = sessions["alice-s1"]
    # Two turns: "Hello there" and a proposal turn (its tool call and result not counted).
    assert first["message_count"] == 4
    assert first["preview"] == "Hello there"
    long = sessions["long"]
    assert long["message_count"] == 2
    assert len(long["preview"]) == 120 and long["preview"].endswith("…")


def test_the_profile_describes_its_fields_custom_ones_included(
    agent: Agent, client: TestClient
) -> None:
    seed(agent, "alice")
    body = client.get("/v1/users/alice/profile", headers=auth(ALICE)).json()
    fields = {f["name"]: f for f in body["schema_fields"]}
    style = fields["communication_style"]
    assert style["label"] == "Communication style"
    assert style["description"] == "How the user wants answers: length, tone, format"
    assert style["type"] == "string" and style["choices"] is None
    plan = fields["plan"]  # CustomerProfile's own field
    assert plan["label"] == "Plan" and plan["choices"] == ["free", "pro", "enterprise"]
    assert list(fields)[:2] == ["name", "preferred_name"]  # the schema's order


# --------------------------------------------------------------------------- recall


def test_a_run_says_what_it_recalled_from_which_store_and_why(
    agent: Agent, client: TestClient
) -> None:
    seed(agent, "alice")
    lm = agent.get_learning_machine()
    assert lm is not None
    # Recorded a day earlier: not in the hiking memory's time context, so not a search hit.
    lm.user_memory.add(
        "alice is allergic to nuts",
        user_id="alice",
        created_at=datetime.now(UTC) - timedelta(days=1),
    )
    response = client.post(
        "/v1/users/alice/runs",
        headers=auth(ALICE),
        json={"message": "Any hiking plans in the Alps?", "session_id": "alice-s1"},
    )
    assert response.status_code == 200, response.text
    recalled: list[dict[str, Any]] = response.json()["recalled_items"]
    by_store: dict[str, list[dict[str, Any]]] = {}
    for item in recalled:
        by_store.setdefault(item["store"], []).append(item)
    (hiking,) = [i for i in by_store["user_memory"] if "Alps" in i["content"]]
    assert hiking["score"] > 0 and hiking["reason"].startswith("matched the message (search")
    # The store tops up with recent memories; those say so (no score).
    (recent,) = [i for i in by_store["user_memory"] if "Alps" not in i["content"]]
    assert recent["content"] == "alice is allergic to nuts" and recent["score"] is None
    assert recent["reason"] == "one of the most recent (no search match)"
    profile = {i["content"]: i["reason"] for i in by_store["user_profile"]}
    assert profile["Name: Alice"] == profile["Plan: pro"] == "profile field: always included"
    (context,) = by_store["session_context"]
    assert context["reason"] == "this session's context: always included"
    assert "plan dinner" in context["content"]
    # What the panel lists is what the model saw.
    rendered = response.json()["recalled"]
    assert "alice loves hiking in the Alps" in rendered and "The user's plan is pro." in rendered
