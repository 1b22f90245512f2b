"""Structured output by capability: how a JSON answer of a given schema is asked for.

Endpoints differ in what they accept. OpenAI and vLLM take a native ``json_schema``
response format; some servers only call tools; some only know ``json_object``
(llama-cpp-python's own server answers ``json_schema`` with HTTP 500); some know neither. The
modes, strongest first:

- ``json_schema``: the endpoint's native schema-constrained output;
- ``tool``: one tool whose parameters are the schema, forced with ``tool_choice``; its
  arguments are the answer;
- ``json_object``: JSON mode, with the schema in the instructions;
- ``text``: plain text with the schema in the instructions (the answer's JSON is taken from
  the text).

``auto`` tries them in that order, moving on only when the endpoint refuses a request (a
capability error: HTTP 400, 422, 500 or 501), and remembers per endpoint and process the mode
that worked, so the refused requests are paid once. Whatever the mode, the answer is validated
by the caller (one repair round in extraction) and a failure is reported, never guessed.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Literal, TypeAlias, get_args

from kern.errors import ConfigError, ModelError, ModelHTTPError
from kern.models.base import OutputSchema

__all__ = [
    "MODES",
    "StructuredMode",
    "forget_modes",
    "json_text",
    "modes_to_try",
    "remember_mode",
    "schema_instructions",
]

log = logging.getLogger("kern.models")

StructuredMode: TypeAlias = Literal["auto", "json_schema", "tool", "json_object", "text"]
#: The concrete modes, in the order ``auto`` tries them.
MODES: tuple[StructuredMode, ...] = ("json_schema", "tool", "json_object", "text")

#: Statuses with which endpoints refuse a request shape they do not support.
CAPABILITY_STATUS = frozenset({400, 422, 500, 501})

SCHEMA_INSTRUCTIONS = """\
Reply with one JSON object that matches this JSON schema, and nothing else (no prose, no code \
fences):
{schema}"""

# (endpoint, model) → the mode that worked there, for this process.
_modes: dict[tuple[str, str], StructuredMode] = {}
_lock = threading.Lock()


def check_mode(mode: str) -> StructuredMode:
    """``mode`` if it is one of the structured-output modes, else a ``ConfigError``."""
    for known in get_args(StructuredMode):
        if mode == known:
            return known  # type: ignore[no-any-return]
    choices = ", ".join(get_args(StructuredMode))
    raise ConfigError(f"unknown structured_output mode {mode!r}; use one of: {choices}")


def modes_to_try(mode: StructuredMode, endpoint: tuple[str, str]) -> tuple[StructuredMode, ...]:
    """The modes to try, in order: the explicit one alone; for ``auto``, the mode remembered
    for ``endpoint`` first (it worked), then the rest of the ladder below it."""
    if mode != "auto":
        return (mode,)
    with _lock:
        known = _modes.get(endpoint)
    return MODES[MODES.index(known) :] if known else MODES


def is_capability_error(exc: ModelError) -> bool:
    """Whether a refused request may succeed in a weaker structured-output mode."""
    return isinstance(exc, ModelHTTPError) and exc.status_code in CAPABILITY_STATUS


def remember_mode(endpoint: tuple[str, str], mode: StructuredMode, *, provider: str) -> None:
    """Record that ``mode`` worked at ``endpoint``; logged (INFO) once, when it is news."""
    with _lock:
        previous = _modes.get(endpoint)
        _modes[endpoint] = mode
    if previous != mode:
        url, model = endpoint
        log.info("%s: structured output for %s at %s uses %r", provider, model, url, mode)


def forget_modes() -> None:
    """Forget every remembered mode (tests; a server that was upgraded in place)."""
    with _lock:
        _modes.clear()


def schema_instructions(instructions: str | None, schema: OutputSchema) -> str:
    """``instructions`` followed by the schema, for modes where only the prompt carries it."""
    described = f"{schema.description}\n" if schema.description else ""
    part = described + SCHEMA_INSTRUCTIONS.format(schema=json.dumps(schema.schema))
    return f"{instructions}\n\n{part}" if instructions else part


def json_text(text: str | None) -> str | None:
    """The JSON object in a free-text answer: code fences and prose around it removed.

    Only for modes that cannot constrain output (``json_object`` on some servers, ``text``):
    the span from the first ``{`` to the last ``}``; the caller validates it.
    """
    if text is None:
        return None
    start, end = text.find("{"), text.rfind("}")
    return text[start : end + 1] if 0 <= start < end else text
