"""Size limits through the REST API: a body, a run message or run metadata over its limit
is 413 with a clear message (kern.limits), before anything is stored; strings a database
cannot hold are 400, never 500."""

from __future__ import annotations

import json
from collections.abc import Iterator

from fastapi.testclient import TestClient

from kern.agent import Agent
from kern.db.sqlite import SqliteDb
from kern.limits import MAX_MESSAGE_CHARS, MAX_METADATA_CHARS, MAX_REQUEST_BYTES
from tests.test_server_support import (
    ADMIN,
    ALICE,
    agent,
    app,
    auth,
    client,
    served,
    server_db,
    snapshot,
)

__all__ = ["agent", "app", "client", "served", "server_db"]  # fixtures, used by name

AL = auth(ALICE)
RUNS = "/v1/users/alice/runs"


def test_a_body_over_the_limit_is_413_before_it_is_parsed(
    client: TestClient, server_db: SqliteDb
) -> None:
    before = snapshot(server_db)
    body = json.dumps({"message": "x" * MAX_REQUEST_BYTES}).encode()
    response = client.post(RUNS, headers={**AL, "content-type": "application/json"}, content=body)
    assert response.status_code == 413
    assert response.json()["error"] == "TooLargeError"
    assert "request body is too large" in response.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        for _ in range(MAX_REQUEST_BYTES // 65536 + 2):
            yield b"x" * 65536

    chunked = client.post(
        RUNS, headers={**AL, "content-type": "application/json"}, content=chunks()
    )
    assert chunked.status_code == 413
    # Without a valid token it is 401 whatever the size: nothing is read for strangers.
    assert client.post(RUNS, content=body).status_code == 401
    assert snapshot(server_db) == before


def test_run_message_and_metadata_limits_are_413(client: TestClient, server_db: SqliteDb) -> None:
    before = snapshot(server_db)
    long = client.post(RUNS, headers=AL, json={"message": "x" * (MAX_MESSAGE_CHARS + 1)})
    assert long.status_code == 413 and "message is too large" in long.json()["detail"]
    meta = {"message": "hi", "metadata": {"blob": "x" * MAX_METADATA_CHARS}}
    large = client.post(RUNS, headers=AL, json=meta)
    assert large.status_code == 413 and "metadata is too large" in large.json()["detail"]
    assert snapshot(server_db) == before


def test_strings_a_database_cannot_store_are_refused_not_500(
    client: TestClient, server_db: SqliteDb
) -> None:
    before = snapshot(server_db)
    headers = {**AL, "content-type": "application/json"}
    cases = [
        # A lone surrogate in a typed field: request validation (422, the input echoed escaped).
        ('{"message": "caf\\ud800"}', 422),
        # In free-form metadata, or a NUL anywhere: kern's own check (400).
        ('{"message": "hi", "metadata": {"k": "\\udfff"}}', 400),
        ('{"message": "a\\u0000b"}', 400),
        ('{"message": "hi", "metadata": {"k\\u0000": 1}}', 400),
    ]
    for body, status in cases:
        response = client.post(RUNS, headers=headers, content=body)
        assert response.status_code == status, (body, response.text)
        if status == 400:
            assert response.json()["error"] == "InvalidArgumentError"
    assert snapshot(server_db) == before


def test_an_import_may_be_larger_than_other_requests(client: TestClient, agent: Agent) -> None:
    document = {"user_id": "alice", "padding": "x" * MAX_REQUEST_BYTES}
    response = client.post("/v1/users/alice/import", headers=auth(ADMIN), json=document)
    assert response.status_code == 422  # read and validated, not refused for its size
