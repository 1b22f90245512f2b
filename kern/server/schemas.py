"""The API's request and response models.

Item models are built per store from the store's own schemas (custom fields included), so
the OpenAPI document describes exactly what each store holds and accepts: a custom schema
field appears in the item, create and patch models with no other code.
"""

from __future__ import annotations

import functools
import operator
from datetime import datetime
from typing import Annotated, Any, Literal, Optional, TypeVar

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field, create_model

from kern.db.base import JobRecord
from kern.db.userdata import UtcDatetime
from kern.learn.items import Item
from kern.learn.turn import TurnLearningState
from kern.server.access import StoreAccess
from kern.server.auth import Principal

__all__ = [
    "AnyItem",
    "ErrorBody",
    "ForgetResult",
    "HistoryEvent",
    "ItemBase",
    "JobInfo",
    "Me",
    "ProfileFieldInfo",
    "RecalledItem",
    "RunLearning",
    "RunRequest",
    "RunResponse",
    "SearchResults",
    "SessionInfo",
    "StoreInfo",
    "StoreModels",
    "UserInfo",
    "item_out",
    "job_out",
    "profile_fields",
    "short",
]

T = TypeVar("T", bound="ItemBase")

Status = Literal["active", "proposed", "superseded", "deleted", "rejected"]
#: Ids (users, sessions, items): printable and bounded, so a megabyte id or one with control
#: characters (a NUL, a newline that would forge a log line) is a 422, never a query.
ID_PATTERN = r"^[^\x00-\x1f\x7f]+$"
Id = Annotated[str, Field(min_length=1, max_length=256, pattern=ID_PATTERN)]
PathId = Annotated[str, Path(min_length=1, max_length=256, pattern=ID_PATTERN)]


class ErrorBody(BaseModel):
    detail: str | list[Any]
    error: str | None = None


class ItemBase(BaseModel):
    """A stored learning: ``data`` is its typed content, ``content`` its searchable text."""

    id: str
    store: str
    kind: str
    content: str
    status: str
    version: int
    user_id: str | None
    session_id: str | None
    namespace: str | None
    run_id: str | None
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    score: float | None = Field(None, description="Search relevance (searches only)")


class AnyItem(ItemBase):
    data: dict[str, Any]


def item_out(item: Item[Any], model: type[T], *, viewer: Principal | None = None) -> T:
    """The API form of an item. For a user token, an item of another user (a shared
    namespace item) keeps its content but not who, in which session or run, produced it."""
    data = item.data.model_dump(mode="json")
    foreign = viewer is not None and not viewer.is_admin and item.user_id != viewer.user_id
    return model.model_validate(
        {
            "id": item.id,
            "store": item.store,
            "kind": item.kind,
            "content": item.content,
            "status": item.status,
            "version": item.version,
            "user_id": None if foreign else item.user_id,
            "session_id": None if foreign else item.session_id,
            "namespace": item.namespace,
            "run_id": None if foreign else item.run_id,
            "metadata": item.metadata,
            "created_at": item.created_at,
            "updated_at": item.updated_at,
            "score": item.score,
            "data": data,
        }
    )


class HistoryEvent(BaseModel):
    """One change of an item: what it was before, what it became, and what caused it."""

    seq: int
    learning_id: str
    store: str
    action: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    run_id: str | None
    actor: str | None
    created_at: datetime


class ProfileFieldInfo(BaseModel):
    """A profile schema field as a form shows it (custom fields included)."""

    name: str
    label: str = Field(description="The field's title, else its name in words")
    description: str | None
    type: str = Field(description="JSON-schema type of a value: string, integer, number, …")
    choices: list[Any] | None = Field(None, description="The allowed values, if a fixed set")


