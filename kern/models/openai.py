"""OpenAI providers on the official ``openai`` SDK: the Responses API and Chat Completions.

``OpenAIResponses`` speaks ``POST /responses``; ``OpenAIChat`` speaks ``POST /chat/completions``,
which every OpenAI-compatible server (Ollama, vLLM, llama.cpp server) also serves. Both share
one driver (``_OpenAIModel``): lazy client, retries (``kern.models._sdk``), error boundary, and
the streaming loop. Each class only maps kern's request to its wire format and its wire events
into an ``_Assembly``, the one place a ``ModelResponse`` is built. ``OpenAIChat`` also asks for
structured output in whatever way the endpoint supports (``kern.models.structured``).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Generic, Literal, TypeAlias, TypedDict, TypeVar
from urllib.parse import urlsplit

import openai
from openai import AsyncOpenAI, AsyncStream
from openai.types.chat import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionFunctionToolParam,
    ChatCompletionMessageFunctionToolCallParam,
    ChatCompletionMessageParam,
    ChatCompletionStreamOptionsParam,
    ChatCompletionToolChoiceOptionParam,
)
from openai.types.responses import (
    FunctionToolParam,
    Response,
    ResponseFormatTextJSONSchemaConfigParam,
    ResponseInputItemParam,
    ResponseStreamEvent,
    ResponseTextConfigParam,
)
from openai.types.shared_params import (
    ResponseFormatJSONObject,
    ResponseFormatJSONSchema,
    ResponseFormatText,
)

from kern.errors import ConfigError, ModelError
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
    ToolDefinition,
    Usage,
    UserMessage,
)
from kern.models.structured import (
    StructuredMode,
    check_mode,
    is_capability_error,
    json_text,
    modes_to_try,
    remember_mode,
    schema_instructions,
)

__all__ = ["OpenAIChat", "OpenAIResponses", "TokenLimitParam"]

TokenLimitParam: TypeAlias = Literal["max_tokens", "max_completion_tokens"]

_T = TypeVar("_T")
_Raw = TypeVar("_Raw")
_Event = TypeVar("_Event")


def _strict_compatible(schema: Any) -> bool:
    """Whether OpenAI's strict mode accepts ``schema`` unchanged.

    Strict mode requires every object to forbid extra keys and to require all its properties;
    sending ``strict: true`` with any other schema makes the API reject the request, so such
    schemas go out with ``strict: false`` (best effort) rather than being rewritten.
    """
    if not isinstance(schema, dict):
        return True
    if schema.get("type") == "object" or "properties" in schema:
        properties = schema.get("properties") or {}
        if schema.get("additionalProperties") is not False:
            return False
        if set(schema.get("required") or ()) != set(properties):
            return False
    return all(_strict_compatible(sub) for sub in _subschemas(schema))


def _subschemas(schema: dict[str, Any]) -> Iterator[Any]:
    for key in ("properties", "$defs", "definitions"):
        yield from (schema.get(key) or {}).values()
    for key in ("anyOf", "allOf", "oneOf", "prefixItems"):
        yield from schema.get(key) or ()
    for key in ("items", "not", "additionalProperties"):
        if key in schema:
            yield schema[key]


@dataclass
class _PartialCall:
    id: str
    name: str
    arguments: list[str] = field(default_factory=list)


@dataclass
class _Assembly:
    """The answer so far, filled from a whole response or from stream events, in wire order."""

    model_name: str
    text: list[str] = field(default_factory=list)
    calls: dict[int, _PartialCall] = field(default_factory=dict)
    usage: Usage = field(default_factory=Usage)
    #: Set when the stream signalled its end; a stream cut off before that is an error.
    done: bool = False

    def call(self, key: int, id: str | None = None, name: str | None = None) -> _PartialCall:
        partial = self.calls.setdefault(key, _PartialCall("", ""))
        partial.id = partial.id or id or ""
        partial.name = partial.name or name or ""
        return partial

    def response(self) -> ModelResponse:
        calls = tuple(
            # Some compatible servers omit call ids; the tool result must still refer to one.
            ToolCall(c.id or f"call_{i}", c.name, "".join(c.arguments))
            for i, c in enumerate(self.calls.values())
        )
        text = "".join(self.text) if self.text else None
        return ModelResponse(text, calls, self.usage, self.model_name)


class _OpenAIModel(Model, Generic[_Raw, _Event]):
    """What both OpenAI APIs share: settings, the lazy SDK client, errors and streaming."""

    def __init__(
        self,
        id: str,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        max_retries: int = DEFAULT_MAX_RETRIES,
        timeout: float = DEFAULT_TIMEOUT,
        temperature: float | None = None,
        max_output_tokens: int | None = None,
        client: AsyncOpenAI | None = None,
    ) -> None:
        """``id`` is the model name (``"gpt-5.2"``). ``api_key`` / ``base_url`` default to
        ``OPENAI_API_KEY`` / ``OPENAI_BASE_URL``, read when the first request makes the client;
        ``client`` replaces that client (its own settings then apply, except retries, which
        are kern's; it is not closed by ``aclose``). ``max_retries`` counts kern's retries of
        what can succeed (429, 408, 502-504, timeouts, connection errors, a 500 that does not
        say the request is unsupported); ``timeout`` is per request, in seconds.
        """
        self.id = id
        self.temperature = temperature
        self.max_output_tokens = max_output_tokens
        # None lets the SDK read OPENAI_API_KEY / OPENAI_BASE_URL when the client is made.
        self._api_key = api_key
        self._base_url = base_url
        self._max_retries = max_retries
        self._timeout = timeout
        # The SDK would retry every 5xx, deterministic ones too: kern retries instead.
        injected = client.with_options(max_retries=0) if client is not None else None
        self._clients: SdkClients[AsyncOpenAI] = SdkClients(self._make_client, injected)

    def _make_client(self) -> AsyncOpenAI:
        try:
            return AsyncOpenAI(
                api_key=self._api_key,
                base_url=self._base_url,
                max_retries=0,
                timeout=self._timeout,
            )
        except openai.OpenAIError as exc:
            raise ConfigError(
                f"{self.provider}: no OpenAI API key. Set the OPENAI_API_KEY environment "
                "variable or pass api_key=... (any non-empty value for a local "
                "OpenAI-compatible server); for tests without a key use "
                "kern.models.testing.TestModel."
            ) from exc

    def _sdk(self) -> AsyncOpenAI:
        return self._clients.get()

    async def aclose(self) -> None:
        """Close the HTTP clients this model made; an injected client is the caller's."""
        await self._clients.aclose()

    #: Advice added to an HTTP error of this API, per status.
    _hints: ClassVar[Mapping[int, str]] = {}

    @contextmanager
    def _boundary(self) -> Iterator[None]:
        """Translate SDK errors and malformed bodies into kern's ``ModelError`` tree."""
        try:
            yield
        # A body that is not JSON (json.JSONDecodeError), fails validation (the SDK's
        # APIResponseValidationError, which carries the 200 status of a *successful* HTTP
        # exchange, or pydantic's ValidationError) or lacks fields the SDK left unset.
        except (
            openai.APIResponseValidationError,
            ValueError,
            LookupError,
            TypeError,
            AttributeError,
        ) as exc:
            message = f"unexpected response body: {type(exc).__name__}: {exc}"
            raise ModelError(message, provider=self.provider) from exc
        except openai.OpenAIError as exc:
            raise translate_error(exc, provider=self.provider, hints=self._hints) from exc

    async def _send(self, create: Callable[[], Awaitable[_T]]) -> _T:
        return await send_with_retries(
            create, provider=self.provider, max_retries=self._max_retries
        )

    async def request(self, request: ModelRequest) -> ModelResponse:
        client = self._sdk()
        with self._boundary():
            raw = await self._send(lambda: self._create(client, request))
            assembly = _Assembly(self.id)
            self._read(assembly, raw)
            return assembly.response()

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelStreamEvent]:
        client = self._sdk()
        assembly = _Assembly(self.id)
        with self._boundary():
            # Only opening the stream is retried: after the first event, text has been shown.
            events = await self._send(lambda: self._create_stream(client, request))
        async with events:  # closes the HTTP response if the consumer stops early
            while True:
                # Only SDK/parsing work sits inside the boundary, never the ``yield``: an
                # exception thrown into this generator by its consumer must pass unchanged.
                with self._boundary():
                    try:
                        event = await anext(events)
                    except StopAsyncIteration:
                        break
                    delta = self._feed(assembly, event)
                if delta:
                    yield TextDelta(delta)
        if not assembly.done:
            raise ModelError(
                "stream ended before the response was complete", provider=self.provider
            )
        yield assembly.response()

    @abstractmethod
    async def _create(self, client: AsyncOpenAI, request: ModelRequest) -> _Raw:
        """Send the request without streaming."""

    @abstractmethod
    async def _create_stream(
        self, client: AsyncOpenAI, request: ModelRequest
    ) -> AsyncStream[_Event]:
        """Send the request with ``stream=True``."""

    @abstractmethod
    def _read(self, assembly: _Assembly, raw: _Raw) -> None:
        """Copy a complete response into ``assembly``."""

    @abstractmethod
    def _feed(self, assembly: _Assembly, event: _Event) -> str | None:
        """Apply one stream event to ``assembly``; return the text it adds, if any."""


