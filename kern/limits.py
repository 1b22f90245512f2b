"""kern's input limits, in one place, and the checks every public entry point applies.

Every value a caller hands kern is checked here, at the edge, before anything is stored or
sent to a model: strings must encode as UTF-8 and hold no NUL (both would fail deep in a
database driver otherwise), ids must be non-empty, counts must be integers in range, datetimes
must carry a time zone (a naive one is **refused**, never guessed as UTC or local time), and
sizes stay under the limits below. A refusal is ``InvalidArgumentError`` (``TooLargeError`` for a
size; HTTP 413 through the REST API), naming the argument and the rule.

The limits bound what one caller can make every later reader pay: a 30 MB memory would be
returned by every list and search of its user, and sent to the model on every extraction.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from kern.errors import InvalidArgumentError, TooLargeError

__all__ = [
    "EXTRACTION_INPUT_CHARS",
    "EXTRACTION_ITEM_CHARS",
    "MAX_CONTENT_CHARS",
    "MAX_ID_CHARS",
    "MAX_IMPORT_BYTES",
    "MAX_MESSAGE_CHARS",
    "MAX_METADATA_CHARS",
    "MAX_PAGE",
    "MAX_QUERY_CHARS",
    "MAX_QUERY_TERMS",
    "MAX_REQUEST_BYTES",
    "check_aware",
    "check_content",
    "check_count",
    "check_id",
    "check_message",
    "check_metadata",
    "check_text",
    "cut",
]

#: A run's message (≈ 50,000 tokens): more than any model's useful input for one turn.
MAX_MESSAGE_CHARS = 200_000
#: One learning's content as JSON (a memory, a fact, a decision …): items are short statements.
MAX_CONTENT_CHARS = 16_000
#: Metadata as JSON, of a run or of an item.
MAX_METADATA_CHARS = 16_000
#: A user, session or agent id.
MAX_ID_CHARS = 256
#: ``limit`` (and ``offset``) of one list or search call.
MAX_PAGE = 10_000
#: Distinct terms a full-text query keeps (the first ones); more only cost time.
MAX_QUERY_TERMS = 64
#: Characters of a query that search reads: its end (where a long message usually asks its
#: question) and its head. A run's message is its recall query.
MAX_QUERY_CHARS = 4_000
#: A REST request body; ``MAX_IMPORT_BYTES`` for a user import (a whole export).
MAX_REQUEST_BYTES = 2 * 1024 * 1024
MAX_IMPORT_BYTES = 256 * 1024 * 1024
#: The extraction call's turn text (message + answer, ≈ 6,000 tokens), and each stored item
#: shown to it: longer text is cut (head and tail kept), never sent whole.
EXTRACTION_INPUT_CHARS = 24_000
EXTRACTION_ITEM_CHARS = 1_000


def check_text(value: object, name: str, *, max_chars: int | None = None) -> str:
    """``value`` if it is a string kern can store: valid UTF-8 (no lone surrogate), no NUL."""
    if not isinstance(value, str):
        raise InvalidArgumentError(f"{name} must be a string, got {type(value).__name__}")
    if max_chars is not None and len(value) > max_chars:
        raise TooLargeError(name, len(value), max_chars)
    _check_clean(value, name)
    return value


def check_message(value: object) -> str:
    return check_text(value, "message", max_chars=MAX_MESSAGE_CHARS)


def check_id(value: object, name: str) -> str:
    """A user, session or agent id: a non-empty clean string of at most ``MAX_ID_CHARS``.

    An empty id is refused rather than read as "no id": ``user_id=""`` would otherwise
    become the shared default user.
    """
    text = check_text(value, name, max_chars=MAX_ID_CHARS)
    if not text.strip():
        raise InvalidArgumentError(f"{name} must not be empty (pass None to use the default)")
    return text


def check_metadata(value: object, name: str = "metadata") -> dict[str, Any]:
    """A JSON object of clean strings, at most ``MAX_METADATA_CHARS`` once serialised."""
    if not isinstance(value, Mapping):
        raise InvalidArgumentError(f"{name} must be a mapping, got {type(value).__name__}")
    return _check_json(dict(value), name, MAX_METADATA_CHARS)


def check_content(value: Mapping[str, Any], name: str = "content") -> dict[str, Any]:
    """An item's content as stored: clean strings, at most ``MAX_CONTENT_CHARS`` as JSON."""
    return _check_json(dict(value), name, MAX_CONTENT_CHARS)


def check_count(value: object, name: str, *, minimum: int = 0, maximum: int = MAX_PAGE) -> int:
    """An integer in ``[minimum, maximum]`` (``limit=1.5`` or ``2**63`` are refused here,
    not by the database driver)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgumentError(f"{name} must be an integer, got {value!r}")
    if not minimum <= value <= maximum:
        raise InvalidArgumentError(f"{name} must be between {minimum} and {maximum}, got {value}")
    return value


def check_aware(value: object, name: str) -> datetime:
    """A timezone-aware datetime, returned in UTC. Naive datetimes are refused: kern cannot
    know whether the caller meant UTC or local time, and a guess would shift every date."""
    if not isinstance(value, datetime):
        raise InvalidArgumentError(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidArgumentError(
            f"{name} has no time zone: pass an aware datetime, e.g. datetime(..., tzinfo=UTC)"
        )
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise InvalidArgumentError(f"{name} is out of range once converted to UTC") from None


def cut(text: str, max_chars: int) -> str:
    """``text`` at most ``max_chars`` long: its head and tail around a visible marker (the
    end of a message often says what it asks)."""
    if len(text) <= max_chars:
        return text
    marker = f" […{len(text) - max_chars:,} characters cut…] "
    keep = max(0, max_chars - len(marker))
    head = keep * 2 // 3
    return text[:head] + marker + text[len(text) - (keep - head) :]


# --------------------------------------------------------------------------- helpers


def _check_clean(value: str, name: str) -> None:
    if "\x00" in value:
        raise InvalidArgumentError(f"{name} contains a NUL character (\\x00)")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidArgumentError(
            f"{name} is not valid Unicode text: a lone surrogate ({value[exc.start]!r}) at "
            f"position {exc.start}"
        ) from None


def _check_json(value: dict[str, Any], name: str, max_chars: int) -> dict[str, Any]:
    _walk(value, name)
    try:
        size = len(json.dumps(value, ensure_ascii=False, allow_nan=False, default=str))
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(f"{name} is not JSON: {exc}") from None
    if size > max_chars:
        raise TooLargeError(name, size, max_chars, "characters of JSON")
    return value


def _walk(value: Any, name: str, depth: int = 0) -> None:
    if depth > 32:
        raise InvalidArgumentError(f"{name} is nested more than 32 levels deep")
    if isinstance(value, str):
        _check_clean(value, name)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidArgumentError(f"{name} has a key that is not a string: {key!r}")
            _check_clean(key, f"{name} key")
            _walk(item, name, depth + 1)
    elif isinstance(value, list | tuple):
        for item in value:
            _walk(item, name, depth + 1)
    elif isinstance(value, float) and not math.isfinite(value):
        raise InvalidArgumentError(f"{name} holds {value}, which JSON cannot store")
