"""A Chat Completions server with limited capabilities, as real compatible servers have.

``Endpoint`` answers like a model that follows instructions, but refuses the request shapes
it does not support, the way real servers do: llama-cpp-python's own server answers a
``json_schema`` response format with HTTP 500 (its request validation error, wrapped), others
answer 400; some have no tool calling; some no JSON mode. Structured answers come from the
docs' plausible model (``tests.fakes.docs_server.extract``), so learning from them works.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from tests.fakes.docs_server import _exchange_user, extract, profile_facts
from tests.fakes.server import Recorded, Reply

__all__ = ["LLAMA_CPP_PYTHON_REFUSAL", "Endpoint"]

#: The error message llama-cpp-python 0.3.36's server sends, with HTTP 500, for
#: ``response_format: json_schema`` (recorded from ``python -m llama_cpp.server``).
LLAMA_CPP_PYTHON_REFUSAL = (
    "1 validation error:\n  {'type': 'literal_error', 'loc': ('body', 'response_format', "
    "'type'), 'msg': \"Input should be 'text' or 'json_object'\", 'input': 'json_schema', "
    "'ctx': {'expected': \"'text' or 'json_object'\"}}\n\n  File \"/srv/venv/lib/python3.11/"
    'site-packages/llama_cpp/server/app.py", line 376, in create_chat_completion\n'
    "    POST /v1/chat/completions"
)


@dataclass
class Endpoint:
    """A responder for ``FakeServer``: what the endpoint supports, and how it refuses.

    ``json_schema`` is None when supported, else the HTTP status of the refusal (with
    ``refusal`` as the message); ``tools`` / ``json_object`` False answer 400. ``fenced``
    wraps JSON answers in prose and a code fence, as chat models left to themselves do.
    """

    json_schema: int | None = None
    refusal: str = "response_format json_schema is not supported"
    tools: bool = True
    json_object: bool = True
    fenced: bool = False
    answer: str = "Nice to meet you!"

    def __call__(self, request: Recorded) -> Reply:
        body = request.body
        fmt = (body.get("response_format") or {}).get("type")
        if fmt == "json_schema" and self.json_schema is not None:
            return Reply(status=self.json_schema, text=self.refusal)
        if body.get("tools") and not self.tools:
            return Reply(status=400, text="tools are not supported by this server")
        if fmt == "json_object" and not self.json_object:
            return Reply(status=400, text="response_format json_object is not supported")
        schema = _schema_asked(body)
        if schema is None:
            return Reply(text=self.answer)
        user = _last_user(body)
        if "user_profile" in schema.get("properties", {}):  # kern's extraction
            value = extract(_exchange_user(user), schema, user)
        else:  # any other object: the profile facts the sentence states, among its fields
            value = profile_facts(user, schema.get("properties", {}))
        forced = body.get("tool_choice")
        if isinstance(forced, dict) and forced.get("type") == "function":
            return Reply(tool_calls=[(forced["function"]["name"], value)])
        text = json.dumps(value)
        if self.fenced and fmt != "json_schema":
            text = f"Sure! Here is the JSON:\n```json\n{text}\n```\nHope this helps."
        return Reply(text=text)


def _last_user(body: dict[str, Any]) -> str:
    users = [m for m in body.get("messages", []) if m.get("role") == "user"]
    return str(users[-1]["content"]) if users else ""


def _schema_asked(body: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON schema the request asks the answer to follow, wherever the request put it."""
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_schema":
        schema: dict[str, Any] = fmt["json_schema"]["schema"]
        return schema
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        for tool in body.get("tools", []):
            if tool["function"]["name"] == choice["function"]["name"]:
                params: dict[str, Any] = tool["function"]["parameters"]
                return params
    system = next((m for m in body.get("messages", []) if m.get("role") == "system"), None)
    if system is not None:
        match = re.search(r"JSON schema[^\n]*\n(\{.*\})\s*$", str(system["content"]), re.S)
        if match:
            found: dict[str, Any] = json.loads(match.group(1))
            return found
    return None
