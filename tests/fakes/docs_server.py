"""A plausible, offline "model" for the documentation examples, over the real wire protocols.

The docs show ``OpenAIResponses(...)``, ``OpenAIChat(...)``, ``OpenAIEmbedder(...)`` and
``Anthropic(...)`` as a user would write them. ``tests/test_docs.py`` points the SDKs'
base URLs at one ``FakeServer`` speaking all of those protocols (``DocsProtocol``), and
``plausible_model`` decides what the "model" says, from the request as the provider got it:

- **Extraction** (structured output named ``extraction``, see ``kern.learn.machine``): a small
  rule set reads the user's sentence out of the prompt and returns typed operations — "I'm X"
  sets ``user_profile.name``, "I work at Y" sets ``company`` (and entity facts when that store
  is on), "my <field> is <value>" sets any profile field the schema has (custom ones too),
  "keep answers short" sets ``communication_style``, "Tip: …" becomes a learning, and any other
  statement becomes a memory and the session summary. Questions teach nothing.
- **Tools**: "remember …" calls ``add_memory`` / ``propose_memory`` (or the profile tools when
  the sentence holds profile facts); "yes" calls ``confirm_proposal`` for the pending proposal
  ids shown in the prompt; a user tool whose name shares a word with the message is called
  with arguments guessed from the message (capitalised words for strings, digits for numbers).
- **Answers**: a short text that repeats what the recalled profile and memories say, so the
  examples show learning working; after tool calls, the tool results.
- **Errors**: a request made with the API key ``bad-key`` gets the provider's 401.

Embeddings are hashed bags of words (``kern.search.HashEmbedder``), so texts that share words
are close, as the docs' search examples need.
"""

from __future__ import annotations

import asyncio
import html
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from kern.search import HashEmbedder
from tests.fakes.anthropic import MessagesProtocol
from tests.fakes.openai import ChatProtocol, ResponsesProtocol
from tests.fakes.server import Recorded, Reply

__all__ = ["BAD_KEY", "DocsProtocol", "Exchange", "normalize", "plausible_model"]

#: An API key the fake provider refuses with 401, for the error examples.
BAD_KEY = "bad-key"

_EMBEDDER = HashEmbedder(dimensions=256)


class DocsProtocol:
    """OpenAI Responses, Chat Completions and Embeddings plus Anthropic Messages on one port."""

    paths: tuple[str, ...] = ("/responses", "/chat/completions", "/embeddings", "/v1/messages")

    def __init__(self) -> None:
        self.responses = ResponsesProtocol()
        self.chat = ChatProtocol()
        self.messages = MessagesProtocol()

    def _wire(self, path: str) -> Any:
        if path.endswith("/v1/messages"):
            return self.messages
        if path.endswith("/chat/completions"):
            return self.chat
        return self.responses

    def render(self, reply: Reply, request: Recorded) -> dict[str, Any]:
        if request.path.endswith("/embeddings"):
            return _embeddings(request)
        result: dict[str, Any] = self._wire(request.path).render(reply, request)
        return result

    def render_stream(self, reply: Reply, request: Recorded) -> Iterator[bytes]:
        return self._wire(request.path).render_stream(reply, request)  # type: ignore[no-any-return]

    def render_error(self, reply: Reply) -> dict[str, Any]:
        if reply.headers.get("x-fake-wire") == "anthropic":
            return self.messages.render_error(reply)
        return self.responses.render_error(reply)


def _embeddings(request: Recorded) -> dict[str, Any]:
    texts = request.body.get("input")
    texts = [texts] if isinstance(texts, str) else list(texts or [])
    vectors = asyncio.run(_EMBEDDER.embed(texts))
    return {
        "object": "list",
        "model": request.body.get("model", "text-embedding-3-small"),
        "data": [
            {"object": "embedding", "index": i, "embedding": [float(x) for x in v]}
            for i, v in enumerate(vectors)
        ],
        "usage": {"prompt_tokens": 1, "total_tokens": 1},
    }


# --------------------------------------------------------------------------- the request


@dataclass
class Exchange:
    """A provider request reduced to what the fake model reasons about."""

    wire: str
    instructions: str = ""
    user: str = ""
    #: Tool outputs that came after the latest user message.
    tool_outputs: list[str] = field(default_factory=list)
    #: Offered tools: name → JSON schema of the arguments.
    tools: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Structured output asked for: (name, JSON schema).
    output: tuple[str, dict[str, Any]] | None = None
    api_key: str = ""