# --- Responses API ------------------------------------------------------------------------


class _ResponsesArgs(TypedDict, total=False):
    model: str
    input: list[ResponseInputItemParam]
    instructions: str
    tools: list[FunctionToolParam]
    parallel_tool_calls: bool
    text: ResponseTextConfigParam
    temperature: float
    max_output_tokens: int


def _responses_input(messages: Sequence[Message]) -> list[ResponseInputItemParam]:
    items: list[ResponseInputItemParam] = []
    for message in messages:
        if isinstance(message, UserMessage):
            items.append({"role": "user", "content": message.content})
        elif isinstance(message, AssistantMessage):
            if message.content:
                items.append({"role": "assistant", "content": message.content})
            items.extend(
                {"type": "function_call", "call_id": c.id, "name": c.name, "arguments": c.arguments}
                for c in message.tool_calls
            )
        else:
            # The wire has no error flag for tool output; the tool layer's text says so.
            items.append(
                {
                    "type": "function_call_output",
                    "call_id": message.tool_call_id,
                    "output": message.content,
                }
            )
    return items


def _responses_tool(tool: ToolDefinition) -> FunctionToolParam:
    return {
        "type": "function",
        "name": tool.name,
        "description": tool.description,
        "parameters": tool.parameters,
        "strict": _strict_compatible(tool.parameters),
    }


