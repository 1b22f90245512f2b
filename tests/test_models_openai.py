"""Both OpenAI providers over real HTTP, through the official SDK, against a fake server.

Every scenario runs twice: ``OpenAIResponses`` against ``ResponsesProtocol`` and ``OpenAIChat``
against ``ChatProtocol``; only the request-body assertions differ per API.
"""

from __future__ import annotations

import asyncio
import gc
import json
import warnings
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from openai import AsyncOpenAI

from kern.errors import ConfigError, ModelError, ModelHTTPError, ModelTimeoutError
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
from kern.models.openai import OpenAIChat, OpenAIResponses, _strict_compatible
from tests.fakes.openai import ChatProtocol, ResponsesProtocol
from tests.fakes.server import FakeServer, Recorded, Reply, sse

OpenAIModel = OpenAIResponses | OpenAIChat

WEATHER = ToolDefinition(
    "get_weather",
    "Current weather for a city.",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
STRICT_PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}
LOOSE_PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name"],
}


@dataclass(frozen=True)
class Api:
    model: type[OpenAIResponses] | type[OpenAIChat]
    protocol: type[ResponsesProtocol] | type[ChatProtocol]
    path: str

    @property
    def responses(self) -> bool:
        return self.model is OpenAIResponses


APIS = [
    pytest.param(Api(OpenAIResponses, ResponsesProtocol, "/v1/responses"), id="responses"),
    pytest.param(Api(OpenAIChat, ChatProtocol, "/v1/chat/completions"), id="chat"),
]

Serve = Callable[..., FakeServer]
Connect = Callable[..., OpenAIModel]


@pytest.fixture(params=APIS)
def api(request: pytest.FixtureRequest) -> Api:
    value: Api = request.param
    return value


@pytest.fixture
def serve(api: Api) -> Iterator[Serve]:
    """Start a fake server speaking ``api``'s protocol; closed after the test."""
    servers: list[FakeServer] = []

    def start(*replies: Reply) -> FakeServer:
        server = FakeServer(api.protocol(), list(replies))
        servers.append(server.__enter__())
        return server

    yield start
    for server in servers:
        server.__exit__(None, None, None)


@pytest.fixture
async def connect(api: Api) -> AsyncIterator[Connect]:
    """Make models of ``api``'s class pointed at a fake server; their clients closed after."""
    models: list[OpenAIModel] = []

    def make(server: FakeServer, **kwargs: Any) -> OpenAIModel:
        kwargs.setdefault("api_key", "test-key")
        kwargs.setdefault("max_retries", 0)
        model = api.model("gpt-test", base_url=f"{server.url}/v1", **kwargs)
        models.append(model)
        return model

    yield make
    for model in models:
        await model.aclose()


def header(recorded: Recorded, name: str) -> str | None:
    return {k.lower(): v for k, v in recorded.headers.items()}.get(name)


def ask(text: str = "Hi", **kwargs: Any) -> ModelRequest:
    return ModelRequest(messages=[UserMessage(text)], **kwargs)


async def collect(model: OpenAIModel, request: ModelRequest) -> tuple[list[str], ModelResponse]:
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


async def answer(model: OpenAIModel, request: ModelRequest, *, streaming: bool) -> ModelResponse:
    """The response to ``request``, streamed or not."""
    if streaming:
        return (await collect(model, request))[1]
    return await model.request(request)


