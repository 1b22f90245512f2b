"""Every public input is checked at the edge with kern's own errors (``kern.limits``): no raw
``UnicodeEncodeError``/``TypeError``/``OverflowError`` from deep inside, and a refused call
stores nothing."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from kern.agent import Agent
from kern.db.sqlite import SqliteDb
from kern.errors import InvalidArgumentError, StorageError, TooLargeError
from kern.limits import (
    MAX_CONTENT_CHARS,
    MAX_MESSAGE_CHARS,
    MAX_METADATA_CHARS,
    check_aware,
    check_count,
    cut,
)
from kern.models.testing import TestModel

BAD_STRINGS = {"a lone surrogate": "caf\ud800é", "a NUL": "a\x00b"}


@pytest.fixture
def agent(sqlite_db: SqliteDb) -> Agent:
    return Agent(model=TestModel("ok"), db=sqlite_db, learning=True)


def stored_runs(db: SqliteDb, *sessions: str) -> int:
    return sum(len(db.get_runs(s, status=None)) for s in sessions)


@pytest.mark.parametrize("bad", BAD_STRINGS.values(), ids=BAD_STRINGS.keys())
@pytest.mark.parametrize("argument", ["message", "user_id", "session_id", "metadata"])
def test_a_run_refuses_strings_a_database_cannot_store(
    agent: Agent, sqlite_db: SqliteDb, argument: str, bad: str
) -> None:
    kwargs: dict[str, Any] = {"user_id": "alice", "session_id": "s1"}
    message = "hello"
    if argument == "message":
        message = bad
    elif argument == "metadata":
        kwargs["metadata"] = {"note": bad}
    else:
        kwargs[argument] = bad
    with pytest.raises(InvalidArgumentError, match=argument):
        agent.run(message, **kwargs)
    assert stored_runs(sqlite_db, "s1") == 0
    assert sqlite_db.list_sessions() == []


def test_an_empty_user_id_is_refused_not_taken_as_the_default_user(
    agent: Agent, sqlite_db: SqliteDb
) -> None:
    for empty in ("", "   "):
        with pytest.raises(InvalidArgumentError, match="user_id must not be empty"):
            agent.run("I am Bob", user_id=empty, session_id="s1")
    with pytest.raises(InvalidArgumentError, match="session_id"):
        agent.run("hi", user_id="bob", session_id="")
    assert sqlite_db.list_sessions() == []
    assert agent.run("hi", session_id="s2").user_id == "default"  # None still means default


def test_run_sizes_are_bounded(agent: Agent, sqlite_db: SqliteDb) -> None:
    with pytest.raises(TooLargeError, match="message is too large"):
        agent.run("x" * (MAX_MESSAGE_CHARS + 1), user_id="alice", session_id="s1")
    with pytest.raises(TooLargeError, match="metadata is too large"):
        agent.run(
            "hi", user_id="alice", session_id="s1", metadata={"blob": "x" * MAX_METADATA_CHARS}
        )
    assert stored_runs(sqlite_db, "s1") == 0


def test_a_refused_session_keeps_no_trace_of_the_other_user(
    agent: Agent, sqlite_db: SqliteDb
) -> None:
    agent.run("my secret plan", user_id="alice", session_id="alice-s")
    with pytest.raises(StorageError, match="belongs to another user"):
        agent.run("Bob's private words", user_id="bob", session_id="alice-s")
    runs = sqlite_db.get_runs("alice-s", status=None)
    assert [r.user_id for r in runs] == ["alice"]
    assert all("Bob's private words" not in r.input for r in runs)


def test_counts_and_datetimes_are_checked_with_kern_errors() -> None:
    for bad in (1.5, "10", True, None, -1, 2**63):
        with pytest.raises(InvalidArgumentError, match="limit"):
            check_count(bad, "limit")
    assert check_count(10_000, "limit") == 10_000
    with pytest.raises(InvalidArgumentError, match="no time zone"):
        check_aware(datetime(2026, 1, 1), "created_at")


def test_cut_keeps_head_and_tail_within_the_budget() -> None:
    text = "start " + "x" * 10_000 + " end"
    short = cut(text, 1_000)
    assert len(short) <= 1_000 and short.startswith("start") and short.endswith("end")
    assert "characters cut" in short
    assert cut("short", 1_000) == "short"
    assert MAX_CONTENT_CHARS < MAX_MESSAGE_CHARS


def test_the_extraction_request_stays_within_its_budget(sqlite_db: SqliteDb) -> None:
    """A long message and a long stored memory are cut for the extraction call, never sent
    whole (a provider refusing a huge request would fail the job on every retry)."""
    from kern.learn import LearningMachine
    from kern.limits import EXTRACTION_INPUT_CHARS, EXTRACTION_ITEM_CHARS
    from kern.models.base import ModelRequest, ModelResponse, UserMessage
    from kern.models.testing import FunctionModel

    prompts: list[str] = []

    def respond(request: ModelRequest) -> ModelResponse:
        if request.output_schema is not None:
            prompts.append(next(m.content for m in request.messages if isinstance(m, UserMessage)))
            return ModelResponse('{"user_memory": null}')
        return ModelResponse("noted " * 20_000)

    lm = LearningMachine(user_memory=True, background=False)
    agent = Agent(model=FunctionModel(respond), db=sqlite_db, learning=lm)
    lm.user_memory.add("zebra " * (MAX_CONTENT_CHARS // 8), user_id="alice")
    agent.run("zebra " + "y" * (MAX_MESSAGE_CHARS - 10), user_id="alice", session_id="s")
    (prompt,) = prompts
    assert len(prompt) < EXTRACTION_INPUT_CHARS + EXTRACTION_ITEM_CHARS + 1_000
    assert "characters cut" in prompt


def test_the_learning_api_refuses_bad_input_with_kern_errors(sqlite_db: SqliteDb) -> None:
    from datetime import datetime

    from kern.learn import LearningMachine

    lm = LearningMachine(db=sqlite_db, user_memory=True, user_profile=True)
    lm.user_memory.add("hello world", user_id="a")
    refused: dict[str, Any] = {
        "search(limit=1.5)": lambda: lm.user_memory.search("hello", user_id="a", limit=1.5),
        "list(limit=2**63)": lambda: lm.user_memory.list(user_id="a", limit=2**63),
        "a naive created_at": lambda: lm.user_memory.add(
            "x", user_id="a", created_at=datetime(2026, 1, 1)
        ),
        "a lone surrogate in a memory": lambda: lm.user_memory.add("caf\ud800", user_id="a"),
        "a lone surrogate in a profile": lambda: lm.user_profile.update(
            {"name": "caf\ud800"}, user_id="a"
        ),
        "a NUL in a profile": lambda: lm.user_profile.update({"name": "a\x00"}, user_id="a"),
        "a lone surrogate in a user id": lambda: lm.user_memory.list(user_id="\ud800"),
        "an empty user id": lambda: lm.user_memory.list(user_id=""),
        "a lone surrogate in a query": lambda: lm.user_memory.search("caf\ud800", user_id="a"),
    }
    for name, call in refused.items():
        with pytest.raises(InvalidArgumentError):
            call()
        assert [i.content for i in lm.user_memory.list(user_id="a")] == ["hello world"], name
    with pytest.raises(TooLargeError, match="content is too large"):
        lm.user_memory.add("x" * MAX_CONTENT_CHARS, user_id="a")
    with pytest.raises(TooLargeError, match="metadata is too large"):
        lm.user_memory.add("ok", user_id="a", metadata={"k": "x" * MAX_METADATA_CHARS})
