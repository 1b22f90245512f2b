"""The typed view of a stored learning that the direct API and recall return."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from kern.db.base import LearningRecord

__all__ = ["Item", "content_hash", "new_id", "text_of"]

S = TypeVar("S", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class Item(Generic[S]):
    """A learning as applications see it.

    ``data`` is the typed content (an instance of the store's schema, custom fields
    included); ``content`` is its searchable text.
    """

    id: str
    store: str
    kind: str
    data: S
    content: str
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    status: str = "active"
    version: int = 1
    user_id: str | None = None
    session_id: str | None = None
    namespace: str | None = None
    run_id: str | None = None
    #: Relevance for search results (higher is better); ``None`` elsewhere.
    score: float | None = None
    #: When the item held in the world (``None``: unknown, or still true); see docs/time.md.
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    #: After this it is no longer recalled.
    expires_at: datetime | None = None
    #: Never pruned or merged away by the curator.
    pinned: bool = False
    #: The item that replaced this one (status ``superseded``).
    superseded_by: str | None = None
    #: In results that include the past (``include_past``, ``as_of``, a question about the
    #: past): the item no longer held at the time asked about.
    past: bool = False

    @classmethod
    def from_record(
        cls,
        record: LearningRecord,
        schema: type[S],
        *,
        score: float | None = None,
        past: bool = False,
    ) -> Item[S]:
        assert record.created_at is not None
        assert record.updated_at is not None
        return cls(
            id=record.id,
            store=record.store,
            kind=record.kind,
            data=schema.model_validate(record.content),
            content=record.text,
            metadata=record.metadata,
            created_at=record.created_at,
            updated_at=record.updated_at,
            status=record.status,
            version=record.version,
            user_id=record.user_id,
            session_id=record.session_id,
            namespace=record.namespace,
            run_id=record.run_id,
            score=score,
            valid_from=record.valid_from,
            valid_to=record.valid_to,
            expires_at=record.expires_at,
            pinned=record.pinned,
            superseded_by=record.superseded_by,
            past=past,
        )


def new_id() -> str:
    return uuid.uuid4().hex


def content_hash(kind: str, content: dict[str, Any]) -> str:
    """Canonical-JSON hash: equal content gives an equal hash, whatever the key order."""
    canonical = json.dumps([kind, content], sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def text_of(data: BaseModel) -> str:
    """The searchable text of an item: its string values in field order (custom fields too)."""
    parts: list[str] = []
    for value in data.model_dump(exclude_none=True).values():
        if isinstance(value, str) and value.strip():
            parts.append(value.strip())
        elif isinstance(value, list):
            parts.extend(str(v) for v in value if str(v).strip())
        elif isinstance(value, int | float) and not isinstance(value, bool):
            continue  # numbers (confidence, counts) are not search terms
    return " — ".join(parts)