def _responses_format(schema: OutputSchema) -> ResponseTextConfigParam:
    fmt: ResponseFormatTextJSONSchemaConfigParam = {
        "type": "json_schema",
        "name": schema.name,
        "schema": schema.schema,
        "strict": _strict_compatible(schema.schema),
    }
    if schema.description:
        fmt["description"] = schema.description
    return {"format": fmt}


class OpenAIResponses(_OpenAIModel[Response, ResponseStreamEvent]):
    """An OpenAI model through the Responses API (``client.responses.create``)."""

    provider = "openai-responses"
    _hints: ClassVar[Mapping[int, str]] = {
        404: "no such model, or no /responses endpoint here; for a server without "
        "/v1/responses use OpenAIChat (`openai-chat:ID` on the command line)",
    }

    def _args(self, request: ModelRequest) -> _ResponsesArgs:
        args: _ResponsesArgs = {"model": self.id, "input": _responses_input(request.messages)}
        if request.instructions:
            args["instructions"] = request.instructions
        if request.tools:
            args["tools"] = [_responses_tool(t) for t in request.tools]
            args["parallel_tool_calls"] = True
        if request.output_schema is not None:
            args["text"] = _responses_format(request.output_schema)
        if self.temperature is not None:
            args["temperature"] = self.temperature
        if self.max_output_tokens is not None:
            args["max_output_tokens"] = self.max_output_tokens
        return args

    async def _create(self, client: AsyncOpenAI, request: ModelRequest) -> Response:
        return await client.responses.create(**self._args(request), stream=False)

    async def _create_stream(
        self, client: AsyncOpenAI, request: ModelRequest
    ) -> AsyncStream[ResponseStreamEvent]:
        return await client.responses.create(**self._args(request), stream=True)

    def _read(self, assembly: _Assembly, raw: Response) -> None:
        if raw.error is not None:
            raise ModelError(f"response failed: {raw.error.message}", provider=self.provider)
        for index, item in enumerate(raw.output):
            if item.type == "message":
                for part in item.content:
                    assembly.text.append(part.text if part.type == "output_text" else part.refusal)
            elif item.type == "function_call":
                assembly.call(index, item.call_id, item.name).arguments[:] = [item.arguments]
        self._finish(assembly, raw)

    def _finish(self, assembly: _Assembly, raw: Response) -> None:
        if raw.usage is not None:
            assembly.usage = Usage(raw.usage.input_tokens, raw.usage.output_tokens)
        assembly.model_name = raw.model or assembly.model_name
        assembly.done = True

    def _feed(self, assembly: _Assembly, event: ResponseStreamEvent) -> str | None:
        # A refusal is the answer the model gave, so it reaches the caller as text.
        if event.type in ("response.output_text.delta", "response.refusal.delta"):
            assembly.text.append(event.delta)
            return event.delta
        if event.type in ("response.output_item.added", "response.output_item.done"):
            item = event.item
            if item.type == "function_call":
                call = assembly.call(event.output_index, item.call_id, item.name)
                if event.type == "response.output_item.done":
                    call.arguments[:] = [item.arguments]  # the complete text wins over deltas
        elif event.type == "response.function_call_arguments.delta":
            assembly.call(event.output_index).arguments.append(event.delta)
        elif event.type in ("response.completed", "response.incomplete"):
            self._finish(assembly, event.response)
        elif event.type == "response.failed":
            error = event.response.error
            detail = error.message if error is not None else "no reason given"
            raise ModelError(f"response failed: {detail}", provider=self.provider)
        elif event.type == "error":
            raise ModelError(f"stream error: {event.message}", provider=self.provider)
        return None


