"""The Anthropic provider over real HTTP, through the official SDK, against a fake server."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from kern.errors import ConfigError, ModelError, ModelHTTPError, ModelTimeoutError
from kern.models.anthropic import Anthropic, StreamAssembly, wire_messages
from kern.models.base import (
    AssistantMessage,
    Message,
    ModelRequest,
    ModelResponse,
    OutputSchema,
    TextDelta,
    ToolCall,
    ToolDefinition,
    ToolResultMessage,
    UserMessage,
)
from tests.fakes.anthropic import MessagesProtocol
from tests.fakes.server import FakeServer, Recorded, Reply

pytest.importorskip("anthropic", reason="the `anthropic` extra is not installed")

WEATHER = ToolDefinition(
    "get_weather",
    "Current weather for a city.",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
PERSON = OutputSchema(
    "person",
    {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
    },
    "A person.",
)


def sent_key(recorded: Recorded) -> str | None:
    """The API key a request carried (``x-api-key``, or a bearer token in newer SDKs)."""
    headers = {k.lower(): v for k, v in recorded.headers.items()}
    return headers.get("x-api-key") or headers.get("authorization", "").removeprefix("Bearer ")


def ask(text: str = "Hi", **kwargs: Any) -> ModelRequest:
    return ModelRequest(messages=[UserMessage(text)], **kwargs)


class Script:
    """Replies for the current test, served by one module-wide server.

    One server per module, not per test: stopping a ``FakeServer`` waits out its 0.5 s poll.
    Like ``FakeServer``'s own list, the last reply repeats.
    """

    def __init__(self) -> None:
        self.replies: list[Reply] = [Reply(text="unscripted")]

    def __call__(self, request: Recorded) -> Reply:
        if len(self.replies) > 1:
            return self.replies.pop(0)
        return self.replies[0]


@pytest.fixture(scope="module")
def shared_server() -> Iterator[tuple[FakeServer, Script]]:
    script = Script()
    with FakeServer(MessagesProtocol(), script) as server:
        yield server, script


@pytest.fixture
def serve(shared_server: tuple[FakeServer, Script]) -> Any:
    """Script the server's replies for this test; its request log starts empty."""
    server, script = shared_server

    def start(*replies: Reply) -> FakeServer:
        script.replies = list(replies)
        server.requests.clear()
        return server

    return start


@pytest.fixture
async def connect() -> AsyncIterator[Any]:
    """Make ``Anthropic`` models pointed at a fake server; their clients are closed after."""
    models: list[Anthropic] = []

    def make(server: FakeServer, **kwargs: Any) -> Anthropic:
        kwargs.setdefault("api_key", "test-key")
        kwargs.setdefault("max_retries", 0)
        model = Anthropic("claude-test", base_url=server.url, **kwargs)
        models.append(model)
        return model

    yield make
    for model in models:
        await model.aclose()


async def collect(model: Anthropic, request: ModelRequest) -> tuple[list[str], ModelResponse]:
    deltas: list[str] = []
    final: list[ModelResponse] = []
    async for event in model.stream(request):
        if isinstance(event, TextDelta):
            assert not final, "a delta arrived after the response"
            deltas.append(event.text)
        else:
            final.append(event)
    assert len(final) == 1
    return deltas, final[0]


async def test_text(serve: Any, connect: Any) -> None:
    server = serve(Reply(text="Hello there", input_tokens=12, output_tokens=3))
    model = connect(server)

    response = await model.request(ask("Hi", instructions="Be brief."))

    assert response.text == "Hello there"
    assert response.tool_calls == ()
    assert (response.usage.input_tokens, response.usage.output_tokens) == (12, 3)
    assert response.model_name == "claude-test"
    [sent] = server.requests
    assert sent.path == "/v1/messages"
    assert sent_key(sent) == "test-key"
    assert sent.body["model"] == "claude-test"
    assert sent.body["max_tokens"] == 4096
    assert sent.body["system"] == "Be brief."
    assert sent.body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]
    assert "tools" not in sent.body


