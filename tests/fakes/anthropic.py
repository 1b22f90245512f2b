"""The Anthropic Messages API (``POST /v1/messages``) as a ``WireProtocol`` for ``FakeServer``.

Bodies follow the documented wire format closely enough for the official ``anthropic`` SDK to
parse them: a ``message`` object for plain requests; for ``stream: true`` the named
server-sent events ``message_start``, ``content_block_start``, ``ping``,
``content_block_delta`` (``text_delta`` / ``input_json_delta``), ``content_block_stop``,
``message_delta`` (stop reason and usage) and ``message_stop``.

A reply's ``text`` becomes a ``text`` block, except when the request forces one tool
(``tool_choice: {"type": "tool"}``, how kern asks for structured output): then, as the real API
does, the answer arrives as that tool's ``tool_use`` block whose ``input`` is the JSON ``text``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from tests.fakes.server import Recorded, Reply, sse

__all__ = ["ERROR_TYPES", "MessagesProtocol"]

#: HTTP status → Anthropic ``error.type``.
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


def _chunks(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


class MessagesProtocol:
    """Render ``Reply`` objects as Anthropic Messages API responses."""

    paths: tuple[str, ...] = ("/v1/messages",)

    def __init__(self, chunk_size: int = 4) -> None:
        #: Characters per streamed ``text_delta`` / ``input_json_delta``.
        self.chunk_size = chunk_size
        self._counter = 0

    def _next_id(self, prefix: str) -> str:
        self._counter += 1
        return f"{prefix}_{self._counter:04d}"

    def blocks(self, reply: Reply, request: Recorded) -> list[dict[str, Any]]:
        """The content blocks of the answer, as a complete (non-streamed) message has them."""
        blocks: list[dict[str, Any]] = []
        forced = request.body.get("tool_choice") or {}
        if reply.text is not None and forced.get("type") == "tool":
            blocks.append(self._tool_use(forced["name"], json.loads(reply.text)))
        elif reply.text is not None:
            blocks.append({"type": "text", "text": reply.text})
        blocks.extend(self._tool_use(name, args) for name, args in reply.tool_calls)
        return blocks

    def _tool_use(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        return {"type": "tool_use", "id": self._next_id("toolu"), "name": name, "input": args}

    @staticmethod
    def _stop_reason(blocks: list[dict[str, Any]]) -> str:
        return "tool_use" if any(b["type"] == "tool_use" for b in blocks) else "end_turn"

    def render(self, reply: Reply, request: Recorded) -> dict[str, Any]:
        blocks = self.blocks(reply, request)
        return {
            "id": self._next_id("msg"),
            "type": "message",
            "role": "assistant",
            "model": request.body.get("model", "claude-fake"),
            "content": blocks,
            "stop_reason": self._stop_reason(blocks),
            "stop_sequence": None,
            "usage": {
                "input_tokens": reply.input_tokens,
                "output_tokens": reply.output_tokens,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
            },
        }

    def render_stream(self, reply: Reply, request: Recorded) -> Iterator[bytes]:
        blocks = self.blocks(reply, request)
        yield sse(
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": self._next_id("msg"),
                    "type": "message",
                    "role": "assistant",
                    "model": request.body.get("model", "claude-fake"),
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {"input_tokens": reply.input_tokens, "output_tokens": 1},
                },
            },
        )
        yield sse("ping", {"type": "ping"})
        for index, block in enumerate(blocks):
            start: dict[str, Any]
            if block["type"] == "text":
                start = {"type": "text", "text": ""}
                deltas = [
                    {"type": "text_delta", "text": piece}
                    for piece in _chunks(block["text"], self.chunk_size)
                ]
            else:
                start = {**block, "input": {}}
                deltas = [
                    {"type": "input_json_delta", "partial_json": piece}
                    for piece in _chunks(json.dumps(block["input"]), self.chunk_size)
                ]
            yield sse(
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": start},
            )
            for delta in deltas:
                yield sse(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": index, "delta": delta},
                )
            yield sse("content_block_stop", {"type": "content_block_stop", "index": index})
        yield sse(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": self._stop_reason(blocks), "stop_sequence": None},
                "usage": {"output_tokens": reply.output_tokens},
            },
        )
        yield sse("message_stop", {"type": "message_stop"})

    def render_error(self, reply: Reply) -> dict[str, Any]:
        kind = ERROR_TYPES.get(reply.status, "api_error")
        return {
            "type": "error",
            "error": {"type": kind, "message": reply.text or f"scripted {kind}"},
        }
