"""Export → forget → import gives a user's data back exactly; forget leaves no row of the
user in any table (learnings and their vectors and full-text entries, history, jobs, runs,
sessions); import refuses what would merge into or overwrite other data."""

from __future__ import annotations

import copy
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Text, cast, func, inspect, or_, select, text

from kern.agent import Agent
from kern.db.base import LearningFilter
from kern.db.schema import metadata
from kern.db.sqlite import SqliteDb
from kern.server.access import ALL_STATUSES
from tests.test_server_support import (
    ADMIN,
    ALICE,
    agent,
    app,
    auth,
    client,
    seed,
    served,
    server_db,
)

__all__ = ["agent", "app", "client", "served", "server_db"]  # fixtures, used by name

A = auth(ADMIN)


def export(client: TestClient, user: str) -> dict[str, Any]:
    response = client.get(f"/v1/users/{user}/export", headers=A)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    body.pop("exported_at")
    return body


def rich_user(agent: Agent, client: TestClient, user: str) -> None:
    """Everything a user can have: every store and kind, every status, history, runs."""
    ids = seed(agent, user)
    lm = agent.get_learning_machine()
    assert lm is not None
    client.post(f"/v1/users/{user}/runs", headers=A, json={"message": f"propose: {user} skis"})
    proposals = lm.proposals.list(user_id=user)
    lm.proposals.reject(next(p.id for p in proposals if p.id != ids["proposal"]))
    client.post(
        f"/v1/users/{user}/runs",
        headers=A,
        json={"message": "zebracorn stream", "session_id": ids["session"], "stream": True},
    )
    lm.user_memory.add(f"{user} keeps a zebracorn", user_id=user, metadata={"source": "test"})


def test_export_forget_import_round_trips_exactly(client: TestClient, agent: Agent) -> None:
    rich_user(agent, client, "alice")
    rich_user(agent, client, "bob")
    before = export(client, "alice")
    bob_before = export(client, "bob")
    statuses = {row["status"] for row in before["learnings"]}
    assert statuses == {"active", "proposed", "deleted", "rejected"}
    assert {row["store"] for row in before["learnings"]} == {
        "user_profile", "user_memory", "session_context", "entity_memory",
        "learned_knowledge", "decision_log",
    }  # fmt: skip
    assert any(row["embedding"] for row in before["learnings"])  # vectors travel too
    assert {h["action"] for h in before["history"]} >= {"create", "update", "delete", "reject"}
    assert len(before["runs"]) == 4 and len(before["sessions"]) == 2

    forgotten = client.delete("/v1/users/alice", headers=A)
    assert forgotten.status_code == 200 and forgotten.json()["rows_removed"] > 20
    empty = export(client, "alice")
    assert (empty["sessions"], empty["runs"], empty["learnings"], empty["history"]) == (
        [],
        [],
        [],
        [],
    )

    imported = client.post(
        "/v1/users/alice/import", headers=A, json={**before, "exported_at": "2026-01-01T00:00:00Z"}
    )
    assert imported.status_code == 201, imported.text
    assert imported.json()["learnings"] == len(before["learnings"])
    assert export(client, "alice") == before
    assert export(client, "bob") == bob_before

    # The restored rows work: full-text and vector recall, history through the API, runs.
    found = client.get("/v1/users/alice/search", headers=A, params={"q": "zebracorn"}).json()
    # First: the other memories, recorded in the same minutes, follow as its time context.
    assert found["results"]["user_memory"][0]["content"] == "alice keeps a zebracorn"
    lm = agent.get_learning_machine()
    assert lm is not None
    ids, _ = lm.db.load_vectors(LearningFilter(user_id="alice", statuses=ALL_STATUSES))
    assert len(ids) == sum(1 for row in before["learnings"] if row["embedding"])
    again = client.post(
        "/v1/users/alice/runs", headers=A, json={"message": "hi", "session_id": "alice-s1"}
    )
    assert again.status_code == 200