def normalize(request: Recorded) -> Exchange:
    body = request.body
    headers = {k.lower(): v for k, v in request.headers.items()}
    key = headers.get("x-api-key") or headers.get("authorization", "").removeprefix("Bearer ")
    if request.path.endswith("/v1/messages"):
        ex = Exchange("anthropic", instructions=_text(body.get("system")), api_key=key)
        for tool in body.get("tools", []):
            ex.tools[tool["name"]] = tool.get("input_schema", {})
        forced = body.get("tool_choice") or {}
        if forced.get("type") == "tool":
            ex.output = (forced["name"], ex.tools.pop(forced["name"], {}))
        for message in body.get("messages", []):
            blocks = message["content"]
            blocks = [{"type": "text", "text": blocks}] if isinstance(blocks, str) else blocks
            for block in blocks:
                if message["role"] == "user" and block["type"] == "text":
                    ex.user, ex.tool_outputs = block["text"], []
                elif block["type"] == "tool_result":
                    ex.tool_outputs.append(_text(block.get("content")))
        return ex
    if request.path.endswith("/chat/completions"):
        ex = Exchange("chat", api_key=key)
        for tool in body.get("tools", []):
            ex.tools[tool["function"]["name"]] = tool["function"].get("parameters", {})
        fmt = body.get("response_format") or {}
        if fmt.get("type") == "json_schema":
            ex.output = (fmt["json_schema"]["name"], fmt["json_schema"].get("schema", {}))
        for message in body.get("messages", []):
            if message["role"] == "system":
                ex.instructions = _text(message.get("content"))
            elif message["role"] == "user":
                ex.user, ex.tool_outputs = _text(message.get("content")), []
            elif message["role"] == "tool":
                ex.tool_outputs.append(_text(message.get("content")))
        return ex
    ex = Exchange("responses", instructions=_text(body.get("instructions")), api_key=key)
    for tool in body.get("tools", []):
        ex.tools[tool["name"]] = tool.get("parameters", {})
    fmt = (body.get("text") or {}).get("format") or {}
    if fmt.get("type") == "json_schema":
        ex.output = (fmt["name"], fmt.get("schema", {}))
    for item in body.get("input", []):
        if item.get("role") == "user":
            ex.user, ex.tool_outputs = _text(item.get("content")), []
        elif item.get("type") == "function_call_output":
            ex.tool_outputs.append(_text(item.get("output")))
    return ex


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(_text(v.get("text", "")) if isinstance(v, dict) else str(v) for v in value)
    return str(value)


# --------------------------------------------------------------------------- the "model"


def plausible_model(request: Recorded) -> Reply:
    if request.path.endswith("/embeddings"):
        return Reply()  # DocsProtocol computes the vectors
    ex = normalize(request)
    wire_header = {"x-fake-wire": "anthropic"} if ex.wire == "anthropic" else {}
    if ex.api_key == BAD_KEY:
        return Reply(status=401, text="Incorrect API key provided.", headers=wire_header)
    if ex.output is not None:
        name, schema = ex.output
        if name == "extraction":
            prompt = html.unescape(ex.user)
            return Reply(text=json.dumps(extract(_exchange_user(ex.user), schema, prompt)))
        return Reply(text=json.dumps(_minimal(schema, schema)))
    if ex.tool_outputs:
        return Reply(text="Done. " + " ".join(ex.tool_outputs))
    calls = _tool_calls(ex)
    if calls:
        return Reply(tool_calls=calls)
    return Reply(text=answer(ex))


def answer(ex: Exchange) -> str:
    """A short answer that shows what was recalled about the user."""
    facts = _block_rows(ex.instructions, "user_profile")
    memories = _block_rows(ex.instructions, "user_memory")
    parts: list[str] = []
    profile = facts[0] if facts else {}
    if profile.get("name"):
        parts.append(f"You are {profile['name']}.")
    if profile.get("company"):
        parts.append(f"You work at {profile['company']}.")
    if profile.get("communication_style"):
        parts.append(f"You prefer {profile['communication_style']}.")
    parts += [f"I remember: {m['content']}" for m in memories if m.get("content")]
    if parts:
        return " ".join(parts)
    return "I don't know that yet." if ex.user.rstrip().endswith("?") else "Got it."