async def test_tool_call(serve: Any, connect: Any) -> None:
    server = serve(Reply(tool_calls=[("get_weather", {"city": "Paris"})]))
    model = connect(server)

    response = await model.request(ask("Weather in Paris?", tools=[WEATHER]))

    assert response.text is None
    [call] = response.tool_calls
    assert call.name == "get_weather"
    assert call.id.startswith("toolu_")
    assert call.parsed_arguments() == {"city": "Paris"}
    assert server.requests[0].body["tools"] == [
        {
            "name": "get_weather",
            "description": WEATHER.description,
            "input_schema": WEATHER.parameters,
        }
    ]
    assert "tool_choice" not in server.requests[0].body


async def test_parallel_tool_calls(serve: Any, connect: Any) -> None:
    server = serve(
        Reply(
            text="Checking both.",
            tool_calls=[("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Oslo"})],
        )
    )
    model = connect(server)

    response = await model.request(ask("Paris and Oslo?", tools=[WEATHER]))

    assert response.text == "Checking both."
    assert [c.parsed_arguments()["city"] for c in response.tool_calls] == ["Paris", "Oslo"]
    assert len({c.id for c in response.tool_calls}) == 2


async def test_tool_round_trip_is_serialised_as_the_api_requires(serve: Any, connect: Any) -> None:
    server = serve(Reply(text="Sunny in Paris, snow in Oslo."))
    model = connect(server)
    history: list[Message] = [
        UserMessage("Paris and Oslo?"),
        AssistantMessage(
            "Checking.",
            (
                ToolCall("toolu_1", "get_weather", '{"city": "Paris"}'),
                ToolCall("toolu_2", "get_weather", '{"city": "Oslo"}'),
            ),
        ),
        ToolResultMessage("toolu_1", "get_weather", "sunny"),
        ToolResultMessage("toolu_2", "get_weather", "city not found", is_error=True),
    ]

    response = await model.request(ModelRequest(messages=history, tools=[WEATHER]))

    assert response.text == "Sunny in Paris, snow in Oslo."
    assert server.requests[0].body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Paris and Oslo?"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking."},
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
                {
                    "type": "tool_use",
                    "id": "toolu_2",
                    "name": "get_weather",
                    "input": {"city": "Oslo"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_2",
                    "content": "city not found",
                    "is_error": True,
                },
            ],
        },
    ]


def test_a_user_turn_after_tool_results_joins_their_message() -> None:
    wire = wire_messages(
        [
            AssistantMessage(None, (ToolCall("t1", "f", "not json"),)),
            ToolResultMessage("t1", "f", "bad arguments", is_error=True),
            UserMessage("Try again."),
            AssistantMessage(None),
        ]
    )

    assert wire == [
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "t1",
                    "content": "bad arguments",
                    "is_error": True,
                },
                {"type": "text", "text": "Try again."},
            ],
        },
    ]


async def test_structured_output_forces_the_schema_tool(serve: Any, connect: Any) -> None:
    server = serve(Reply(text=json.dumps({"name": "Alice", "age": 30})))
    model = connect(server)

    response = await model.request(ask("Alice is 30.", output_schema=PERSON))

    assert PERSON.parse(response.text, provider="anthropic") == {"name": "Alice", "age": 30}
    assert response.tool_calls == ()
    body = server.requests[0].body
    assert body["tool_choice"] == {"type": "tool", "name": "person"}
    assert body["tools"] == [
        {"name": "person", "description": "A person.", "input_schema": PERSON.schema}
    ]


async def test_structured_output_with_tools_lets_the_model_call_them(
    serve: Any, connect: Any
) -> None:
    server = serve(Reply(tool_calls=[("get_weather", {"city": "Rome"})]))
    model = connect(server)

    response = await model.request(ask("Rome?", tools=[WEATHER], output_schema=PERSON))

    assert [c.name for c in response.tool_calls] == ["get_weather"]
    body = server.requests[0].body
    assert body["tool_choice"] == {"type": "any"}
    assert [t["name"] for t in body["tools"]] == ["get_weather", "person"]


async def test_stream_text(serve: Any, connect: Any) -> None:
    server = serve(Reply(text="Hello, streaming world!", input_tokens=7, output_tokens=6))
    model = connect(server)

    deltas, response = await collect(model, ask())

    assert len(deltas) > 1
    assert "".join(deltas) == response.text == "Hello, streaming world!"
    assert (response.usage.input_tokens, response.usage.output_tokens) == (7, 6)
    assert response.model_name == "claude-test"
    assert server.requests[0].body["stream"] is True


