"""JSON schema → llama.cpp grammar: bounding a schema so its grammar is finite, the longest
text such a grammar allows, and compiling it with llama-cpp-python (extra ``local``).

Pure except ``json_grammar``, which needs ``llama_cpp``. Used by ``LlamaCpp``; any code that
drives llama.cpp with grammars can use it too.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from kern._extras import require
from kern.errors import ModelError

__all__ = ["MAX_REPEAT", "bounded_schema", "json_grammar", "json_length_bound"]

#: The provider named in errors: the grammar is llama.cpp's.
PROVIDER = "llamacpp"


def bounded_schema(schema: dict[str, Any], *, max_length: int, max_items: int) -> dict[str, Any]:
    """A copy of ``schema`` in which every string has a ``maxLength`` and every array a
    ``maxItems`` (bounds already there are kept, up to ``MAX_REPEAT``), so the grammar compiled
    from it is finite.

    Not bounded, because llama-cpp's grammar compiler cannot bound them: free-form objects
    (no ``properties``, or ``additionalProperties``), untyped values and string ``pattern``s.
    """

    def bound(node: Any) -> Any:
        if not isinstance(node, dict):
            return node
        kind = node.get("type")
        if isinstance(kind, list) and not {"anyOf", "oneOf"} & node.keys():
            # llama-cpp compiles a list of types to bare {"type": t} branches, which would drop
            # the bounds: spell it as anyOf with the other keywords in every branch.
            rest = {k: v for k, v in node.items() if k != "type"}
            return bound({"anyOf": [{**rest, "type": t} for t in kind]})
        node = dict(node)
        for key in ("properties", "$defs", "definitions"):
            if isinstance(node.get(key), dict):
                node[key] = {name: bound(sub) for name, sub in node[key].items()}
        for key in ("anyOf", "oneOf", "allOf", "prefixItems", "items"):
            if isinstance(node.get(key), list):
                node[key] = [bound(sub) for sub in node[key]]
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                node[key] = bound(node[key])
        if kind == "string" and not {"pattern", "enum", "const"} & node.keys():
            _cap(node, "minLength", "maxLength", max_length)
        if isinstance(node.get("items"), dict):
            _cap(node, "minItems", "maxItems", max_items)
        return node

    bounded: dict[str, Any] = bound(schema)
    return bounded


# llama-cpp-python compiles ``maxLength: n`` / ``maxItems: n`` to n nested optional groups, and
# llama.cpp rejects more than 1000 of them by crashing the process (a segfault, measured with
# llama-cpp-python 0.3.36): bounds are capped here, never passed on.
MAX_REPEAT = 1000


def _cap(node: dict[str, Any], low_key: str, high_key: str, default: int) -> None:
    low = node.get(low_key, 0)
    if not isinstance(low, int) or low > MAX_REPEAT:
        raise ModelError(
            f"{low_key} {low!r} is more than llama.cpp grammars support ({MAX_REPEAT})",
            provider=PROVIDER,
        )
    high = node.get(high_key, default)
    node[high_key] = min(max(high, low), MAX_REPEAT) if isinstance(high, int) else default


# Longest text of llama-cpp's grammar primitives, trailing optional space included.
_PRIMITIVE_LENGTH = {"integer": 18, "number": 53, "boolean": 6, "null": 5}
_FORMAT_LENGTH = {"date": 13, "time": 28, "date-time": 41}


def json_length_bound(schema: dict[str, Any]) -> int | None:
    """The longest text llama-cpp's grammar for ``schema`` allows, counting a string's
    characters once each (so in tokens for text without escapes or multi-token characters);
    None when some part is unbounded or recursive."""

    def resolve(ref: str) -> Any:
        node: Any = schema
        for part in ref.removeprefix("#/").split("/"):
            node = node.get(part.replace("~1", "/").replace("~0", "~"), {})
        return node

    def longest(nodes: Sequence[Any], seen: frozenset[str]) -> int | None:
        sizes = [size(n, seen) for n in nodes]
        return None if not sizes or None in sizes else max(s for s in sizes if s is not None)

    def size(node: Any, seen: frozenset[str]) -> int | None:
        if not isinstance(node, dict):
            return None
        ref = node.get("$ref")
        if isinstance(ref, str):
            if not ref.startswith("#/") or ref in seen:
                return None
            return size(resolve(ref), seen | {ref})
        for key in ("anyOf", "oneOf"):
            if key in node:
                return longest(node[key], seen)
        kind = node.get("type")
        if isinstance(kind, list):
            return longest([{**node, "type": t} for t in kind], seen)
        if "const" in node:
            return len(json.dumps(node["const"])) + 1
        if "enum" in node:
            return longest([{"const": v} for v in node["enum"]], seen)
        extra = node.get("additionalProperties")
        if kind in (None, "object") and "properties" in node:
            if extra is True or isinstance(extra, dict):
                return None
            total = 4  # braces and their spaces
            for name, sub in node["properties"].items():
                value = size(sub, seen)
                if value is None:
                    return None
                total += len(json.dumps(name)) + 3 + value + 2  # key, colon, value, comma
            return total
        items = node.get("items", node.get("prefixItems"))
        if kind in (None, "array") and isinstance(items, list):
            parts = [size(sub, seen) for sub in items]
            return None if None in parts else 4 + sum(p + 2 for p in parts if p is not None)
        if kind in (None, "array") and isinstance(items, dict):
            item = size(items, seen)
            count = node.get("maxItems")
            return None if item is None or count is None else 4 + count * (item + 2)
        if kind == "string":
            if "pattern" in node:
                return None
            if node.get("format") in _FORMAT_LENGTH:
                return _FORMAT_LENGTH[node["format"]]
            length = node.get("maxLength")
            return None if length is None else length + 3  # quotes and space
        return _PRIMITIVE_LENGTH.get(kind) if isinstance(kind, str) else None

    return size(schema, frozenset())


# llama-cpp-python's string character rule admits raw control characters (a newline inside a
# string), which JSON forbids; llama.cpp's own converter excludes them. Same fix here.
_LOOSE_CHAR = r'char ::= [^"\\] |'
_STRICT_CHAR = r'char ::= [^"\\\x7F\x00-\x1F] |'


def json_grammar(schema: dict[str, Any]) -> Any:
    """llama-cpp's grammar for ``schema``; ``ModelError`` when it cannot compile one."""
    llama_cpp = require("llama_cpp", "local")
    try:
        gbnf = llama_cpp.llama_grammar.json_schema_to_gbnf(json.dumps(schema))
        return llama_cpp.LlamaGrammar.from_string(
            gbnf.replace(_LOOSE_CHAR, _STRICT_CHAR), verbose=False
        )
    except Exception as exc:
        raise ModelError(
            f"cannot compile a grammar for this JSON schema: {type(exc).__name__}: {exc}",
            provider=PROVIDER,
        ) from exc
