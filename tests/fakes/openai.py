"""OpenAI's Responses API and Chat Completions as ``WireProtocol``s for ``FakeServer``.

Bodies follow the documented wire formats closely enough for the official ``openai`` SDK to
parse them:

- ``ResponsesProtocol`` (``POST /responses``): a ``response`` object whose ``output`` holds a
  ``message`` item (``output_text`` part) and ``function_call`` items; for ``stream: true`` the
  named events ``response.created``, ``response.in_progress``, ``response.output_item.added``,
  ``response.content_part.added``, ``response.output_text.delta`` / ``.done``,
  ``response.content_part.done``, ``response.function_call_arguments.delta`` / ``.done``,
  ``response.output_item.done`` and ``response.completed``, each with a ``sequence_number``.
- ``ChatProtocol`` (``POST /chat/completions``): a ``chat.completion`` object; for
  ``stream: true`` unnamed ``chat.completion.chunk`` events (role, content pieces, tool-call
  pieces keyed by ``index``, a ``finish_reason`` chunk, a usage chunk with empty ``choices``
  when ``stream_options.include_usage`` is set) ending with ``data: [DONE]``.

Errors use OpenAI's ``{"error": {"message", "type", "param", "code"}}`` body. A reply's
``text`` is sent as is, also when the request asked for structured output.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from typing import Any

from tests.fakes.server import Recorded, Reply, sse

__all__ = ["ERRORS", "ChatProtocol", "ResponsesProtocol", "openai_error"]

#: HTTP status → OpenAI error ``(type, code)``.
ERRORS: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
    503: ("server_error", None),
}


def openai_error(reply: Reply) -> dict[str, Any]:
    """The error body both OpenAI APIs send."""
    kind, code = ERRORS.get(reply.status, ("server_error", None))
    return {
        "error": {
            "message": reply.text or f"scripted {kind} ({reply.status})",
            "type": kind,
            "param": None,
            "code": code,
        }
    }


def _chunks(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


class _OpenAIProtocol:
    def __init__(self, chunk_size: int = 4) -> None:
        #: Characters per streamed text or argument delta.
        self.chunk_size = chunk_size
        self._ids = itertools.count(1)

    def _next_id(self, prefix: str) -> str:
        return f"{prefix}_{next(self._ids):04d}"

    def render_error(self, reply: Reply) -> dict[str, Any]:
        return openai_error(reply)


class ResponsesProtocol(_OpenAIProtocol):
    """Render ``Reply`` objects as Responses API answers."""

    paths: tuple[str, ...] = ("/responses",)

    def _output(self, reply: Reply) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        if reply.text is not None:
            part = {"type": "output_text", "text": reply.text, "annotations": [], "logprobs": []}
            items.append(self._message(completed=True, content=[part]))
        items.extend(
            {
                "id": self._next_id("fc"),
                "type": "function_call",
                "status": "completed",
                "call_id": self._next_id("call"),
                "name": name,
                "arguments": json.dumps(args),
            }
            for name, args in reply.tool_calls
        )
        return items

    def _message(self, *, completed: bool, content: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "id": self._next_id("msg"),
            "type": "message",
            "role": "assistant",
            "status": "completed" if completed else "in_progress",
            "content": content,
        }

    @staticmethod
    def _response(
        rid: str, request: Recorded, reply: Reply, output: list[dict[str, Any]], *, done: bool
    ) -> dict[str, Any]:
        body = request.body
        return {
            "id": rid,
            "object": "response",
            "created_at": 1_700_000_000,
            "status": "completed" if done else "in_progress",
            "error": None,
            "incomplete_details": None,
            "instructions": body.get("instructions"),
            "max_output_tokens": body.get("max_output_tokens"),
            "model": body.get("model", "gpt-fake"),
            "output": output,
            "parallel_tool_calls": body.get("parallel_tool_calls", True),
            "previous_response_id": None,
            "reasoning": {"effort": None, "summary": None},
            "store": True,
            "temperature": body.get("temperature", 1.0),
            "text": body.get("text", {"format": {"type": "text"}}),
            "tool_choice": body.get("tool_choice", "auto"),
            "tools": body.get("tools", []),
            "top_p": 1.0,
            "truncation": "disabled",
            "usage": ResponsesProtocol._usage(reply) if done else None,
            "user": None,
            "metadata": {},
        }

    @staticmethod
    def _usage(reply: Reply) -> dict[str, Any]:
        return {
            "input_tokens": reply.input_tokens,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": reply.output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": reply.input_tokens + reply.output_tokens,
        }

    def render(self, reply: Reply, request: Recorded) -> dict[str, Any]:
        return self._response(self._next_id("resp"), request, reply, self._output(reply), done=True)

    def render_stream(self, reply: Reply, request: Recorded) -> Iterator[bytes]:
        seq = itertools.count()

        def event(kind: str, **fields: Any) -> bytes:
            return sse(kind, {"type": kind, "sequence_number": next(seq), **fields})

        rid, output = self._next_id("resp"), self._output(reply)
        started = self._response(rid, request, reply, [], done=False)
        yield event("response.created", response=started)
        yield event("response.in_progress", response=started)
        for index, item in enumerate(output):
            where = {"output_index": index, "item_id": item["id"]}
            if item["type"] == "message":
                started = {**item, "status": "in_progress", "content": []}
                yield event("response.output_item.added", output_index=index, item=started)
                part = item["content"][0]
                empty = {**part, "text": ""}
                yield event("response.content_part.added", **where, content_index=0, part=empty)
                for piece in _chunks(part["text"], self.chunk_size):
                    yield event(
                        "response.output_text.delta",
                        **where,
                        content_index=0,
                        delta=piece,
                        logprobs=[],
                    )
                yield event(
                    "response.output_text.done",
                    **where,
                    content_index=0,
                    text=part["text"],
                    logprobs=[],
                )
                yield event("response.content_part.done", **where, content_index=0, part=part)
            else:
                started = {**item, "status": "in_progress", "arguments": ""}
                yield event("response.output_item.added", output_index=index, item=started)
                for piece in _chunks(item["arguments"], self.chunk_size):
                    yield event("response.function_call_arguments.delta", **where, delta=piece)
                yield event(
                    "response.function_call_arguments.done",
                    **where,
                    name=item["name"],
                    arguments=item["arguments"],
                )
            yield event("response.output_item.done", output_index=index, item=item)
        yield event(
            "response.completed", response=self._response(rid, request, reply, output, done=True)
        )


class ChatProtocol(_OpenAIProtocol):
    """Render ``Reply`` objects as Chat Completions answers."""

    paths: tuple[str, ...] = ("/chat/completions",)

    def _tool_calls(self, reply: Reply) -> list[dict[str, Any]]:
        return [
            {
                "id": self._next_id("call"),
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(args)},
            }
            for name, args in reply.tool_calls
        ]

    @staticmethod
    def _finish_reason(reply: Reply) -> str:
        return "tool_calls" if reply.tool_calls else "stop"

    @staticmethod
    def _usage(reply: Reply) -> dict[str, Any]:
        return {
            "prompt_tokens": reply.input_tokens,
            "completion_tokens": reply.output_tokens,
            "total_tokens": reply.input_tokens + reply.output_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
        }

    def _envelope(self, request: Recorded, kind: str) -> dict[str, Any]:
        return {
            "id": self._next_id("chatcmpl"),
            "object": kind,
            "created": 1_700_000_000,
            "model": request.body.get("model", "gpt-fake"),
            "system_fingerprint": "fp_fake",
            "service_tier": "default",
        }

    def render(self, reply: Reply, request: Recorded) -> dict[str, Any]:
        message: dict[str, Any] = {
            "role": "assistant",
            "content": reply.text,
            "refusal": None,
            "annotations": [],
        }
        if reply.tool_calls:
            message["tool_calls"] = self._tool_calls(reply)
        choice = {
            "index": 0,
            "message": message,
            "logprobs": None,
            "finish_reason": self._finish_reason(reply),
        }
        return {
            **self._envelope(request, "chat.completion"),
            "choices": [choice],
            "usage": self._usage(reply),
        }

    def render_stream(self, reply: Reply, request: Recorded) -> Iterator[bytes]:
        envelope = self._envelope(request, "chat.completion.chunk")
        with_usage = bool((request.body.get("stream_options") or {}).get("include_usage"))

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            extra = {"usage": None} if with_usage else {}
            return sse(None, {**envelope, "choices": [choice], **extra})

        yield chunk({"role": "assistant", "content": "", "refusal": None})
        if reply.text is not None:
            for piece in _chunks(reply.text, self.chunk_size):
                yield chunk({"content": piece})
        for index, call in enumerate(self._tool_calls(reply)):
            head = {**call, "index": index, "function": {**call["function"], "arguments": ""}}
            yield chunk({"tool_calls": [head]})
            for piece in _chunks(call["function"]["arguments"], self.chunk_size):
                yield chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
        yield chunk({}, self._finish_reason(reply))
        if with_usage:
            yield sse(None, {**envelope, "choices": [], "usage": self._usage(reply)})
        yield sse(None, "[DONE]")