def _block_rows(instructions: str, tag: str) -> list[dict[str, Any]]:
    match = re.search(rf"<{tag}>\n.*?\n(.*?)\n</{tag}>", instructions, re.S)
    if not match:
        return []
    rows = []
    for line in match.group(1).splitlines():
        try:
            rows.append(json.loads(html.unescape(line)))
        except json.JSONDecodeError:
            continue
    return rows


def _exchange_user(prompt: str) -> str:
    """The user's message inside kern's extraction prompt (``{"user": ...}`` in <exchange>)."""
    for line in prompt.splitlines():
        if line.startswith('{"user"'):
            value = json.loads(html.unescape(line))
            return str(value.get("user", ""))
    return prompt


# --------------------------------------------------------------------------- extraction rules

_NAME = re.compile(r"\b(?:I'm|I am|[Mm]y name is|[Cc]all me)\s+([A-Z][a-z]+)")
_COMPANY = re.compile(r"\bI work (?:at|for) ([A-Z][\w&.-]*[\w&])")
_ROLE = re.compile(r"\bas an? ([a-z][a-z ]*?)(?=[.,!;]|$| at | for )")
_LOCATION = re.compile(r"\bI live in ([A-Z][\w-]*(?: [A-Z][\w-]*)*)")
_MY_FIELD = re.compile(r"\bmy ([a-z][a-z ]*?) is ([\w/+.-]*[\w/+-])", re.I)
_LOVE = re.compile(r"\bI (?:love|adore|really like) ([^.!?]+)")
_TIP = re.compile(r"\b(?:tip|lesson|learned)\s*:\s*(.+)", re.I)


def profile_facts(text: str, fields: dict[str, Any]) -> dict[str, Any]:
    """Profile fields a sentence states, among ``fields`` (the schema's properties)."""
    found: dict[str, Any] = {}
    for match in _MY_FIELD.finditer(text):
        name = match.group(1).strip().lower().replace(" ", "_")
        if name in fields and name != "name":
            found[name] = _coerce(match.group(2), fields[name])
    if m := _NAME.search(text):
        found.setdefault("name", m.group(1))
    if m := _COMPANY.search(text):
        found.setdefault("company", m.group(1))
    if (m := _ROLE.search(text)) and "work" in text.lower():
        found.setdefault("role", m.group(1).strip())
    if m := _LOCATION.search(text):
        found.setdefault("location", m.group(1))
    lowered = text.lower()
    if "short" in lowered and "answer" in lowered:
        found.setdefault("communication_style", "short answers")
    return {k: v for k, v in found.items() if k in fields}


def _coerce(value: str, schema: dict[str, Any]) -> Any:
    options = schema.get("anyOf", [schema])
    for option in options:
        if option.get("type") == "integer" and value.isdigit():
            return int(value)
        if "enum" in option and value.lower() in option["enum"]:
            return value.lower()
    return value


def extract(user: str, schema: dict[str, Any], stored: str = "") -> dict[str, Any]:
    """Typed operations for every store in the extraction schema, from the user's sentence;
    like a good model, it skips items the prompt shows as ``stored`` already."""
    stores = schema.get("properties", {})
    out: dict[str, Any] = {}
    question = user.rstrip().endswith("?")
    if question:
        return out
    facts: dict[str, Any] = {}
    if "user_profile" in stores:
        fields = _properties(stores["user_profile"], schema)
        facts = profile_facts(user, fields)
        if facts:
            out["user_profile"] = facts
    tip = _TIP.search(user)
    if tip and "learned_knowledge" in stores:
        words = tip.group(1).split()
        out["learned_knowledge"] = {
            "add": [{"title": " ".join(words[:6]), "learning": tip.group(1), "tags": []}]
        }
    memory = f"The user said: {user.strip()}"
    if "user_memory" in stores and not facts and not tip and memory not in stored:
        out["user_memory"] = {"add": [{"content": memory}]}
    if "entity_memory" in stores and facts.get("company"):
        who, company = facts.get("name", "The user"), facts["company"]
        fact = f"{who} works at {company}."
        entities: dict[str, Any] = {"facts": [], "relations": []}
        if fact not in stored:
            entities["facts"].append({"entity": company, "entity_type": "company", "fact": fact})
        if f"{who} — works_at — {company}" not in stored:
            entities["relations"].append(
                {"subject": who, "relation": "works_at", "object": company}
            )
        out["entity_memory"] = entities
    love = _LOVE.search(user)
    builtin = {"user_profile", "user_memory", "session_context", "entity_memory"}
    for key, store in stores.items():
        if key in builtin | {"learned_knowledge", "decision_log"} or not love:
            continue
        ops = _properties(store, schema)
        add = ops.get("add", {}).get("items", {})
        if "content" in _properties(add, schema):  # a custom list store of short texts
            out[key] = {"add": [{"content": love.group(1).strip()}]}
    if "session_context" in stores:
        out["session_context"] = {"summary": f"The user said: {user.strip()}"}
    return out


