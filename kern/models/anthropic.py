"""Anthropic's Messages API through the official ``anthropic`` SDK (extra ``anthropic``).

Mapping to the wire format:

- ``instructions`` go to ``system``; assistant tool calls become ``tool_use`` blocks; tool
  results become ``tool_result`` blocks in a *user* message, and consecutive same-role turns
  are merged into one message, as the API requires after a turn with parallel tool calls.
- Structured output is tool forcing: the schema is offered as a tool named after it and
  ``tool_choice`` forces that tool, so the tool's ``input`` *is* the answer; it is returned
  as the response text (JSON). With other tools present the model may call any tool instead
  (``tool_choice: any``), and the schema tool then marks the final answer.
- Retries are kern's (``kern.models._sdk.send_with_retries``: what can succeed, honouring
  ``Retry-After``), the SDK's are off; what remains is translated into kern errors, and a body
  the SDK cannot parse, or one of the wrong shape, becomes ``ModelError``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from kern._extras import require
from kern.errors import ConfigError, KernError, ModelError
from kern.models._sdk import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT,
    SdkClients,
    send_with_retries,
    translate_error,
)
from kern.models.base import (
    AssistantMessage,
    Message,
    Model,
    ModelRequest,
    ModelResponse,
    ModelStreamEvent,
    OutputSchema,
    TextDelta,
    ToolCall,
    ToolResultMessage,
    Usage,
    UserMessage,
)

__all__ = ["Anthropic"]

PROVIDER = "anthropic"
DEFAULT_MAX_TOKENS = 4096

_MISSING_KEY = (
    "no Anthropic API key: set the ANTHROPIC_API_KEY environment variable or pass "
    "Anthropic(..., api_key=...). To run without a provider, use "
    "kern.models.testing.TestModel."
)


class Anthropic(Model):
    """A Claude model over the Messages API; ``id`` is the model name, e.g. ``claude-sonnet-4-5``.

    Construction needs no key; the client is made on the first request, reading
    ``ANTHROPIC_API_KEY`` / ``ANTHROPIC_BASE_URL`` as the SDK does when the arguments are None.
    """

    provider = PROVIDER

    def __init__(
        self,
        id: str,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        max_retries: int = DEFAULT_MAX_RETRIES,
        timeout: float = DEFAULT_TIMEOUT,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        client: Any | None = None,
    ) -> None:
        self.id = id
        self.api_key = api_key
        self.base_url = base_url
        self.max_retries = max_retries
        self.timeout = timeout
        self.max_tokens = max_tokens
        # The SDK would retry every 5xx, deterministic ones too: kern retries instead.
        injected = client.with_options(max_retries=0) if client is not None else None
        self._clients: SdkClients[Any] = SdkClients(self._make_client, injected)

    def client(self) -> Any:
        """The ``AsyncAnthropic`` client of the running loop; ``ConfigError`` without a key."""
        return self._clients.get()

    def _make_client(self) -> Any:
        sdk = require("anthropic", "anthropic")
        try:
            client = sdk.AsyncAnthropic(
                api_key=self.api_key,
                base_url=self.base_url,
                max_retries=0,
                timeout=self.timeout,
            )
        except Exception as exc:  # e.g. a broken credentials profile named in the env
            raise ConfigError(f"cannot configure the Anthropic client: {exc}") from exc
        # The SDK also accepts a bearer token or (newer versions) profile credentials;
        # only when it resolved none of them is the key really missing.
        resolved = (client.api_key, getattr(client, "auth_token", None))
        if not any(resolved) and getattr(client, "credentials", None) is None:
            raise ConfigError(_MISSING_KEY)
        return client

    async def aclose(self) -> None:
        """Close the HTTP clients this model made (an injected client is the caller's)."""
        await self._clients.aclose()

    async def request(self, request: ModelRequest) -> ModelResponse:
        params = request_params(request, model=self.id, max_tokens=self.max_tokens)
        client = self.client()
        try:
            message = await send_with_retries(
                lambda: client.messages.create(**params),
                provider=PROVIDER,
                max_retries=self.max_retries,
            )
        except KernError:
            raise
        except Exception as exc:
            raise translate_error(exc, provider=PROVIDER) from exc
        return parse_message(message, request.output_schema)

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelStreamEvent]:
        params = request_params(request, model=self.id, max_tokens=self.max_tokens)
        client = self.client()
        assembly = StreamAssembly(request.output_schema)
        try:
            events = await send_with_retries(
                lambda: client.messages.create(**params, stream=True),
                provider=PROVIDER,
                max_retries=self.max_retries,
            )
            async with events:
                async for event in events:
                    delta = assembly.feed(event)
                    if delta:
                        yield TextDelta(delta)
        except KernError:
            raise
        except Exception as exc:
            raise translate_error(exc, provider=PROVIDER) from exc
        yield assembly.response()