# --- Chat Completions ---------------------------------------------------------------------


class _ChatArgs(TypedDict, total=False):
    model: str
    messages: list[ChatCompletionMessageParam]
    tools: list[ChatCompletionFunctionToolParam]
    tool_choice: ChatCompletionToolChoiceOptionParam
    parallel_tool_calls: bool
    response_format: ResponseFormatJSONSchema | ResponseFormatJSONObject | ResponseFormatText
    temperature: float
    max_tokens: int
    max_completion_tokens: int


def _chat_messages(
    instructions: str | None, messages: Sequence[Message]
) -> list[ChatCompletionMessageParam]:
    out: list[ChatCompletionMessageParam] = []
    if instructions:
        out.append({"role": "system", "content": instructions})
    for message in messages:
        if isinstance(message, UserMessage):
            out.append({"role": "user", "content": message.content})
        elif isinstance(message, AssistantMessage):
            calls: list[ChatCompletionMessageFunctionToolCallParam] = [
                {
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments},
                }
                for c in message.tool_calls
            ]
            if calls:
                out.append({"role": "assistant", "content": message.content, "tool_calls": calls})
            else:
                out.append({"role": "assistant", "content": message.content})
        else:
            # The wire has no error flag for tool output; the tool layer's text says so.
            out.append(
                {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content}
            )
    return out


def _chat_tool(tool: ToolDefinition) -> ChatCompletionFunctionToolParam:
    return {
        "type": "function",
        "function": {
            "name": tool.name,
            "description": tool.description,
            "parameters": tool.parameters,
            "strict": _strict_compatible(tool.parameters),
        },
    }


def _chat_format(schema: OutputSchema) -> ResponseFormatJSONSchema:
    fmt: ResponseFormatJSONSchema = {
        "type": "json_schema",
        "json_schema": {
            "name": schema.name,
            "schema": schema.schema,
            "strict": _strict_compatible(schema.schema),
        },
    }
    if schema.description:
        fmt["json_schema"]["description"] = schema.description
    return fmt


