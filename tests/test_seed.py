"""The promise of DESIGN §1 over the real wire: the seed snippet, unchanged, against a local
server that speaks the OpenAI Responses API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kern.agent import ContentDelta, RunCompleted, ToolCallCompleted
from tests.fakes.openai import ResponsesProtocol
from tests.fakes.server import FakeServer, Recorded, Reply


def test_seed_snippet_constructs_with_no_network_and_no_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    from kern.agent import Agent
    from kern.db.sqlite import SqliteDb
    from kern.models.openai import OpenAIResponses

    agent = Agent(
        model=OpenAIResponses(id="gpt-5.2"), db=SqliteDb(db_file="tmp/agents.db"), learning=True
    )
    assert (tmp_path / "tmp" / "agents.db").exists()
    assert agent.get_learning_machine() is not None


def weather_then_answer(request: Recorded) -> Reply:
    """Call the tool first; answer once its output is in the input."""
    outputs = [i for i in request.body["input"] if i.get("type") == "function_call_output"]
    if not outputs:
        return Reply(tool_calls=[("get_weather", {"city": "Paris"})])
    return Reply(text=f"The server says: {outputs[-1]['output']}")


@pytest.mark.parametrize("stream", [False, True])
def test_run_against_openai_base_url_with_tool_calls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stream: bool
) -> None:
    from kern.agent import Agent
    from kern.db.sqlite import SqliteDb
    from kern.models.openai import OpenAIResponses
    from kern.tools import tool

    @tool
    def get_weather(city: str) -> str:
        """Weather for a city."""
        return f"sunny in {city}"

    with FakeServer(ResponsesProtocol(), weather_then_answer) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.url + "/v1")
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        db = SqliteDb(db_file=str(tmp_path / "agents.db"))
        agent = Agent(model=OpenAIResponses(id="gpt-5.2"), db=db, tools=[get_weather])
        if stream:
            events = list(agent.run("hi", user_id="u", session_id="s", stream=True))
            tools = [e for e in events if isinstance(e, ToolCallCompleted)]
            text = "".join(e.text for e in events if isinstance(e, ContentDelta))
            final = events[-1]
            assert isinstance(final, RunCompleted)
            output = final.output
            assert text == output.content
        else:
            output = agent.run("hi", user_id="u", session_id="s")
            tools = []
        agent.close()
        db.close()
    assert output.content == "The server says: sunny in Paris"
    assert output.metrics.model_calls == 2
    assert len(server.requests) == 2
    second = server.requests[1].body
    call = next(i for i in second["input"] if i.get("type") == "function_call")
    assert json.loads(call["arguments"]) == {"city": "Paris"}
    assert {k.lower(): v for k, v in server.requests[0].headers.items()}.get(
        "authorization"
    ) == "Bearer sk-test"
    if stream:
        assert [t.content for t in tools] == ["sunny in Paris"]


def alice_server(request: Recorded) -> Reply:
    """Answers chat turns; answers extraction (structured output) with Alice's facts."""
    fmt = request.body.get("text", {}).get("format", {})
    if fmt.get("type") == "json_schema":
        exchange = json.dumps(request.body["input"])
        if "Netflix" in exchange:
            return Reply(
                text=json.dumps(
                    {
                        "user_profile": {"name": "Alice", "company": "Netflix"},
                        "user_memory": {"add": [{"content": "The user wants short answers."}]},
                        "session_context": {"summary": "Alice introduced herself."},
                    }
                )
            )
        return Reply(
            text=json.dumps({"user_profile": None, "user_memory": None, "session_context": None})
        )
    return Reply(text="Noted!")


def test_seed_scenario_learns_over_the_responses_wire(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kern.agent import Agent
    from kern.db.sqlite import SqliteDb
    from kern.models.openai import OpenAIResponses

    with FakeServer(ResponsesProtocol(), alice_server) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.url + "/v1")
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        monkeypatch.chdir(tmp_path)
        agent = Agent(
            model=OpenAIResponses(id="gpt-5.2"),
            db=SqliteDb(db_file="tmp/agents.db"),
            learning=True,
        )
        first = agent.run("I'm Alice, I work at Netflix", user_id="alice", session_id="s1")
        assert first.content == "Noted!" and first.metrics.model_calls == 1
        lm = agent.get_learning_machine()
        assert lm is not None and lm.wait_for_jobs("alice", timeout=10)
        assert len(server.requests) == 2  # exactly 1 to answer + 1 to learn
        second = agent.run("What do you know about me?", user_id="alice", session_id="s2")
        assert second.metrics.model_calls == 1
        assert lm.wait_for_jobs("alice", timeout=10)
        assert len(server.requests) == 4  # again 1 + 1
        agent.close()
    answer_requests = [r for r in server.requests if "format" not in r.body.get("text", {})]
    instructions = answer_requests[1].body["instructions"]
    assert "Alice" in instructions and "Netflix" in instructions
    extraction = server.requests[1].body
    assert "Noted!" in json.dumps(extraction["input"])  # the extraction saw the answer