def test_forget_leaves_no_row_of_the_user_in_any_table(
    client: TestClient, agent: Agent, server_db: SqliteDb
) -> None:
    user = "zed-forget-7f3a"
    rich_user(agent, client, user)
    rich_user(agent, client, "bob")
    bob_before = export(client, "bob")
    assert count_mentions(server_db, user) > 30
    assert fts_matches(server_db, "zebracorn") == 2

    assert client.delete(f"/v1/users/{user}", headers=A).status_code == 200

    assert count_mentions(server_db, user) == 0
    assert fts_matches(server_db, "zebracorn") == 1  # bob's only
    lm = agent.get_learning_machine()
    assert lm is not None
    assert lm.db.load_vectors(LearningFilter(user_id=user, statuses=ALL_STATUSES)) == ([], [])
    assert export(client, "bob") == bob_before
    # Forgetting again finds nothing.
    assert client.delete(f"/v1/users/{user}", headers=A).json()["rows_removed"] == 0


def count_mentions(db: SqliteDb, needle: str) -> int:
    """Rows of any kern table where any text or JSON column contains ``needle``. Fails if the
    database holds a table this check does not know, so a new table cannot be missed."""
    known = {t.name for t in metadata.sorted_tables}
    present = set(inspect(db.engine).get_table_names())
    fts = {name for name in present if name.startswith("learnings_fts")}
    # SQLite's own counters, and m007's (one number, the last write's mark): no user data.
    counters = {"sqlite_sequence", "learning_clock"}
    assert present - known - fts - counters == set(), "a table this test does not know"
    total = 0
    with db.transaction(write=False) as conn:
        for table in metadata.sorted_tables:
            # Every column as text (ids, JSON content, history snapshots, run messages…).
            conditions = [
                cast(c, Text).like(f"%{needle}%") for c in table.columns if c.name != "embedding"
            ]
            query = select(func.count()).select_from(table).where(or_(*conditions))
            total += conn.execute(query).scalar_one()
    return total


def fts_matches(db: SqliteDb, word: str) -> int:
    with db.transaction(write=False) as conn:
        query = text("SELECT count(*) FROM learnings_fts WHERE learnings_fts MATCH :word")
        return int(conn.execute(query, {"word": word}).scalar_one())


def test_import_refuses_what_would_merge_or_mislead(client: TestClient, agent: Agent) -> None:
    rich_user(agent, client, "alice")
    document = client.get("/v1/users/alice/export", headers=A).json()

    def attempt(user: str, body: Any) -> Any:
        return client.post(f"/v1/users/{user}/import", headers=A, json=body)

    # Into a user who has data: nothing is merged or overwritten.
    assert attempt("alice", document).status_code == 409
    # Someone else's export, or rows of another user inside it.
    assert attempt("carol", document).status_code == 400
    forged = copy.deepcopy(document)
    forged["learnings"][0]["user_id"] = "mallory"
    assert attempt("alice", forged).status_code in (400, 409)
    client.delete("/v1/users/alice", headers=A)
    assert "not user 'alice'" in attempt("alice", forged).json()["detail"]
    twice = copy.deepcopy(document)
    twice["learnings"].append(twice["learnings"][0])
    assert "twice" in attempt("alice", twice).json()["detail"]
    naive = copy.deepcopy(document)
    naive["sessions"][0]["created_at"] = "2026-01-01T00:00:00"
    assert attempt("alice", naive).status_code == 422
    corrupt = copy.deepcopy(document)
    corrupt["learnings"][0]["embedding"] = "not base64!"
    assert attempt("alice", corrupt).status_code == 422
    # An id taken meanwhile by another user's session: all or nothing.
    client.post("/v1/users/bob/runs", headers=A, json={"message": "hi", "session_id": "alice-s1"})
    taken = attempt("alice", document)
    assert taken.status_code == 409 and "alice-s1" in taken.json()["detail"]
    assert export(client, "alice")["learnings"] == []
    # Once the id is free again, the same document imports.
    client.delete("/v1/users/bob", headers=A)
    assert attempt("alice", document).status_code == 201


def _row(document: dict[str, Any], store: str, kind: str | None = None) -> dict[str, Any]:
    row: dict[str, Any] = next(
        r for r in document["learnings"] if r["store"] == store and kind in (None, r["kind"])
    )
    return row


