"""Models for tests: no network, no keys, the real agent loop.

``TestModel`` plays a generic, predictable model: it calls the tools it is told to call with
arguments generated from their schemas, then answers with fixed text (or a JSON object that
matches the requested output schema). ``FunctionModel`` hands every request to your function,
so a test decides exactly what the model says. Both record the requests they receive.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeAlias

from kern._sync import call_any
from kern.models.base import (
    Model,
    ModelRequest,
    ModelResponse,
    ModelStreamEvent,
    TextDelta,
    ToolCall,
    ToolResultMessage,
    Usage,
)

__all__ = ["FunctionModel", "TestModel", "sample_from_schema"]

FunctionResult: TypeAlias = ModelResponse | str | dict[str, Any]
ModelFunction: TypeAlias = Callable[[ModelRequest], FunctionResult | Awaitable[FunctionResult]]


class _RecordingModel(Model):
    def __init__(self) -> None:
        self.requests: list[ModelRequest] = []
        self._ids = itertools.count(1)

    def _call_id(self) -> str:
        return f"call_{next(self._ids)}"

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelStreamEvent]:
        # Word-sized deltas, so streaming consumers see more than one chunk.
        response = await self.request(request)
        for piece in _split_words(response.text or ""):
            yield TextDelta(piece)
        yield response


class TestModel(_RecordingModel):
    """A deterministic stand-in model.

    Args:
        text: The final answer (default: a summary of the tool results, or "ok").
        call_tools: ``"all"`` to call every offered tool once, or a list of tool names.
        output: The object to return when an output schema is requested (default: a minimal
            object generated from the schema).
    """

    __test__ = False  # not a pytest test class
    provider = "test"

    def __init__(
        self,
        text: str | None = None,
        *,
        call_tools: Sequence[str] | str = (),
        output: dict[str, Any] | None = None,
        id: str = "test-model",
    ) -> None:
        super().__init__()
        self.id = id
        self.text = text
        self.call_tools = call_tools
        self.output = output

    async def request(self, request: ModelRequest) -> ModelResponse:
        self.requests.append(request)
        usage = Usage(_rough_tokens(request), 5)
        if request.output_schema is not None:
            value = (
                self.output
                if self.output is not None
                else sample_from_schema(request.output_schema.schema)
            )
            return ModelResponse(json.dumps(value), usage=usage, model_name=self.id)
        results = [m for m in request.messages if isinstance(m, ToolResultMessage)]
        wanted = [t for t in request.tools if self.call_tools == "all" or t.name in self.call_tools]
        if wanted and not _answered_since_last_user(request):
            calls = tuple(
                ToolCall(self._call_id(), t.name, json.dumps(sample_from_schema(t.parameters)))
                for t in wanted
            )
            return ModelResponse(tool_calls=calls, usage=usage, model_name=self.id)
        text = self.text
        if text is None:
            text = json.dumps({r.name: r.content for r in results}) if results else "ok"
        return ModelResponse(text, usage=usage, model_name=self.id)


class FunctionModel(_RecordingModel):
    """A model whose every answer comes from ``function(request)``.

    The function may be sync or async and return a ``ModelResponse``, a string (the answer
    text) or a dict (a structured answer, sent as JSON).
    """

    provider = "function"

    def __init__(self, function: ModelFunction, *, id: str | None = None) -> None:
        super().__init__()
        self.function = function
        self.id = id or str(getattr(function, "__name__", "function"))

    async def request(self, request: ModelRequest) -> ModelResponse:
        self.requests.append(request)
        # Sync functions run in a worker thread, so one that blocks (a test holding an
        # extraction back) never stalls the event loop.
        result = await call_any(self.function, request)
        if isinstance(result, ModelResponse):
            return result
        text = result if isinstance(result, str) else json.dumps(result)
        return ModelResponse(text, usage=Usage(_rough_tokens(request), 5), model_name=self.id)


def _answered_since_last_user(request: ModelRequest) -> bool:
    """True when tool results already follow the latest user message (calls were made)."""
    for message in reversed(request.messages):
        if isinstance(message, ToolResultMessage):
            return True
        if type(message).__name__ == "UserMessage":
            return False
    return False


def _rough_tokens(request: ModelRequest) -> int:
    text = (request.instructions or "") + "".join(
        str(getattr(m, "content", "") or "") for m in request.messages
    )
    return max(1, len(text) // 4)


def _split_words(text: str) -> list[str]:
    pieces: list[str] = []
    for word in text.split(" "):
        pieces.append(word if not pieces else " " + word)
    return [p for p in pieces if p]


def sample_from_schema(schema: dict[str, Any], root: dict[str, Any] | None = None) -> Any:
    """A minimal value that validates against a JSON schema (as pydantic emits them)."""
    root = root or schema
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return sample_from_schema(root.get("$defs", {})[name], root)
    if "default" in schema:
        return schema["default"]
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            options = [o for o in schema[key] if o.get("type") != "null"] or schema[key]
            return sample_from_schema(options[0], root)
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        props = schema.get("properties", {})
        required = schema.get("required", list(props))
        return {k: sample_from_schema(v, root) for k, v in props.items() if k in required}
    if kind == "array":
        return []
    return {"string": "a", "integer": 0, "number": 0.0, "boolean": False, "null": None}[kind]