async def test_stream_tool_calls_are_assembled(serve: Any, connect: Any) -> None:
    server = serve(
        Reply(
            text="Let me look.",
            tool_calls=[("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Oslo"})],
        )
    )
    model = connect(server)

    deltas, response = await collect(model, ask(tools=[WEATHER]))

    assert "".join(deltas) == response.text == "Let me look."
    assert [c.parsed_arguments() for c in response.tool_calls] == [
        {"city": "Paris"},
        {"city": "Oslo"},
    ]
    assert all(c.id.startswith("toolu_") for c in response.tool_calls)


async def test_stream_structured_output(serve: Any, connect: Any) -> None:
    server = serve(Reply(text=json.dumps({"name": "Bob", "age": 41})))
    model = connect(server)

    deltas, response = await collect(model, ask(output_schema=PERSON))

    assert "".join(deltas) == response.text
    assert PERSON.parse(response.text, provider="anthropic") == {"name": "Bob", "age": 41}
    assert response.tool_calls == ()


async def test_rate_limit_is_retried(serve: Any, connect: Any) -> None:
    server = serve(Reply(status=429, headers={"retry-after-ms": "1"}), Reply(text="after wait"))
    model = connect(server, max_retries=2)

    response = await model.request(ask())

    assert response.text == "after wait"
    assert len(server.requests) == 2


async def test_server_error_becomes_model_http_error(serve: Any, connect: Any) -> None:
    server = serve(Reply(status=500, text="boom", headers={"retry-after-ms": "1"}))
    model = connect(server, max_retries=1)

    with pytest.raises(ModelHTTPError) as info:
        await model.request(ask())

    assert info.value.status_code == 500
    assert info.value.provider == "anthropic"
    assert "anthropic" in str(info.value)
    assert len(server.requests) == 2  # the SDK retried once


async def test_stream_error_status_becomes_model_http_error(serve: Any, connect: Any) -> None:
    server = serve(Reply(status=400, text="bad request"))
    model = connect(server)

    with pytest.raises(ModelHTTPError) as info:
        await collect(model, ask())

    assert info.value.status_code == 400
    assert "bad request" in str(info.value)


async def test_timeout_becomes_model_timeout_error(serve: Any, connect: Any) -> None:
    server = serve(Reply(text="too late", delay=1.0))
    model = connect(server, timeout=0.2, max_retries=1)

    with pytest.raises(ModelTimeoutError) as info:
        await model.request(ask())

    assert info.value.provider == "anthropic"


@pytest.mark.parametrize(
    "raw",
    [b"{not json", b'{"unexpected": true}', b"[1, 2]", b'{"content": [{"type": "text"}]}'],
)
async def test_malformed_body_becomes_model_error(serve: Any, connect: Any, raw: bytes) -> None:
    model = connect(serve(Reply(raw=raw)))

    with pytest.raises(ModelError):
        await model.request(ask())


def test_stream_without_message_stop_is_an_error() -> None:
    assembly = StreamAssembly(None)
    assembly.feed({"type": "message_start", "message": {"model": "m", "usage": {}}})

    with pytest.raises(ModelError, match="message_stop"):
        assembly.response()


async def test_missing_key_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    for name in list(os.environ):
        if name.startswith("ANTHROPIC_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))  # no credential profile on disk either
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    model = Anthropic("claude-test")  # construction needs no key

    with pytest.raises(ConfigError) as info:
        await model.request(ask())

    assert "ANTHROPIC_API_KEY" in str(info.value)
    assert "kern.models.testing.TestModel" in str(info.value)


async def test_environment_configures_key_and_base_url(
    serve: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = serve(Reply(text="from env"))
    monkeypatch.setenv("ANTHROPIC_API_KEY", "env-key")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
    model = Anthropic("claude-test", max_retries=0)
    try:
        response = await model.request(ask())
    finally:
        await model.aclose()

    assert response.text == "from env"
    assert sent_key(server.requests[0]) == "env-key"