def _schema_tool(schema: OutputSchema) -> ToolDefinition:
    """The output schema as a tool: its arguments are the answer (``tool`` mode)."""
    description = schema.description or "Give your answer by calling this function."
    return ToolDefinition(schema.name, description, schema.schema)


#: Hosts that take ``max_completion_tokens`` (OpenAI's reasoning models refuse ``max_tokens``);
#: compatible servers take ``max_tokens`` and some silently ignore the newer name.
_COMPLETION_TOKEN_HOSTS = ("api.openai.com", ".openai.azure.com")


def token_limit_param(base_url: str) -> TokenLimitParam:
    """The token-limit parameter an endpoint understands, judged by its host."""
    host = urlsplit(base_url).hostname or ""
    if any(host == h or (h.startswith(".") and host.endswith(h)) for h in _COMPLETION_TOKEN_HOSTS):
        return "max_completion_tokens"
    return "max_tokens"


class OpenAIChat(_OpenAIModel[ChatCompletion, ChatCompletionChunk]):
    """A model behind Chat Completions (``client.chat.completions.create``): OpenAI itself or
    any compatible server, given ``base_url`` (and any non-empty ``api_key``).

    Structured output goes by capability (``structured_output``, see
    ``kern.models.structured``): ``"auto"`` tries ``json_schema``, then one forced tool, then
    ``json_object``, then plain text, and remembers per endpoint what worked. The token limit
    ``max_output_tokens`` is sent as ``max_completion_tokens`` to OpenAI and Azure OpenAI and as
    ``max_tokens`` to every other server, unless ``token_limit_param`` names one.
    """

    provider = "openai-chat"

    def __init__(
        self,
        id: str,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        max_retries: int = DEFAULT_MAX_RETRIES,
        timeout: float = DEFAULT_TIMEOUT,
        temperature: float | None = None,
        max_output_tokens: int | None = None,
        client: AsyncOpenAI | None = None,
        structured_output: StructuredMode = "auto",
        token_limit_param: TokenLimitParam | None = None,
    ) -> None:
        """Arguments as ``OpenAIResponses``, plus ``structured_output`` (``"auto"``,
        ``"json_schema"``, ``"tool"``, ``"json_object"`` or ``"text"``) and
        ``token_limit_param`` (``"max_tokens"`` or ``"max_completion_tokens"``; by default
        chosen from the endpoint's host)."""
        super().__init__(
            id,
            api_key=api_key,
            base_url=base_url,
            max_retries=max_retries,
            timeout=timeout,
            temperature=temperature,
            max_output_tokens=max_output_tokens,
            client=client,
        )
        self.structured_output = check_mode(structured_output)
        if token_limit_param not in (None, "max_tokens", "max_completion_tokens"):
            raise ConfigError(
                f"token_limit_param must be 'max_tokens' or 'max_completion_tokens', "
                f"not {token_limit_param!r}"
            )
        self.token_limit_param = token_limit_param

    async def request(self, request: ModelRequest) -> ModelResponse:
        schema = request.output_schema
        if schema is None:
            return await super().request(request)
        if any(t.name == schema.name for t in request.tools):
            raise ConfigError(
                f"output schema {schema.name!r} has the same name as a tool; rename one of them"
            )
        endpoint = (str(self._sdk().base_url), self.id)
        modes = modes_to_try(self.structured_output, endpoint)
        for mode in modes:
            try:
                response = await super().request(_StructuredRequest.wrap(request, mode))
            except ModelError as exc:
                if mode == modes[-1] or not is_capability_error(exc):
                    raise
                continue
            if self.structured_output == "auto":
                remember_mode(endpoint, mode, provider=self.provider)
            return self._answer(response, schema, mode)
        raise AssertionError("unreachable: the last mode returns or raises")

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelStreamEvent]:
        if request.output_schema is not None:
            # A structured answer is only useful whole; the fallback ladder needs whole calls.
            async for event in Model.stream(self, request):
                yield event
            return
        async for event in super().stream(request):
            yield event

    def _answer(self, response: ModelResponse, schema: OutputSchema, mode: str) -> ModelResponse:
        """The response with the structured answer as its text, however it arrived."""
        if mode == "tool":
            answers = [c for c in response.tool_calls if c.name == schema.name]
            if answers:
                others = tuple(c for c in response.tool_calls if c.name != schema.name)
                return replace(response, text=answers[0].arguments, tool_calls=others)
        if mode in ("json_object", "text", "tool"):
            return replace(response, text=json_text(response.text))
        return response

    def _args(self, request: ModelRequest) -> _ChatArgs:
        mode = request.mode if isinstance(request, _StructuredRequest) else None
        schema = request.output_schema
        instructions = request.instructions
        tools = list(request.tools)
        if schema is not None and mode in ("json_object", "text"):
            instructions = schema_instructions(instructions, schema)
        if schema is not None and mode == "tool":
            tools.append(_schema_tool(schema))
        args: _ChatArgs = {
            "model": self.id,
            "messages": _chat_messages(instructions, request.messages),
        }
        if tools:
            args["tools"] = [_chat_tool(t) for t in tools]
            args["parallel_tool_calls"] = True
        if schema is not None and mode == "tool":
            # Alone, the schema tool is forced by name; with other tools, some call is.
            args["tool_choice"] = (
                {"type": "function", "function": {"name": schema.name}}
                if not request.tools
                else "required"
            )
        if schema is not None and mode == "json_schema":
            args["response_format"] = _chat_format(schema)
        elif schema is not None and mode == "json_object":
            args["response_format"] = {"type": "json_object"}
        if self.temperature is not None:
            args["temperature"] = self.temperature
        if self.max_output_tokens is not None:
            param = self.token_limit_param or token_limit_param(str(self._sdk().base_url))
            args[param] = self.max_output_tokens
        return args

    async def _create(self, client: AsyncOpenAI, request: ModelRequest) -> ChatCompletion:
        return await client.chat.completions.create(**self._args(request), stream=False)

    async def _create_stream(
        self, client: AsyncOpenAI, request: ModelRequest
    ) -> AsyncStream[ChatCompletionChunk]:
        usage: ChatCompletionStreamOptionsParam = {"include_usage": True}
        return await client.chat.completions.create(
            **self._args(request), stream=True, stream_options=usage
        )

    def _read(self, assembly: _Assembly, raw: ChatCompletion) -> None:
        if not raw.choices:
            raise ModelError("response has no choices", provider=self.provider)
        message = raw.choices[0].message
        text = message.content if message.content is not None else message.refusal
        if text is not None:
            assembly.text.append(text)
        for index, call in enumerate(message.tool_calls or ()):
            if call.type == "function":
                assembly.call(index, call.id, call.function.name).arguments.append(
                    call.function.arguments
                )
        self._finish(assembly, raw)

    def _finish(self, assembly: _Assembly, raw: ChatCompletion | ChatCompletionChunk) -> None:
        if raw.usage is not None:
            assembly.usage = Usage(raw.usage.prompt_tokens, raw.usage.completion_tokens)
        assembly.model_name = raw.model or assembly.model_name

    def _feed(self, assembly: _Assembly, event: ChatCompletionChunk) -> str | None:
        self._finish(assembly, event)  # usage arrives in its own last chunk, without choices
        text = None
        for choice in event.choices[:1]:
            delta = choice.delta
            text = delta.content or delta.refusal  # a refusal is the answer, as text
            if text:
                assembly.text.append(text)
            for call in delta.tool_calls or ():
                function = call.function
                partial = assembly.call(call.index, call.id, function.name if function else None)
                if function is not None and function.arguments:
                    partial.arguments.append(function.arguments)
            if choice.finish_reason is not None:
                assembly.done = True
        return text


@dataclass(frozen=True, slots=True)
class _StructuredRequest(ModelRequest):
    """A request with the structured-output mode chosen for this attempt."""

    mode: str = "json_schema"

    @classmethod
    def wrap(cls, request: ModelRequest, mode: str) -> _StructuredRequest:
        return cls(
            messages=request.messages,
            instructions=request.instructions,
            tools=request.tools,
            output_schema=request.output_schema,
            mode=mode,
        )
