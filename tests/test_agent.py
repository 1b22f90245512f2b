from __future__ import annotations

import asyncio
import io
import json
from typing import Any

import pytest

from kern.agent import (
    Agent,
    ContentDelta,
    RunCompleted,
    RunContext,
    RunStarted,
    ToolCallCompleted,
    ToolCallStarted,
)
from kern.db.sqlite import SqliteDb
from kern.errors import ConfigError, RunLimitError
from kern.models.base import (
    AssistantMessage,
    ModelRequest,
    ModelResponse,
    ToolCall,
    ToolResultMessage,
    Usage,
    UserMessage,
)
from kern.models.testing import FunctionModel, TestModel
from kern.tools import tool


@tool
def add(a: int, b: int) -> int:
    """Add two numbers.

    Args:
        a: The first number.
        b: The second number.
    """
    return a + b


def last_tool_results(request: ModelRequest) -> list[ToolResultMessage]:
    return [m for m in request.messages if isinstance(m, ToolResultMessage)]


def test_plain_answer_and_metrics(sqlite_db: SqliteDb) -> None:
    agent = Agent(model=TestModel("hello there"), db=sqlite_db)
    out = agent.run("hi", user_id="u", session_id="s")
    assert out.content == "hello there"
    assert out.metrics.model_calls == 1
    assert out.metrics.input_tokens > 0
    assert out.metrics.output_tokens == 5
    assert out.metrics.duration >= out.metrics.model_duration > 0
    assert [type(m) for m in out.messages] == [UserMessage, AssistantMessage]
    stored = sqlite_db.get_runs("s")
    assert [r.content for r in stored] == ["hello there"]
    assert stored[0].metrics["model_calls"] == 1
    assert stored[0].user_id == "u"


def test_tool_call_loop_executes_tools_between_model_calls(sqlite_db: SqliteDb) -> None:
    model = TestModel(call_tools="all")
    agent = Agent(model=model, db=sqlite_db, tools=[add])
    out = agent.run("add", session_id="s")
    assert out.metrics.model_calls == 2
    assert out.metrics.tool_calls == 1
    assert json.loads(out.content or "") == {"add": "0"}
    assert model.requests[0].tools[0].name == "add"
    assert model.requests[0].tools[0].parameters["properties"]["a"]["description"] == (
        "The first number."
    )


def script(*responses: ModelResponse) -> FunctionModel:
    """A model that answers with the given responses in order."""
    queue = list(responses)

    def answer(request: ModelRequest) -> ModelResponse:
        return queue.pop(0)

    return FunctionModel(answer)


def calls(*items: tuple[str, dict[str, Any] | str]) -> ModelResponse:
    return ModelResponse(
        tool_calls=tuple(
            ToolCall(f"c{i}", name, args if isinstance(args, str) else json.dumps(args))
            for i, (name, args) in enumerate(items)
        ),
        usage=Usage(3, 2),
    )


def test_invalid_arguments_go_back_to_the_model_and_the_run_goes_on() -> None:
    model = script(
        calls(("add", {"a": "x", "b": 2})),
        calls(("add", "{not json")),
        calls(("nope", {})),
        calls(("add", {"a": 1, "b": 2})),
        ModelResponse("3"),
    )
    out = Agent(model=model, tools=[add]).run("1+2")
    assert out.content == "3"
    results = last_tool_results(model.requests[-1])
    assert [r.is_error for r in results] == [True, True, True, False]
    assert "a: Input should be a valid integer" in results[0].content
    assert "Invalid JSON" in results[1].content
    assert "Unknown tool 'nope'" in results[2].content and "add" in results[2].content
    assert results[3].content == "3"


def test_a_tool_exception_becomes_a_tool_error() -> None:
    @tool
    def explode() -> str:
        """Always fails."""
        raise RuntimeError("disk on fire")

    model = script(calls(("explode", {})), ModelResponse("sorry"))
    out = Agent(model=model, tools=[explode]).run("go")
    assert out.content == "sorry"
    (result,) = last_tool_results(model.requests[-1])
    assert result.is_error and result.content == "RuntimeError: disk on fire"


async def test_parallel_tool_calls_run_concurrently() -> None:
    arrived = 0
    both_here = asyncio.Event()

    @tool
    async def rendezvous(name: str) -> str:
        """Waits until both calls are running at once."""
        nonlocal arrived
        arrived += 1
        if arrived == 2:
            both_here.set()
        await asyncio.wait_for(both_here.wait(), timeout=30)
        return name

    model = script(
        calls(("rendezvous", {"name": "x"}), ("rendezvous", {"name": "y"})), ModelResponse("done")
    )
    out = await Agent(model=model, tools=[rendezvous]).arun("go")
    assert out.content == "done"
    assert [r.content for r in last_tool_results(model.requests[-1])] == ["x", "y"]


def test_tools_receive_the_run_context_which_the_model_cannot_fill() -> None:
    seen: list[RunContext] = []

    @tool
    def whoami(ctx: RunContext) -> str:
        """Return the user."""
        seen.append(ctx)
        return ctx.user_id

    model = TestModel(call_tools="all")
    out = Agent(model=model, tools=[whoami]).run("who", user_id="alice", session_id="s1")
    assert "ctx" not in model.requests[0].tools[0].parameters["properties"]
    assert seen[0].user_id == "alice" and seen[0].session_id == "s1"
    assert seen[0].run_id == out.run_id


