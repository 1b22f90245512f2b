"""Structured output by capability, retries and errors, against servers that lack features.

Every test talks HTTP to a ``FakeServer`` through the official ``openai`` SDK. The servers
refuse what real compatible servers refuse (``tests/fakes/capabilities.py``): ``json_schema``
with 400 or with llama-cpp-python's 500, tool calling, JSON mode, ``/v1/responses``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from kern.agent import Agent
from kern.errors import ConfigError, ModelHTTPError, short_error
from kern.learn import LearningMachine
from kern.models._sdk import retry_delay, says_unsupported
from kern.models.base import ModelRequest, OutputSchema, UserMessage
from kern.models.openai import OpenAIChat, OpenAIResponses, token_limit_param
from kern.models.structured import forget_modes
from tests.fakes.capabilities import LLAMA_CPP_PYTHON_REFUSAL, Endpoint
from tests.fakes.openai import ChatProtocol
from tests.fakes.server import FakeServer, Recorded, Reply

PERSON = OutputSchema(
    "person",
    {
        "type": "object",
        "properties": {"name": {"type": "string"}, "company": {"type": "string"}},
        "required": ["name"],
    },
)
ALICE = "Hi! I'm Alice and I work at Netflix as a data engineer."

Serve = Callable[..., FakeServer]


@pytest.fixture(autouse=True)
def _fresh_modes() -> Iterator[None]:
    forget_modes()
    yield
    forget_modes()


@pytest.fixture
def serve() -> Iterator[Serve]:
    servers: list[FakeServer] = []

    def start(replies: Any) -> FakeServer:
        server = FakeServer(ChatProtocol(), replies if callable(replies) else list(replies))
        servers.append(server.__enter__())
        return server

    yield start
    for server in servers:
        server.__exit__(None, None, None)


@pytest.fixture
async def chat() -> AsyncIterator[Callable[..., OpenAIChat]]:
    models: list[OpenAIChat] = []

    def make(server: FakeServer, **kwargs: Any) -> OpenAIChat:
        kwargs.setdefault("api_key", "none")
        model = OpenAIChat("local-model", base_url=f"{server.url}/v1", **kwargs)
        models.append(model)
        return model

    yield make
    for model in models:
        await model.aclose()


def person_request() -> ModelRequest:
    return ModelRequest(messages=[UserMessage(ALICE)], output_schema=PERSON)


def bodies(server: FakeServer) -> list[dict[str, Any]]:
    return [r.body for r in server.requests]


def kind(body: dict[str, Any]) -> str:
    """Which structured-output mode a request body used."""
    if (body.get("response_format") or {}).get("type") == "json_schema":
        return "json_schema"
    if isinstance(body.get("tool_choice"), dict):
        return "tool"
    if (body.get("response_format") or {}).get("type") == "json_object":
        return "json_object"
    return "text"


# --- the capability ladder ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("refusal_status", "refusal"),
    [(400, "response_format json_schema is not supported"), (500, LLAMA_CPP_PYTHON_REFUSAL)],
    ids=["400", "llama-cpp-python-500"],
)
async def test_refused_json_schema_falls_back_to_a_forced_tool_and_is_remembered(
    serve: Serve, chat: Callable[..., OpenAIChat], refusal_status: int, refusal: str
) -> None:
    server = serve(Endpoint(json_schema=refusal_status, refusal=refusal))
    model = chat(server, max_retries=3)

    first = await model.request(person_request())
    second = await model.request(person_request())

    assert json.loads(first.text or "") == {"name": "Alice", "company": "Netflix"}
    assert json.loads(second.text or "") == {"name": "Alice", "company": "Netflix"}
    # The refusal is not retried (it cannot succeed), the tool mode is remembered.
    assert [kind(b) for b in bodies(server)] == ["json_schema", "tool", "tool"]
    forced = bodies(server)[1]
    assert forced["tool_choice"] == {"type": "function", "function": {"name": "person"}}
    assert forced["tools"][0]["function"]["parameters"] == PERSON.schema
    assert first.tool_calls == ()


async def test_the_remembered_mode_is_logged_once_at_info(
    serve: Serve, chat: Callable[..., OpenAIChat], caplog: pytest.LogCaptureFixture
) -> None:
    server = serve(Endpoint(json_schema=400))
    model = chat(server)

    with caplog.at_level(logging.INFO, logger="kern.models"):
        for _ in range(3):
            await model.request(person_request())

    lines = [r for r in caplog.records if "structured output" in r.getMessage()]
    assert len(lines) == 1
    assert "'tool'" in lines[0].getMessage() and server.url in lines[0].getMessage()


async def test_json_object_only_gets_the_schema_in_the_prompt(
    serve: Serve, chat: Callable[..., OpenAIChat]
) -> None:
    server = serve(Endpoint(json_schema=400, tools=False, fenced=True))
    model = chat(server)

    response = await model.request(person_request())

    assert json.loads(response.text or "") == {"name": "Alice", "company": "Netflix"}
    assert [kind(b) for b in bodies(server)] == ["json_schema", "tool", "json_object"]
    system = bodies(server)[-1]["messages"][0]
    assert system["role"] == "system" and json.dumps(PERSON.schema) in system["content"]


async def test_plain_text_is_the_last_resort(serve: Serve, chat: Callable[..., OpenAIChat]) -> None:
    server = serve(Endpoint(json_schema=422, tools=False, json_object=False, fenced=True))
    model = chat(server)

    response = await model.request(person_request())

    assert json.loads(response.text or "") == {"name": "Alice", "company": "Netflix"}
    assert [kind(b) for b in bodies(server)] == ["json_schema", "tool", "json_object", "text"]
    assert "response_format" not in bodies(server)[-1]


async def test_native_json_schema_costs_one_call(
    serve: Serve, chat: Callable[..., OpenAIChat]
) -> None:
    server = serve(Endpoint())
    model = chat(server)

    await model.request(person_request())

    assert [kind(b) for b in bodies(server)] == ["json_schema"]


@pytest.mark.parametrize("mode", ["json_schema", "tool", "json_object", "text"])
async def test_an_explicit_mode_is_used_alone(
    serve: Serve, chat: Callable[..., OpenAIChat], mode: Any
) -> None:
    server = serve(Endpoint())
    model = chat(server, structured_output=mode)

    response = await model.request(person_request())

    assert json.loads(response.text or "")["name"] == "Alice"
    assert [kind(b) for b in bodies(server)] == [mode]


async def test_an_explicit_mode_that_is_refused_fails_clearly(
    serve: Serve, chat: Callable[..., OpenAIChat]
) -> None:
    server = serve(Endpoint(json_schema=400))
    model = chat(server, structured_output="json_schema")

    with pytest.raises(ModelHTTPError, match="not supported") as caught:
        await model.request(person_request())

    assert caught.value.status_code == 400
    assert f"{server.url}/v1/chat/completions" in str(caught.value)
    assert len(server.requests) == 1


def test_an_unknown_mode_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="structured_output"):
        OpenAIChat("m", structured_output="yaml")  # type: ignore[arg-type]


async def test_a_refusal_that_is_not_about_capability_is_not_retried_in_other_modes(
    serve: Serve, chat: Callable[..., OpenAIChat]
) -> None:
    server = serve([Reply(status=401, text="bad key")])
    model = chat(server)

    with pytest.raises(ModelHTTPError) as caught:
        await model.request(person_request())

    assert caught.value.status_code == 401
    assert len(server.requests) == 1


# --- learning end to end over a limited server ------------------------------------------------


@pytest.mark.parametrize(
    "endpoint",
    [
        Endpoint(json_schema=500, refusal=LLAMA_CPP_PYTHON_REFUSAL),
        Endpoint(json_schema=400, tools=False),
        Endpoint(json_schema=400, tools=False, json_object=False, fenced=True),
    ],
    ids=["tools-only", "json-object-only", "text-only"],
)
async def test_learning_works_on_a_server_without_json_schema(
    serve: Serve, chat: Callable[..., OpenAIChat], endpoint: Endpoint
) -> None:
    server = serve(endpoint)
    lm = LearningMachine(user_profile=True, user_memory=True, session_context=True)
    agent = Agent(model=chat(server, max_retries=3), learning=lm)

    output = await agent.arun(ALICE, user_id="alice")
    assert output.learning is not None
    assert await output.learning.await_for(10) == "done", output.learning.error
    second = await agent.arun("What do you know about me?", user_id="alice")
    assert second.learning is not None
    assert await second.learning.await_for(10) == "done", second.learning.error

    profile = lm.user_profile.get(user_id="alice")
    assert (profile.name, profile.company) == ("Alice", "Netflix")
    assert [j.status for j in lm.db.list_jobs()] == ["done", "done"]
    assert "Netflix" in second.recalled
    await agent.aclose()


async def test_a_failing_extraction_is_visible_on_the_run_output_and_logged_once(
    serve: Serve, chat: Callable[..., OpenAIChat], caplog: pytest.LogCaptureFixture
) -> None:
    def server_with_a_bug(request: Recorded) -> Reply:
        if request.body.get("response_format") or request.body.get("tools"):
            return Reply(status=400, text="Traceback (most recent call last):\n" * 50 + "boom")
        if "JSON schema" in json.dumps(request.body):
            return Reply(text="I cannot do JSON, sorry.")
        return Reply(text="Hello Alice!")

    server = serve(server_with_a_bug)
    lm = LearningMachine(user_profile=True, consistency_timeout=0.1)
    agent = Agent(model=chat(server), learning=lm)

    with caplog.at_level(logging.WARNING):
        output = await agent.arun(ALICE, user_id="alice")
        assert output.content == "Hello Alice!"
        assert output.learning is not None
        state = await output.learning.await_for(10)

    assert state == "failed"
    error = output.learning.error or ""
    assert "ModelOutputError" in error and "\n" not in error and len(error) <= 500
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "\n" not in warnings[0].getMessage()
    [job] = lm.db.list_jobs()
    assert job.error == error
    await agent.aclose()


# --- retries: only what can succeed -----------------------------------------------------------


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
async def test_client_errors_are_not_retried(
    serve: Serve, chat: Callable[..., OpenAIChat], status: int
) -> None:
    server = serve([Reply(status=status, text="no")])
    model = chat(server, max_retries=3)

    with pytest.raises(ModelHTTPError) as caught:
        await model.request(ModelRequest(messages=[UserMessage("hi")]))

    assert caught.value.status_code == status
    assert len(server.requests) == 1


async def test_a_500_saying_unsupported_is_not_retried(
    serve: Serve, chat: Callable[..., OpenAIChat]
) -> None:
    server = serve([Reply(status=500, text=LLAMA_CPP_PYTHON_REFUSAL)])
    model = chat(server, max_retries=3, structured_output="json_schema")

    with pytest.raises(ModelHTTPError) as caught:
        await model.request(person_request())

    assert len(server.requests) == 1
    message = str(caught.value)
    assert "app.py" not in message and "POST /v1" not in message  # no traceback frames
    assert "Input should be 'text' or 'json_object'" in message
    assert "not retried" in message


@pytest.mark.parametrize(
    "headers", [{"retry-after": "0"}, {"retry-after-ms": "1"}], ids=["seconds", "ms"]
)
@pytest.mark.parametrize("status", [429, 503, 500])
async def test_transient_errors_are_retried_honouring_retry_after(
    serve: Serve, chat: Callable[..., OpenAIChat], status: int, headers: dict[str, str]
) -> None:
    server = serve([Reply(status=status, headers=headers), Reply(text="ok")])
    model = chat(server, max_retries=2)

    response = await model.request(ModelRequest(messages=[UserMessage("hi")]))

    assert response.text == "ok"
    assert len(server.requests) == 2


async def test_retries_stop_at_max_retries(serve: Serve, chat: Callable[..., OpenAIChat]) -> None:
    server = serve([Reply(status=503, headers={"retry-after-ms": "1"})])
    model = chat(server, max_retries=2)

    with pytest.raises(ModelHTTPError) as caught:
        await model.request(ModelRequest(messages=[UserMessage("hi")]))

    assert caught.value.status_code == 503
    assert len(server.requests) == 3


async def test_a_refused_connection_names_the_url_and_is_retried() -> None:
    model = OpenAIChat("m", base_url="http://127.0.0.1:9/v1", api_key="none", max_retries=1)

    with pytest.raises(Exception, match=r"cannot connect to http://127\.0\.0\.1:9/v1") as caught:
        await model.request(ModelRequest(messages=[UserMessage("hi")]))

    assert "is the server running" in str(caught.value)
    await model.aclose()


class _Status(Exception):
    def __init__(self, status: int, message: str = "", headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status_code = status
        self.message = message
        self.response = type("R", (), {"headers": headers or {}})()


@pytest.mark.parametrize(
    ("exc", "retried"),
    [
        (_Status(429), True),
        (_Status(503), True),
        (_Status(502), True),
        (_Status(500, "Internal error, try again"), True),
        (_Status(500, "response_format json_schema is not supported"), False),
        (_Status(500, LLAMA_CPP_PYTHON_REFUSAL), False),
        (_Status(400), False),
        (_Status(401), False),
        (_Status(403), False),
        (_Status(404), False),
        (_Status(422), False),
        (type("APITimeoutError", (Exception,), {})(), True),
        (type("APIConnectionError", (Exception,), {})(), True),
        (ValueError("bad body"), False),
    ],
)
def test_retry_policy(exc: Exception, retried: bool) -> None:
    assert (retry_delay(exc, 0) is not None) is retried


def test_retry_after_is_honoured_and_bounded() -> None:
    assert retry_delay(_Status(429, headers={"retry-after": "7"}), 0) == 7.0
    assert retry_delay(_Status(429, headers={"retry-after-ms": "250"}), 0) == 0.25
    assert retry_delay(_Status(429, headers={"retry-after": "3600"}), 0) is None
    assert 0 < (retry_delay(_Status(503), 5) or 0) <= 8.0 * 1.25


def test_says_unsupported() -> None:
    assert says_unsupported(LLAMA_CPP_PYTHON_REFUSAL)
    assert not says_unsupported("The server had an error while processing your request.")


# --- errors that say what to do --------------------------------------------------------------


async def test_a_server_without_responses_api_says_to_use_chat(serve: Serve) -> None:
    server = serve(Endpoint())
    model = OpenAIResponses("local-model", base_url=f"{server.url}/v1", api_key="none")

    with pytest.raises(ModelHTTPError) as caught:
        await model.request(ModelRequest(messages=[UserMessage("hi")]))

    message = str(caught.value)
    assert caught.value.status_code == 404
    assert f"{server.url}/v1/responses" in message
    assert "OpenAIChat" in message and "openai-chat:ID" in message
    await model.aclose()


def test_short_error_keeps_one_bounded_line_without_the_traceback() -> None:
    frame = '  File "x.py", line 3, in f\n    f()'
    body = f"boom\nTraceback (most recent call last):\n{frame}\nValueError: bad"
    assert short_error(body) == "boom ValueError: bad"
    assert (
        short_error('bad input\n\n  File "/srv/app.py", line 376, in h\n    POST /x') == "bad input"
    )
    assert len(short_error("x" * 5000, 300)) == 300
    assert short_error(RuntimeError("a\n\nb")) == "RuntimeError: a b"


# --- the token-limit parameter ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "param"),
    [
        ("https://api.openai.com/v1", "max_completion_tokens"),
        ("https://my-resource.openai.azure.com/openai/v1", "max_completion_tokens"),
        ("http://127.0.0.1:8080/v1", "max_tokens"),
        ("http://localhost:11434/v1", "max_tokens"),
        ("https://api.groq.com/openai/v1", "max_tokens"),
        ("https://not-api.openai.com.example.org/v1", "max_tokens"),
    ],
)
def test_token_limit_param_by_host(url: str, param: str) -> None:
    assert token_limit_param(url) == param


async def test_compatible_servers_get_max_tokens(
    serve: Serve, chat: Callable[..., OpenAIChat]
) -> None:
    server = serve(Endpoint())
    default = chat(server, max_output_tokens=5)
    forced = chat(server, max_output_tokens=5, token_limit_param="max_completion_tokens")

    await default.request(ModelRequest(messages=[UserMessage("hi")]))
    await forced.request(ModelRequest(messages=[UserMessage("hi")]))

    first, second = bodies(server)
    assert first["max_tokens"] == 5 and "max_completion_tokens" not in first
    assert second["max_completion_tokens"] == 5 and "max_tokens" not in second


def test_structured_output_with_a_raw_newline_inside_a_string_is_accepted() -> None:
    """Small local models write a literal newline inside a JSON string (SmolLM2 did, through
    llama-cpp-python's server): the answer is still read, not failed as 'not JSON'."""
    schema = OutputSchema(name="profile", schema={"type": "object"})
    assert schema.parse('{"name": "Alice\nSmith"}', provider="test") == {"name": "Alice\nSmith"}