def _properties(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    """The properties of a (possibly ``$ref`` / nullable) object schema."""
    if "$ref" in schema:
        return _properties(root["$defs"][schema["$ref"].rsplit("/", 1)[-1]], root)
    for option in schema.get("anyOf", []):
        if option.get("type") != "null":
            return _properties(option, root)
    return dict(schema.get("properties", {}))


def _minimal(schema: dict[str, Any], root: dict[str, Any]) -> Any:
    from kern.models.testing import sample_from_schema

    return sample_from_schema(schema, root)


# --------------------------------------------------------------------------- tool choice

_REMEMBER = re.compile(r"\b(?:remember|note) (?:that )?(.+)", re.I)
_YES = re.compile(r"^\s*(?:yes|yep|sure|ok|okay|confirm|please do|go ahead)\b", re.I)
_PROPOSAL_ID = re.compile(r'&quot;id&quot;: &quot;(\w+)&quot;|"id": "(\w+)"')
_IGNORED_WORDS = {"get", "set", "the", "a", "an", "of", "for", "to", "and"}


def _tool_calls(ex: Exchange) -> list[tuple[str, dict[str, Any]]]:
    tools = ex.tools
    if "confirm_proposal" in tools and _YES.search(ex.user):
        ids = _pending_ids(ex.instructions)
        if ids:
            return [("confirm_proposal", {"proposal_id": i}) for i in ids]
    remember = _REMEMBER.search(ex.user)
    profile_tool = next(
        (t for t in ("update_user_profile", "propose_user_profile_update") if t in tools), None
    )
    if remember and profile_tool:
        facts = profile_facts(remember.group(1), tools[profile_tool].get("properties", {}))
        if facts:
            return [(profile_tool, facts)]
    memory_tool = next((t for t in ("add_memory", "propose_memory") if t in tools), None)
    if remember and memory_tool:
        content = remember.group(1).strip().rstrip(".")
        return [(memory_tool, {"content": f"The user {_third_person(content)}."})]
    words = {w.lower() for w in re.findall(r"[A-Za-z]+", ex.user)}
    for name, params in tools.items():
        parts = {p for p in name.lower().split("_") if p not in _IGNORED_WORDS}
        if parts & words:
            return [(name, _guess_arguments(ex.user, params))]
    return []


def _pending_ids(instructions: str) -> list[str]:
    ids: list[str] = []
    for block in re.findall(r"<(\w+_pending_proposals)>(.*?)</\1>", instructions, re.S):
        for match in _PROPOSAL_ID.finditer(html.unescape(block[1])):
            ids.append(match.group(1) or match.group(2))
    return ids


def _third_person(text: str) -> str:
    text = re.sub(r"^I'm\b", "is", text)
    text = re.sub(r"^I am\b", "is", text)
    text = re.sub(r"^I\s+(\w+)", lambda m: _verb(m.group(1)), text)
    return re.sub(r"\bmy\b", "their", text)


def _verb(word: str) -> str:
    if word in {"have"}:
        return "has"
    if word.endswith(("s", "sh", "ch", "x")):
        return word + "es"
    return word + "s"


def _guess_arguments(text: str, params: dict[str, Any]) -> dict[str, Any]:
    """Arguments for a tool, guessed from the message the way a small model would."""
    words = re.findall(r"[A-Za-z][\w-]*", text)
    capitalised = [w for w in words[1:] if w[0].isupper()] or words[-1:]
    numbers = [float(n) for n in re.findall(r"-?\d+(?:\.\d+)?", text)]
    args: dict[str, Any] = {}
    properties = params.get("properties", {})
    for name in params.get("required", list(properties)):
        kind = properties.get(name, {}).get("type", "string")
        if kind in ("integer", "number"):
            value = numbers.pop(0) if numbers else 0
            args[name] = int(value) if kind == "integer" else value
        elif kind == "boolean":
            args[name] = True
        else:
            args[name] = capitalised.pop(0) if capitalised else text
    return args