# --- request: kern types → wire dicts (pure) -------------------------------------------------


def request_params(request: ModelRequest, *, model: str, max_tokens: int) -> dict[str, Any]:
    """The keyword arguments of ``messages.create`` for one kern request."""
    params: dict[str, Any] = {
        "model": model,
        "max_tokens": max_tokens,
        "messages": wire_messages(request.messages),
    }
    if request.instructions:
        params["system"] = request.instructions
    tools = [
        {"name": t.name, "description": t.description, "input_schema": t.parameters}
        for t in request.tools
    ]
    schema = request.output_schema
    if schema is not None:
        if any(t.name == schema.name for t in request.tools):
            raise ConfigError(
                f"output schema {schema.name!r} has the same name as a tool; rename one of them"
            )
        tools.append(
            {
                "name": schema.name,
                "description": schema.description or "Give the final answer with this tool.",
                "input_schema": schema.schema,
            }
        )
        if request.tools:
            params["tool_choice"] = {"type": "any"}
        else:
            params["tool_choice"] = {"type": "tool", "name": schema.name}
    if tools:
        params["tools"] = tools
    return params


def wire_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """Messages in the API's shape, consecutive same-role turns merged into one message."""
    wire: list[dict[str, Any]] = []
    for message in messages:
        role, blocks = _blocks(message)
        if not blocks:
            continue  # the API rejects empty turns; an empty assistant turn carries nothing
        if wire and wire[-1]["role"] == role:
            wire[-1]["content"].extend(blocks)
        else:
            wire.append({"role": role, "content": blocks})
    return wire


def _blocks(message: Message) -> tuple[str, list[dict[str, Any]]]:
    if isinstance(message, UserMessage):
        return "user", [{"type": "text", "text": message.content}]
    if isinstance(message, ToolResultMessage):
        block: dict[str, Any] = {
            "type": "tool_result",
            "tool_use_id": message.tool_call_id,
            "content": message.content,
        }
        if message.is_error:
            block["is_error"] = True
        return "user", [block]
    assert isinstance(message, AssistantMessage)
    blocks: list[dict[str, Any]] = []
    if message.content:
        blocks.append({"type": "text", "text": message.content})
    for call in message.tool_calls:
        blocks.append({"type": "tool_use", "id": call.id, "name": call.name, "input": _input(call)})
    return "assistant", blocks


def _input(call: ToolCall) -> dict[str, Any]:
    # The API needs an object; a call whose arguments were not valid JSON (a truncated stream)
    # is replayed with none, and its error result explains what went wrong.
    try:
        return call.parsed_arguments()
    except ValueError:
        return {}


# --- response: wire objects → kern types (pure) ----------------------------------------------


def _get(obj: Any, name: str) -> Any:
    """A field of an SDK model or of a plain dict (unknown block types may arrive as either)."""
    if isinstance(obj, dict):
        return obj.get(name)
    return getattr(obj, name, None)


def _int(value: Any) -> int:
    return value if isinstance(value, int) else 0


def _usage(usage: Any) -> Usage:
    # ``input_tokens`` excludes prompt-cache reads and writes; all three are input.
    inputs = sum(
        _int(_get(usage, name))
        for name in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    )
    return Usage(input_tokens=inputs, output_tokens=_int(_get(usage, "output_tokens")))


def _malformed(what: str) -> ModelError:
    return ModelError(f"malformed response: {what}", provider=PROVIDER)


def parse_message(message: Any, schema: OutputSchema | None) -> ModelResponse:
    """A ``ModelResponse`` from a complete ``Message``; ``ModelError`` if it is not one."""
    content = _get(message, "content")
    if not isinstance(content, list):
        raise _malformed("no content list")
    texts: list[str] = []
    calls: list[ToolCall] = []
    answer: str | None = None
    for block in content:
        kind = _get(block, "type")
        if kind == "text":
            text = _get(block, "text")
            if not isinstance(text, str):
                raise _malformed("text block without text")
            texts.append(text)
        elif kind == "tool_use":
            call_id, name, args = _get(block, "id"), _get(block, "name"), _get(block, "input")
            if not isinstance(call_id, str) or not isinstance(name, str):
                raise _malformed("tool_use block without id or name")
            arguments = json.dumps(args if args is not None else {})
            if schema is not None and name == schema.name:
                answer = arguments
            else:
                calls.append(ToolCall(call_id, name, arguments))
        # other blocks (thinking, server tools) carry nothing kern uses
    text = answer if answer is not None else ("".join(texts) if texts else None)
    model = _get(message, "model")
    return ModelResponse(
        text=text,
        tool_calls=tuple(calls),
        usage=_usage(_get(message, "usage")),
        model_name=model if isinstance(model, str) else "",
    )


