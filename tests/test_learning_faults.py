"""Faults on SQLite and PostgreSQL: bad extraction output, model errors, a killed process, a
failing write."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kern._sync import wait_for_background
from kern.agent import Agent
from kern.errors import StorageError
from kern.learn import LearningMachine, LearningMode, Memory, UserMemoryConfig
from kern.models.base import ModelRequest, ModelResponse, ToolCall, ToolResultMessage
from kern.models.testing import FunctionModel
from tests import learning_workers
from tests.backends import Backend

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "user_memory",
                    "user_profile",
                    "add",
                    "update",
                    "delete",
                    "content",
                    "id",
                    "name",
                    "session_context",
                    "x",
                ]
            ),
            children,
            max_size=4,
        )
    ),
    max_leaves=12,
)
bad_outputs = st.one_of(
    st.text(max_size=60),
    json_values.map(json.dumps),
)


@settings(
    max_examples=60,
    deadline=None,
    # One database for every example: each example removes its user's rows when it ends.
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(output=bad_outputs)
def test_fuzzed_extraction_output_never_breaks_a_run_or_a_row(db: Any, output: str) -> None:
    try:

        def respond(request: ModelRequest) -> ModelResponse:
            return ModelResponse(output if request.output_schema else "answer")

        lm = LearningMachine(
            db=db, user_profile=True, user_memory=True, session_context=True, background=False
        )
        out = Agent(model=FunctionModel(respond), db=db, learning=lm).run(
            "hello", user_id="u", session_id="s"
        )
        assert out.content == "answer"
        (job,) = db.list_jobs()
        assert job.status in ("done", "pending", "failed")
        if job.status != "done":
            # PostgreSQL refuses a NUL character in text (SQLite stores it): a clear
            # StorageError on the job, like invalid output, with nothing applied.
            refused = ("extraction output invalid", "cannot contain NUL")
            assert job.error and any(reason in job.error for reason in refused)
            assert db.count_learnings(_all(db)) == 0  # nothing half-applied
        for item in lm.user_memory.list(user_id="u"):
            Memory.model_validate(item.data.model_dump())
    finally:
        db.delete_user("u")


def _all(db: Any) -> Any:
    from kern.db.base import LearningFilter

    return LearningFilter()


def test_a_model_error_in_extraction_is_kept_on_the_job(db: Any) -> None:

    def respond(request: ModelRequest) -> ModelResponse:
        if request.output_schema is not None:
            raise RuntimeError("provider exploded")
        return ModelResponse("fine")

    lm = LearningMachine(db=db, user_memory=True, background=False)
    out = Agent(model=FunctionModel(respond), db=db, learning=lm).run("hi", user_id="u")
    assert out.content == "fine"
    (job,) = db.list_jobs()
    assert job.error == "RuntimeError: provider exploded"
    assert job.attempts == 1


def test_a_repair_retry_fixes_one_bad_answer(db: Any) -> None:
    answers = iter(
        ["{not json", json.dumps({"user_memory": {"add": [{"content": "Likes figs."}]}})]
    )

    def respond(request: ModelRequest) -> ModelResponse:
        return ModelResponse(next(answers) if request.output_schema else "ok")

    lm = LearningMachine(db=db, user_memory=True, background=False)
    model = FunctionModel(respond)
    Agent(model=model, db=db, learning=lm).run("I like figs", user_id="u")
    assert [m.content for m in lm.user_memory.list(user_id="u")] == ["Likes figs."]
    assert "invalid" in str(model.requests[-1].messages[-1])


def test_a_job_of_a_killed_process_is_resumed_once(db: Any, backend: Backend) -> None:
    # The child's lease is long, so "it still holds" cannot run out on a loaded machine
    # between the kill and the first claim; "after the lease" is a second process whose clock
    # reads past it, instead of a wait as long as the lease.
    lease = 60.0
    spawn = multiprocessing.get_context("spawn")
    process = spawn.Process(
        target=learning_workers.hang_in_extraction, args=(backend.target, lease)
    )
    process.start()
    try:
        deadline = time.monotonic() + 60
        while not list(db.list_jobs(status="running")):
            assert time.monotonic() < deadline, "the child never claimed its job"
            time.sleep(0.05)
        assert process.pid is not None
        os.kill(process.pid, signal.SIGKILL)
        process.join()
        (job,) = db.list_jobs()
        assert job.status == "running"  # orphaned, leased
        assert job.lease_until is not None

        def resumer(database: Any) -> LearningMachine:
            answer = FunctionModel(lambda r: ModelResponse(learning_workers.extraction_answer()))
            return LearningMachine(db=database, model=answer, user_memory=True, job_lease=1.0)

        here = resumer(db)
        assert here.process_pending() == 0  # the lease still holds

        def after_the_lease() -> datetime:
            return datetime.now(UTC) + timedelta(seconds=lease + 1)

        with backend.open(clock=after_the_lease) as later:
            assert later.now() > job.lease_until
            lm = resumer(later)
            assert lm.process_pending() == 1
            assert lm.process_pending() == 0
            wait_for_background()
        memories = here.user_memory.list(user_id="u")
        assert [m.content for m in memories] == ["The user's favourite colour is teal."]
        (job,) = db.list_jobs()
        assert (job.status, job.attempts) == ("done", 2)
    finally:
        if process.is_alive():
            process.kill()


def test_a_tool_whose_write_fails_says_so(db: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    lm = LearningMachine(db=db, user_memory=UserMemoryConfig(mode=LearningMode.AGENTIC))

    def respond(request: ModelRequest) -> ModelResponse:
        if any(isinstance(m, ToolResultMessage) for m in request.messages):
            return ModelResponse("done")
        return ModelResponse(tool_calls=(ToolCall("c", "add_memory", '{"content": "x"}'),))

    model = FunctionModel(respond)
    agent = Agent(model=model, db=db, learning=lm)

    def broken_apply(*args: Any, **kwargs: Any) -> Any:
        raise StorageError("could not write: disk I/O error")

    monkeypatch.setattr(db, "apply", broken_apply)
    agent.run("remember x", user_id="u")
    (result,) = [m for m in model.requests[-1].messages if isinstance(m, ToolResultMessage)]
    assert result.is_error and "disk I/O error" in result.content
    assert "Saved" not in result.content