def profile_fields(schema: type[BaseModel]) -> list[ProfileFieldInfo]:
    """The labels, help texts and value types of a profile schema's fields, in its order."""
    properties = schema.model_json_schema().get("properties", {})
    described = []
    for name, info in schema.model_fields.items():
        spec = properties.get(name, {})
        # ``X | None`` is an anyOf with a null branch: the value's own type is the other one.
        branches = [b for b in spec.get("anyOf", [spec]) if b.get("type") != "null"]
        branch = branches[0] if len(branches) == 1 else {}
        described.append(
            ProfileFieldInfo(
                name=name,
                label=info.title or name.replace("_", " ").capitalize(),
                description=info.description,
                type=str(branch.get("type", "string")),
                choices=branch.get("enum"),
            )
        )
    return described


class StoreInfo(BaseModel):
    name: str
    kinds: list[str]
    mode: str
    namespace: str | None
    shared: bool = Field(description="Rows are shared between users (a namespace)")
    per_session: bool
    writable: bool = Field(description="Items can be created/changed through this API")
    schemas: dict[str, dict[str, Any]] = Field(description="JSON schema of each kind's data")


class Me(BaseModel):
    role: Literal["admin", "user"]
    user_id: str | None


class UserInfo(BaseModel):
    user_id: str


class SessionInfo(BaseModel):
    session_id: str
    agent_id: str | None
    created_at: datetime
    updated_at: datetime
    message_count: int = Field(0, description="User and assistant messages (tool calls aside)")
    preview: str | None = Field(None, description="The session's first user message, shortened")


class JobInfo(BaseModel):
    """An extraction job: one turn to learn from. ``error`` is the last failure, shortened."""

    id: str
    kind: str
    status: str
    user_id: str | None
    session_id: str | None
    run_id: str | None
    attempts: int
    max_attempts: int
    error: str | None
    turn: str | None = Field(None, description="The user's message of the turn, shortened")
    created_at: datetime | None
    updated_at: datetime | None
    available_at: datetime | None = Field(None, description="When a pending job may run next")


#: Characters of an error or a message preview shown in lists; the full text stays stored.
SHORT = 240


def short(text: str | None, limit: int = SHORT) -> str | None:
    """``text`` on one line and at most ``limit`` characters (an ellipsis marks the cut)."""
    if text is None:
        return None
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


def job_out(job: JobRecord) -> JobInfo:
    user_message = job.payload.get("input") or job.payload.get("user")
    return JobInfo(
        id=job.id,
        kind=job.kind,
        status=job.status,
        user_id=job.user_id,
        session_id=job.session_id,
        run_id=job.run_id,
        attempts=job.attempts,
        max_attempts=job.max_attempts,
        error=short(job.error),
        turn=short(str(user_message), 120) if user_message else None,
        created_at=job.created_at,
        updated_at=job.updated_at,
        available_at=job.available_at,
    )


class SearchResults(BaseModel):
    query: str
    results: dict[str, list[AnyItem]] = Field(description="Best first, by store")


class ForgetResult(BaseModel):
    user_id: str
    rows_removed: int


class RunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message: str = Field(
        min_length=1,
        description="At most kern.limits.MAX_MESSAGE_CHARS characters (413 above)",
    )
    session_id: Id | None = Field(
        None, description="Continue this session; a new one is started when omitted"
    )
    stream: bool = Field(False, description="Answer as text/event-stream events")
    metadata: dict[str, Any] = Field(default_factory=dict)


class RecalledItem(BaseModel):
    """One learning put in front of the model for an answer, and why it was chosen."""

    id: str
    store: str
    kind: str
    content: str
    score: float | None = Field(description="Search relevance, when a search chose it")
    reason: str = Field(description="Why it was recalled, in words")


class RunLearning(BaseModel):
    """What became of the turn's learning when the answer was sent."""

    job_id: str = Field(description="The extraction job (listed under /users/{user_id}/jobs)")
    state: TurnLearningState = Field(
        description="queued: it runs in the background (see the job); done or failed: it ran "
        "before the answer was sent"
    )
    error: str | None = Field(None, description="Why the extraction failed, in one line")


class RunResponse(BaseModel):
    run_id: str
    session_id: str
    user_id: str
    content: str | None
    recalled: str = Field(description="The learned context the model saw for this answer")
    recalled_items: list[RecalledItem] = Field(
        default_factory=list, description="The learnings in that context, store by store"
    )
    learning: RunLearning | None = Field(
        None, description="The turn's extraction job; null when nothing is learned from runs"
    )
    metrics: dict[str, float | int]
    messages: list[dict[str, Any]]