def tools_sent(api: Api, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The tools of a request body, in the Responses API's flat shape."""
    tools: list[dict[str, Any]] = body["tools"]
    return tools if api.responses else [{"type": t["type"], **t["function"]} for t in tools]


def schema_sent(api: Api, body: dict[str, Any]) -> dict[str, Any]:
    """The structured-output format of a request body, in the Responses API's flat shape."""
    if api.responses:
        fmt: dict[str, Any] = body["text"]["format"]
        return fmt
    return {"type": body["response_format"]["type"], **body["response_format"]["json_schema"]}


# --- plain requests ----------------------------------------------------------------------


async def test_text(api: Api, serve: Serve, connect: Connect) -> None:
    server = serve(Reply(text="Hello there", input_tokens=12, output_tokens=3))
    model = connect(server)

    response = await model.request(ask("Hi", instructions="Be brief."))

    assert response.text == "Hello there"
    assert response.tool_calls == ()
    assert (response.usage.input_tokens, response.usage.output_tokens) == (12, 3)
    assert response.model_name == "gpt-test"
    [sent] = server.requests
    assert sent.path == api.path
    assert header(sent, "authorization") == "Bearer test-key"
    assert sent.body["model"] == "gpt-test"
    assert not sent.stream
    assert "tools" not in sent.body
    assert "parallel_tool_calls" not in sent.body
    if api.responses:
        assert sent.body["instructions"] == "Be brief."
        assert sent.body["input"] == [{"role": "user", "content": "Hi"}]
        assert "text" not in sent.body
    else:
        assert sent.body["messages"] == [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
        ]
        assert "response_format" not in sent.body


async def test_settings_are_sent(api: Api, serve: Serve, connect: Connect) -> None:
    server = serve(Reply(text="ok"))
    model = connect(server, temperature=0.2, max_output_tokens=50)

    await model.request(ask())

    body = server.requests[0].body
    assert body["temperature"] == 0.2
    # A compatible server (this one is on 127.0.0.1) gets Chat Completions' ``max_tokens``.
    assert body["max_output_tokens" if api.responses else "max_tokens"] == 50


async def test_tool_call(api: Api, serve: Serve, connect: Connect) -> None:
    server = serve(Reply(tool_calls=[("get_weather", {"city": "Paris"})]))
    model = connect(server)

    response = await model.request(ask("Weather in Paris?", tools=[WEATHER]))

    assert response.text is None
    [call] = response.tool_calls
    assert call.name == "get_weather"
    assert call.parsed_arguments() == {"city": "Paris"}
    assert call.id.startswith("call_")
    body = server.requests[0].body
    assert tools_sent(api, body) == [
        {
            "type": "function",
            "name": "get_weather",
            "description": "Current weather for a city.",
            "parameters": WEATHER.parameters,
            "strict": False,  # no additionalProperties: false, so not strict-compatible
        }
    ]
    assert body["parallel_tool_calls"] is True


async def test_parallel_tool_calls(serve: Serve, connect: Connect) -> None:
    server = serve(
        Reply(
            text="Checking both.",
            tool_calls=[("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Oslo"})],
        )
    )
    model = connect(server)

    response = await model.request(ask("Paris and Oslo?", tools=[WEATHER]))

    assert response.text == "Checking both."
    assert [c.parsed_arguments() for c in response.tool_calls] == [
        {"city": "Paris"},
        {"city": "Oslo"},
    ]
    assert len({c.id for c in response.tool_calls}) == 2


