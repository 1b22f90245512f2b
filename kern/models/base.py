"""The model contract: small frozen messages in, one response (or a stream of deltas) out.

Every provider adapts its wire format to these types at its boundary; nothing above
``kern.models`` knows about SDK objects.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from kern.errors import ModelOutputError

__all__ = [
    "AssistantMessage",
    "Message",
    "Model",
    "ModelRequest",
    "ModelResponse",
    "ModelStreamEvent",
    "OutputSchema",
    "TextDelta",
    "ToolCall",
    "ToolDefinition",
    "ToolResultMessage",
    "Usage",
    "UserMessage",
    "message_from_dict",
    "message_to_dict",
]


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A call the model asked for; ``arguments`` is the raw JSON text the model produced.

    Kept raw on purpose: invalid JSON must reach the tool layer so it can be reported back to
    the model as a tool error instead of failing the run.
    """

    id: str
    name: str
    arguments: str

    def parsed_arguments(self) -> dict[str, Any]:
        """The arguments as a dict; ``{}`` for empty text, ``ValueError`` for invalid JSON."""
        if not self.arguments.strip():
            return {}
        value = json.loads(self.arguments, strict=False)  # raw newlines: see OutputSchema.parse
        if not isinstance(value, dict):
            raise ValueError("tool arguments must be a JSON object")
        return value


@dataclass(frozen=True, slots=True)
class UserMessage:
    content: str


@dataclass(frozen=True, slots=True)
class AssistantMessage:
    content: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()


@dataclass(frozen=True, slots=True)
class ToolResultMessage:
    tool_call_id: str
    name: str
    content: str
    is_error: bool = False


Message: TypeAlias = UserMessage | AssistantMessage | ToolResultMessage


@dataclass(frozen=True, slots=True)
class ToolDefinition:
    """What the model sees of a tool: a name, a description and a JSON schema of arguments."""

    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True, slots=True)
class OutputSchema:
    """Ask for a JSON object matching ``schema``, in the provider's native structured mode."""

    name: str
    schema: dict[str, Any]
    description: str = ""

    def parse(self, text: str | None, *, provider: str) -> dict[str, Any]:
        """Decode a structured answer, raising ``ModelOutputError`` when it is not an object."""
        try:
            # strict=False accepts raw control characters (a literal newline or tab) inside
            # strings, which small local models emit; the value is the same JSON otherwise.
            value = json.loads(text or "", strict=False)
        except json.JSONDecodeError as exc:
            raise ModelOutputError(
                f"structured output is not JSON: {exc}", provider=provider
            ) from exc
        if not isinstance(value, dict):
            raise ModelOutputError("structured output is not a JSON object", provider=provider)
        return value


@dataclass(frozen=True, slots=True)
class ModelRequest:
    """Everything one model call needs; providers translate it to their wire format."""

    messages: Sequence[Message]
    instructions: str | None = None
    tools: Sequence[ToolDefinition] = ()
    output_schema: OutputSchema | None = None


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens, self.output_tokens + other.output_tokens
        )


@dataclass(frozen=True, slots=True)
class ModelResponse:
    text: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    usage: Usage = field(default_factory=Usage)
    model_name: str = ""

    @property
    def message(self) -> AssistantMessage:
        return AssistantMessage(content=self.text, tool_calls=self.tool_calls)


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of answer text, as the provider streams it."""

    text: str


ModelStreamEvent: TypeAlias = TextDelta | ModelResponse
"""A stream yields ``TextDelta`` items and ends with exactly one complete ``ModelResponse``."""


class Model(ABC):
    """A chat model: one async request method, plus streaming.

    Providers that cannot stream natively inherit ``stream``, which yields the whole answer
    as one delta; it keeps the agent loop free of per-provider special cases.
    """

    #: Short provider name used in errors and metrics, e.g. ``"openai-responses"``.
    provider: str = "model"
    #: The model id sent to the provider.
    id: str = ""

    @abstractmethod
    async def request(self, request: ModelRequest) -> ModelResponse:
        """Send one request and return the complete response."""

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelStreamEvent]:
        response = await self.request(request)
        if response.text:
            yield TextDelta(response.text)
        yield response

    async def aclose(self) -> None:
        """Release connections the model opened (nothing by default)."""
        return

    @property
    def name(self) -> str:
        return f"{self.provider}:{self.id}"


def message_to_dict(message: Message) -> dict[str, Any]:
    """A JSON-safe form of a message, for storing run history."""
    if isinstance(message, UserMessage):
        return {"role": "user", "content": message.content}
    if isinstance(message, AssistantMessage):
        return {
            "role": "assistant",
            "content": message.content,
            "tool_calls": [
                {"id": c.id, "name": c.name, "arguments": c.arguments} for c in message.tool_calls
            ],
        }
    return {
        "role": "tool",
        "tool_call_id": message.tool_call_id,
        "name": message.name,
        "content": message.content,
        "is_error": message.is_error,
    }


def message_from_dict(data: dict[str, Any]) -> Message:
    """Inverse of ``message_to_dict``."""
    role = data["role"]
    if role == "user":
        return UserMessage(data["content"])
    if role == "assistant":
        calls = tuple(ToolCall(c["id"], c["name"], c["arguments"]) for c in data["tool_calls"])
        return AssistantMessage(data["content"], calls)
    if role == "tool":
        return ToolResultMessage(
            data["tool_call_id"], data["name"], data["content"], data.get("is_error", False)
        )
    raise ValueError(f"unknown message role {role!r}")