def test_step_limit_stops_a_looping_model_and_records_a_failed_run(sqlite_db: SqliteDb) -> None:
    model = FunctionModel(lambda request: calls(("add", {"a": 1, "b": 1})))
    agent = Agent(model=model, db=sqlite_db, tools=[add], max_steps=3)
    with pytest.raises(RunLimitError, match="3 model steps"):
        agent.run("loop", session_id="s")
    assert len(model.requests) == 3
    (failed,) = sqlite_db.get_runs("s", status="failed")
    assert failed.error and "RunLimitError" in failed.error
    assert sqlite_db.get_runs("s") == []


def test_model_errors_propagate_and_are_recorded(sqlite_db: SqliteDb) -> None:
    def broken(request: ModelRequest) -> str:
        raise ValueError("provider down")

    agent = Agent(model=FunctionModel(broken), db=sqlite_db)
    with pytest.raises(ValueError, match="provider down"):
        agent.run("hi", session_id="s")
    assert sqlite_db.get_runs("s", status="failed")[0].input == "hi"


def test_history_is_sent_within_a_session_only(sqlite_db: SqliteDb) -> None:
    model = TestModel("ok")
    agent = Agent(model=model, db=sqlite_db, num_history_runs=2)
    for text in ("one", "two", "three"):
        agent.run(text, session_id="a")
    agent.run("other", session_id="b")
    sent = [m.content for m in model.requests[2].messages if isinstance(m, UserMessage)]
    assert sent == ["one", "two", "three"]
    agent.run("four", session_id="a")
    sent = [m.content for m in model.requests[4].messages if isinstance(m, UserMessage)]
    assert sent == ["two", "three", "four"]  # only the last 2 runs + this one
    sent_b = [m.content for m in model.requests[3].messages if isinstance(m, UserMessage)]
    assert sent_b == ["other"]


def test_history_survives_a_new_process_on_the_same_file(db_file: Any) -> None:
    first = SqliteDb(db_file=str(db_file))
    Agent(model=TestModel("noted"), db=first).run("my name is Bo", session_id="s")
    first.close()
    second = SqliteDb(db_file=str(db_file))
    model = TestModel("ok")
    Agent(model=model, db=second).run("what is my name?", session_id="s")
    second.close()
    texts = [m.content for m in model.requests[0].messages]
    assert texts == ["my name is Bo", "noted", "what is my name?"]


def test_history_can_be_turned_off() -> None:
    model = TestModel("ok")
    agent = Agent(model=model, add_history_to_context=False)
    agent.run("one")
    agent.run("two")
    assert len(model.requests[1].messages) == 1


def test_sync_stream_yields_typed_events_in_order() -> None:
    agent = Agent(model=TestModel("the quick fox", call_tools="all"), tools=[add])
    events = list(agent.run("go", stream=True))
    kinds = [type(e) for e in events]
    assert kinds[0] is RunStarted and kinds[-1] is RunCompleted
    assert kinds.index(ToolCallStarted) < kinds.index(ToolCallCompleted) < kinds.index(ContentDelta)
    text = "".join(e.text for e in events if isinstance(e, ContentDelta))
    assert text == "the quick fox"
    final = events[-1]
    assert isinstance(final, RunCompleted) and final.output.content == text


async def test_async_stream_and_sync_run_inside_a_running_loop() -> None:
    agent = Agent(model=TestModel("a b c"))
    deltas = [e.text async for e in agent.arun("x", stream=True) if isinstance(e, ContentDelta)]
    assert "".join(deltas) == "a b c"
    # A sync call from inside a running loop (as in Jupyter) works too.
    assert agent.run("y").content == "a b c"


def test_print_response_streams_to_a_file() -> None:
    buffer = io.StringIO()
    Agent(model=TestModel("hello world")).print_response("hi", file=buffer)
    assert buffer.getvalue() == "hello world\n"


def test_sessions_default_to_one_per_agent_and_users_to_default(sqlite_db: SqliteDb) -> None:
    agent = Agent(model=TestModel("ok"), db=sqlite_db)
    first, second = agent.run("a"), agent.run("b")
    assert first.session_id == second.session_id == agent.session_id
    assert first.user_id == "default"
    session = sqlite_db.get_session(agent.session_id)
    assert session is not None and session.user_id == "default"


def test_bad_configuration_fails_at_construction() -> None:
    with pytest.raises(ConfigError, match="kern Model"):
        Agent(model="gpt-5.2")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="unique"):
        Agent(model=TestModel(), tools=[add, add])
    with pytest.raises(ConfigError, match="max_steps"):
        Agent(model=TestModel(), max_steps=0)


def test_testmodel_fills_an_output_schema() -> None:
    from kern.models.base import OutputSchema

    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "tags": {"type": "array"}},
        "required": ["name", "tags"],
    }
    response = asyncio.run(
        TestModel().request(
            ModelRequest([UserMessage("x")], output_schema=OutputSchema("p", schema))
        )
    )
    assert json.loads(response.text or "") == {"name": "a", "tags": []}