async def test_tool_round_trip_is_serialised(api: Api, serve: Serve, connect: Connect) -> None:
    server = serve(Reply(text="Sunny in Paris, rain in Oslo."))
    model = connect(server)
    paris = ToolCall("call_1", "get_weather", '{"city": "Paris"}')
    oslo = ToolCall("call_2", "get_weather", '{"city": "Oslo"}')
    history: list[Message] = [
        UserMessage("Paris and Oslo?"),
        AssistantMessage("Let me check.", (paris, oslo)),
        ToolResultMessage("call_1", "get_weather", "sunny"),
        ToolResultMessage("call_2", "get_weather", "city not found", is_error=True),
    ]

    response = await model.request(ModelRequest(history, tools=[WEATHER]))

    assert response.text == "Sunny in Paris, rain in Oslo."
    body = server.requests[0].body
    if api.responses:
        assert body["input"] == [
            {"role": "user", "content": "Paris and Oslo?"},
            {"role": "assistant", "content": "Let me check."},
            {
                "type": "function_call",
                "call_id": "call_1",
                "name": "get_weather",
                "arguments": '{"city": "Paris"}',
            },
            {
                "type": "function_call",
                "call_id": "call_2",
                "name": "get_weather",
                "arguments": '{"city": "Oslo"}',
            },
            {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
            {"type": "function_call_output", "call_id": "call_2", "output": "city not found"},
        ]
    else:
        assert body["messages"] == [
            {"role": "user", "content": "Paris and Oslo?"},
            {
                "role": "assistant",
                "content": "Let me check.",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    },
                    {
                        "id": "call_2",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
            {"role": "tool", "tool_call_id": "call_2", "content": "city not found"},
        ]


@pytest.mark.parametrize(("schema", "strict"), [(STRICT_PERSON, True), (LOOSE_PERSON, False)])
async def test_structured_output(
    api: Api, serve: Serve, connect: Connect, schema: dict[str, Any], strict: bool
) -> None:
    server = serve(Reply(text='{"name": "Ada", "age": 36}'))
    model = connect(server)
    output = OutputSchema("person", schema, "A person.")

    response = await model.request(ask("Who wrote the first program?", output_schema=output))

    assert output.parse(response.text, provider=model.provider) == {"name": "Ada", "age": 36}
    assert schema_sent(api, server.requests[0].body) == {
        "type": "json_schema",
        "name": "person",
        "description": "A person.",
        "schema": schema,
        "strict": strict,
    }


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        (STRICT_PERSON, True),
        (LOOSE_PERSON, False),
        ({"type": "object", "properties": {}}, False),
        ({"type": "object", "properties": {}, "additionalProperties": False}, True),
        (
            {
                "type": "object",
                "properties": {"pet": {"$ref": "#/$defs/Pet"}},
                "required": ["pet"],
                "additionalProperties": False,
                "$defs": {"Pet": {"type": "object", "properties": {"name": {"type": "string"}}}},
            },
            False,
        ),
        (
            {
                "type": "object",
                "properties": {"tags": {"type": "array", "items": STRICT_PERSON}},
                "required": ["tags"],
                "additionalProperties": False,
            },
            True,
        ),
        ({"anyOf": [STRICT_PERSON, LOOSE_PERSON]}, False),
        # A property *named* "properties" is not a nested object schema.
        (
            {
                "type": "object",
                "properties": {"properties": {"type": "string"}},
                "required": ["properties"],
                "additionalProperties": False,
            },
            True,
        ),
    ],
)
def test_strict_compatible(schema: dict[str, Any], expected: bool) -> None:
    assert _strict_compatible(schema) is expected


# --- streaming ---------------------------------------------------------------------------


async def test_stream_text(api: Api, serve: Serve, connect: Connect) -> None:
    server = serve(Reply(text="Hello there, world", input_tokens=12, output_tokens=3))
    model = connect(server)

    deltas, response = await collect(model, ask(instructions="Be brief."))

    assert len(deltas) > 1
    assert "".join(deltas) == "Hello there, world"
    assert response.text == "Hello there, world"
    assert (response.usage.input_tokens, response.usage.output_tokens) == (12, 3)
    assert response.model_name == "gpt-test"
    [sent] = server.requests
    assert sent.stream
    if not api.responses:
        assert sent.body["stream_options"] == {"include_usage": True}


async def test_stream_tool_calls(serve: Serve, connect: Connect) -> None:
    server = serve(
        Reply(
            text="Checking.",
            tool_calls=[("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Oslo"})],
        )
    )
    model = connect(server)

    deltas, response = await collect(model, ask("Paris and Oslo?", tools=[WEATHER]))

    assert "".join(deltas) == "Checking."
    assert response.text == "Checking."
    assert [c.name for c in response.tool_calls] == ["get_weather", "get_weather"]
    assert [c.parsed_arguments() for c in response.tool_calls] == [
        {"city": "Paris"},
        {"city": "Oslo"},
    ]
    assert all(c.id.startswith("call_") for c in response.tool_calls)
    assert len({c.id for c in response.tool_calls}) == 2