def test_import_refuses_rows_the_app_would_not_have_written_for_the_user(
    client: TestClient, agent: Agent, server_db: SqliteDb
) -> None:
    """A crafted export cannot put rows into another user's scope, a namespace its store does
    not use, an unknown store or kind, or content that later reads could not parse: one bad
    row refuses the whole import and nothing is written."""
    rich_user(agent, client, "alice")
    document = export(client, "alice")
    assert client.delete("/v1/users/alice", headers=A).status_code == 200

    def forged(change: Any) -> dict[str, Any]:
        body = copy.deepcopy(document)
        change(body)
        return body

    def memory(body: dict[str, Any]) -> dict[str, Any]:
        return _row(body, "user_memory")

    attacks = {
        "another user's scope": lambda b: memory(b).update(scope="user/bob"),
        "the global namespace": lambda b: memory(b).update(scope="ns/global"),
        "a group namespace": lambda b: _row(b, "learned_knowledge").update(
            scope="ns/engineering", namespace="engineering"
        ),
        "another session's scope": lambda b: _row(b, "session_context").update(
            scope="user/alice/session/elsewhere"
        ),
        "an unknown store": lambda b: memory(b).update(store="secrets"),
        "an unknown kind": lambda b: memory(b).update(kind="password"),
        "content of the wrong type": lambda b: memory(b).update(content={"content": 5}),
        "content with unknown fields": lambda b: memory(b).update(
            content={"content": "x", "admin": True}
        ),
        "a profile field the schema lacks": lambda b: _row(b, "user_profile").update(
            content={"field": "password", "value": "1234"}
        ),
        "a profile value the schema refuses": lambda b: _row(b, "user_profile").update(
            content={"field": "plan", "value": "platinum"}
        ),
        "history moved to another scope": lambda b: next(
            h for h in b["history"] if h["learning_id"] == memory(b)["id"]
        ).update(scope="user/bob"),
    }
    for name, change in attacks.items():
        response = client.post(
            "/v1/users/alice/import",
            headers=A,
            json={**forged(change), "exported_at": "2026-01-01T00:00:00Z"},
        )
        assert response.status_code == 400, (name, response.text)
        assert "nothing was imported" in response.json()["detail"], name
        assert export(client, "alice")["learnings"] == [], name
        assert export(client, "bob")["learnings"] == [], name

    # The untouched document still imports, and every read of the user works afterwards.
    body = {**document, "exported_at": "2026-01-01T00:00:00Z"}
    assert client.post("/v1/users/alice/import", headers=A, json=body).status_code == 201
    for path in ("profile", "stores/user_memory/items", "search?q=zebracorn"):
        assert client.get(f"/v1/users/alice/{path}", headers=A).status_code == 200, path


def test_a_user_forgetting_themselves_keeps_the_shared_items_they_wrote(
    client: TestClient, agent: Agent, server_db: SqliteDb
) -> None:
    """A user token cannot delete shared items directly (403), so forgetting the user must not
    delete them either: they stay, detached from the user. An admin's forget removes them."""
    ids = seed(agent, "alice")
    shared_ids = {ids["fact"], ids["event"], ids["relation"], ids["learning"], ids["decision"]}
    forgotten = client.delete("/v1/users/alice", headers=auth(ALICE))
    assert forgotten.status_code == 200
    assert export(client, "alice")["learnings"] == []  # nothing of Alice's own is left
    lm = agent.get_learning_machine()
    assert lm is not None
    kept = {i: lm.db.get_learning(i) for i in shared_ids}
    assert all(r is not None and r.status == "active" for r in kept.values())
    assert all(r.user_id is None and r.run_id is None for r in kept.values() if r is not None)
    history = [h for i in shared_ids for h in lm.db.history(learning_id=i)]
    assert history and all(h.user_id is None for h in history)
    assert lm.db.get_learning(ids["memory"]) is None  # her own memory is gone
    found = client.get("/v1/users/bob/search", headers=A, params={"q": "anvils"}).json()
    # First: the shared items recorded with it follow as its time context.
    assert found["results"]["entity_memory"][0]["id"] == ids["fact"]


def test_an_admin_forgetting_a_user_removes_their_shared_items_too(
    client: TestClient, agent: Agent
) -> None:
    ids = seed(agent, "alice")
    assert client.delete("/v1/users/alice", headers=A).status_code == 200
    lm = agent.get_learning_machine()
    assert lm is not None
    assert lm.db.get_learning(ids["fact"]) is None