# --------------------------------------------------------------------------- per store


class StoreModels:
    """The item, page, create and patch models of one store."""

    def __init__(self, access: StoreAccess) -> None:
        store = access.store
        prefix = "".join(part.capitalize() for part in access.name.split("_"))
        schemas = {kind: store.schema_for(kind) for kind in access.kinds}
        data_type: Any = functools.reduce(operator.or_, dict.fromkeys(schemas.values()))
        self.item: type[ItemBase] = create_model(
            f"{prefix}Item", __base__=ItemBase, data=(data_type, ...)
        )
        self.page: type[BaseModel] = create_model(
            f"{prefix}Page",
            items=(list[self.item], ...),  # type: ignore[name-defined]
            total=(int | None, Field(description="All matching items (null for a search)")),
            limit=(int, ...),
            offset=(int, ...),
        )
        self.kind_type: Any = Literal[tuple(access.kinds)]
        #: The create and patch body types (``None``: the store is read-only here).
        self.create: Any = None
        self.patch: type[BaseModel] | None = None
        forbid = ConfigDict(extra="forbid")
        version: Any = (int | None, Field(None, description="Refuse (409) unless at this version"))
        metadata: Any = (dict[str, Any] | None, Field(None, description="Replaces the metadata"))
        if access.is_profile:
            # Only the schema's field names (custom ones included) can be set.
            names: Any = Literal[tuple(store.schema.model_fields)]
            self.create = create_model(
                f"{prefix}Create", __config__=forbid, field=(names, ...), value=(Any, ...)
            )
            self.patch = create_model(
                f"{prefix}Patch", __config__=forbid, value=(Any, ...), version=version
            )
        elif access.is_session_context:
            partial = _partial(store.schema, f"{prefix}Data")
            self.create = create_model(
                f"{prefix}Create", __config__=forbid, session_id=(Id, ...), data=(partial, ...)
            )
            self.patch = create_model(
                f"{prefix}Patch", __config__=forbid, data=(partial, ...), version=version
            )
        elif access.is_list:
            variants = []
            for kind, schema in schemas.items():
                name = prefix + (kind.capitalize() if len(schemas) > 1 else "") + "Create"
                # With several kinds "kind" is required (it tells the union apart).
                kind_field: Any = (Literal[kind], ... if len(schemas) > 1 else kind)
                variants.append(
                    create_model(
                        name,
                        __config__=forbid,
                        kind=kind_field,
                        data=(schema, ...),
                        session_id=(Id | None, None),
                        metadata=(dict[str, Any], Field(default_factory=dict)),
                        created_at=(UtcDatetime | None, Field(None, description="Backdate")),
                    )
                )
            # One kind: a plain body. Several: a union told apart by "kind".
            union: Any = functools.reduce(operator.or_, variants)
            self.create = (
                variants[0] if len(variants) == 1 else Annotated[union, Field(discriminator="kind")]
            )
            partials: Any = functools.reduce(
                operator.or_,
                [
                    _partial(s, f"{prefix}{k.capitalize() if len(schemas) > 1 else ''}Changes")
                    for k, s in schemas.items()
                ],
            )
            self.patch = create_model(
                f"{prefix}Patch",
                __config__=forbid,
                data=(partials | None, Field(None, description="Fields to change")),
                metadata=metadata,
                version=version,
            )


def _partial(schema: type[BaseModel], name: str) -> type[BaseModel]:
    """``schema`` with every field optional and unset by default, for PATCH bodies (only the
    fields sent change; an explicit ``null`` sets ``null`` where the schema allows it)."""
    fields: dict[str, Any] = {
        key: (Optional[info.annotation], Field(None, description=info.description))  # noqa: UP045
        for key, info in schema.model_fields.items()
    }
    return create_model(name, __config__=ConfigDict(extra="forbid"), **fields)