async def test_stream_stopped_early_leaves_model_usable(serve: Serve, connect: Connect) -> None:
    server = serve(Reply(text="a long answer that streams in many pieces"))
    model = connect(server)

    stream = model.stream(ask())
    assert isinstance(stream, AsyncGenerator)
    first = await anext(stream)
    await stream.aclose()

    assert isinstance(first, TextDelta)
    assert (await model.request(ask())).text == "a long answer that streams in many pieces"


async def test_stream_cut_short_is_an_error(api: Api, serve: Serve, connect: Connect) -> None:
    # The response starts but never reaches its completion event / finish_reason.
    if api.responses:
        start = {"type": "response.created", "sequence_number": 0, "response": {"id": "r"}}
        raw = sse("response.created", start)
    else:
        chunk = {
            "id": "c",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": "gpt-test",
            "choices": [{"index": 0, "delta": {"content": "Hel"}, "finish_reason": None}],
        }
        raw = sse(None, chunk)
    server = serve(Reply(raw=raw))
    model = connect(server)

    with pytest.raises(ModelError, match="stream ended"):
        await collect(model, ask())


async def test_stream_error_event(api: Api, serve: Serve, connect: Connect) -> None:
    # How each API reports a failure after the stream has started.
    if api.responses:
        event = {"type": "error", "sequence_number": 0, "code": "server_error", "param": None}
        raw = sse("error", {**event, "message": "overloaded, try later"})
    else:
        raw = sse(None, {"error": {"message": "overloaded, try later", "type": "server_error"}})
    server = serve(Reply(raw=raw))
    model = connect(server)

    with pytest.raises(ModelError, match="overloaded, try later") as caught:
        await collect(model, ask())

    assert caught.value.provider == model.provider


# --- failures ----------------------------------------------------------------------------


async def test_rate_limit_is_retried(serve: Serve, connect: Connect) -> None:
    server = serve(Reply(status=429, headers={"retry-after-ms": "1"}), Reply(text="ok"))
    model = connect(server, max_retries=2)

    response = await model.request(ask())

    assert response.text == "ok"
    assert len(server.requests) == 2


async def test_server_error_after_retries(api: Api, serve: Serve, connect: Connect) -> None:
    server = serve(Reply(status=500, headers={"retry-after-ms": "1"}))
    model = connect(server, max_retries=1)

    with pytest.raises(ModelHTTPError) as caught:
        await model.request(ask())

    assert caught.value.status_code == 500
    assert caught.value.provider == model.provider
    assert model.provider in str(caught.value)
    assert len(server.requests) == 2


async def test_client_error_is_not_retried(serve: Serve, connect: Connect) -> None:
    server = serve(Reply(status=400, text="Invalid schema for function 'get_weather'"))
    model = connect(server, max_retries=2)

    with pytest.raises(ModelHTTPError, match="Invalid schema") as caught:
        await model.request(ask())

    assert caught.value.status_code == 400
    assert len(server.requests) == 1


@pytest.mark.parametrize("streaming", [False, True], ids=["request", "stream"])
async def test_timeout(serve: Serve, connect: Connect, streaming: bool) -> None:
    server = serve(Reply(text="too late", delay=1.0))
    model = connect(server, timeout=0.3, max_retries=0)

    with pytest.raises(ModelTimeoutError):
        await answer(model, ask(), streaming=streaming)


@pytest.mark.parametrize("streaming", [False, True], ids=["request", "stream"])
@pytest.mark.parametrize("raw", [b"not json", b'{"object": "surprise"}', b"[1, 2]"])
async def test_malformed_body(serve: Serve, connect: Connect, raw: bytes, streaming: bool) -> None:
    server = serve(Reply(raw=raw))
    model = connect(server)

    with pytest.raises(ModelError) as caught:
        await answer(model, ask(), streaming=streaming)

    assert caught.value.provider == model.provider