@dataclass
class _Block:
    kind: str
    id: str = ""
    name: str = ""
    parts: list[str] = field(default_factory=list)
    start_input: Any = None


class StreamAssembly:
    """Folds raw stream events into one ``ModelResponse``; I/O-free, fed one event at a time.

    ``feed`` returns answer text to stream: ``text_delta`` text, or with structured output the
    schema tool's ``input_json_delta`` pieces, so the deltas always add up to ``text``.
    """

    def __init__(self, schema: OutputSchema | None) -> None:
        self.schema = schema
        self.blocks: dict[int, _Block] = {}
        self.model = ""
        self.input_tokens = 0
        self.output_tokens = 0
        self.stopped = False

    def feed(self, event: Any) -> str:
        kind = _get(event, "type")
        if kind == "message_start":
            message = _get(event, "message")
            model = _get(message, "model")
            self.model = model if isinstance(model, str) else ""
            usage = _usage(_get(message, "usage"))
            self.input_tokens, self.output_tokens = usage.input_tokens, usage.output_tokens
        elif kind == "content_block_start":
            return self._start(_get(event, "index"), _get(event, "content_block"))
        elif kind == "content_block_delta":
            return self._delta(_get(event, "index"), _get(event, "delta"))
        elif kind == "message_delta":
            # Counts in ``message_delta`` are cumulative; absent ones keep the earlier value.
            usage = _get(event, "usage")
            if _get(usage, "output_tokens") is not None:
                self.output_tokens = _int(_get(usage, "output_tokens"))
            if _get(usage, "input_tokens") is not None:
                self.input_tokens = _usage(usage).input_tokens
        elif kind == "message_stop":
            self.stopped = True
        return ""

    def _start(self, index: Any, block: Any) -> str:
        if not isinstance(index, int):
            raise _malformed("content_block_start without index")
        kind = _get(block, "type")
        if kind == "text":
            text = _get(block, "text") or ""
            self.blocks[index] = _Block("text", parts=[text])
            return str(text)
        if kind == "tool_use":
            self.blocks[index] = _Block(
                "tool_use",
                id=str(_get(block, "id") or ""),
                name=str(_get(block, "name") or ""),
                start_input=_get(block, "input"),
            )
        return ""

    def _delta(self, index: Any, delta: Any) -> str:
        block = self.blocks.get(index) if isinstance(index, int) else None
        if block is None:
            raise _malformed("content_block_delta for a block that never started")
        kind = _get(delta, "type")
        if kind == "text_delta" and block.kind == "text":
            piece = _get(delta, "text")
        elif kind == "input_json_delta" and block.kind == "tool_use":
            piece = _get(delta, "partial_json")
        else:
            return ""  # thinking, signatures, citations: not part of the answer
        if not isinstance(piece, str):
            raise _malformed(f"{kind} without its text")
        block.parts.append(piece)
        return piece if block.kind == "text" or self._is_answer(block) else ""

    def _is_answer(self, block: _Block) -> bool:
        return self.schema is not None and block.name == self.schema.name

    def response(self) -> ModelResponse:
        if not self.stopped:
            raise _malformed("the stream ended before message_stop")
        texts: list[str] = []
        calls: list[ToolCall] = []
        answer: str | None = None
        for _, block in sorted(self.blocks.items()):
            if block.kind == "text":
                texts.append("".join(block.parts))
                continue
            arguments = "".join(block.parts)
            if not arguments and block.start_input:
                arguments = json.dumps(block.start_input)
            if self._is_answer(block):
                answer = arguments
            else:
                calls.append(ToolCall(block.id, block.name, arguments))
        text = answer if answer is not None else ("".join(texts) if texts else None)
        return ModelResponse(
            text=text,
            tool_calls=tuple(calls),
            usage=Usage(self.input_tokens, self.output_tokens),
            model_name=self.model,
        )