async def test_malformed_stream_event(serve: Serve, connect: Connect) -> None:
    server = serve(Reply(raw=b"data: {not json\n\n"))
    model = connect(server)

    with pytest.raises(ModelError, match="unexpected response body"):
        await collect(model, ask())


# --- configuration -----------------------------------------------------------------------


def test_constructs_without_key_or_network(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_ADMIN_KEY", raising=False)

    model = api.model("gpt-5.2")

    assert model.id == "gpt-5.2"
    assert model.name == f"{model.provider}:gpt-5.2"


@pytest.mark.parametrize("streaming", [False, True], ids=["request", "stream"])
async def test_missing_key_is_a_config_error(
    api: Api, monkeypatch: pytest.MonkeyPatch, streaming: bool
) -> None:
    monkeypatch.delenv("OPENAI_ADMIN_KEY", raising=False)
    model = api.model("gpt-5.2")

    with pytest.raises(ConfigError, match="OPENAI_API_KEY") as caught:
        await answer(model, ask(), streaming=streaming)

    assert "kern.models.testing.TestModel" in str(caught.value)


async def test_environment_is_honoured(
    api: Api, serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = serve(Reply(text="from env"))
    monkeypatch.setenv("OPENAI_BASE_URL", f"{server.url}/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "env-key")
    model = api.model("gpt-test")

    try:
        response = await model.request(ask())
    finally:
        await model.aclose()

    assert response.text == "from env"
    [sent] = server.requests
    assert sent.path == api.path
    assert header(sent, "authorization") == "Bearer env-key"


def test_a_client_is_closed_with_its_event_loop(api: Api, serve: Serve) -> None:
    """A script calling ``asyncio.run`` per request leaves no connection open behind it."""
    server = serve(Reply(text="one"), Reply(text="two"))
    model = api.model("gpt-test", base_url=f"{server.url}/v1", api_key="k", max_retries=0)

    gc.collect()  # earlier tests' garbage is not this test's business
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        texts = [asyncio.run(model.request(ask())).text for _ in range(2)]
        gc.collect()  # an unclosed transport or socket warns when collected

    assert texts == ["one", "two"]
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []


async def test_injected_client_is_used_and_left_open(api: Api, serve: Serve) -> None:
    server = serve(Reply(text="injected"))
    client = AsyncOpenAI(api_key="injected-key", base_url=f"{server.url}/v1", max_retries=0)
    model = api.model("gpt-test", client=client)

    try:
        assert (await model.request(ask())).text == "injected"
        await model.aclose()
        assert not client.is_closed()
    finally:
        await client.close()

    assert header(server.requests[0], "authorization") == "Bearer injected-key"


async def test_fake_passes_sdk_strict_validation(api: Api, serve: Serve) -> None:
    """Guards the fakes: the SDK validates every body and event against its own models."""
    both = Reply(
        text="Checking.",
        tool_calls=[("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Oslo"})],
    )
    server = serve(both)
    client = AsyncOpenAI(
        api_key="k", base_url=f"{server.url}/v1", max_retries=0, _strict_response_validation=True
    )
    model = api.model("gpt-test", client=client)
    request = ask("Paris and Oslo?", tools=[WEATHER])

    try:
        plain = await model.request(request)
        _, streamed = await collect(model, request)
    finally:
        await client.close()

    for response in (plain, streamed):
        assert response.text == "Checking."
        assert [c.parsed_arguments()["city"] for c in response.tool_calls] == ["Paris", "Oslo"]


def test_fake_error_body_has_openai_shape(api: Api) -> None:
    body = api.protocol().render_error(Reply(status=429))
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["code"] == "rate_limit_exceeded"
    assert json.loads(json.dumps(body)) == body
