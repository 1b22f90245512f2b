"""What every store shares: the protocol, scoping, rows and extraction hooks.

A built-in store is a small subclass that says *which* rows it keeps (kind, scope, schema),
how to render them for the model, and which operations extraction and tools may perform.
Reading, writing, history and proposals live here, once; list stores (memories, learnings,
decisions, entities) add their direct API, search and tools in ``kern.learn.stores.listing``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel

from kern.context import DEFAULT_USER_ID, RunContext
from kern.db.base import (
    Create,
    LearningDb,
    LearningFilter,
    LearningRecord,
    LearningStatus,
    Update,
    WriteOp,
)
from kern.errors import ConfigError, NotFoundError
from kern.learn.config import LearningMode, StoreConfig
from kern.learn.items import Item, content_hash, new_id, text_of
from kern.limits import check_content, check_id
from kern.tools import Tool

if TYPE_CHECKING:
    from kern.learn.machine import LearningMachine

__all__ = [
    "ExtractionView",
    "LearningStore",
    "Recalled",
    "Store",
    "Turn",
]

S = TypeVar("S", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class Turn:
    """One exchange, as extraction sees it; ``date`` is when it happened (relative dates in it
    are resolved against it)."""

    user: str
    assistant: str
    date: datetime | None = None


@dataclass(frozen=True, slots=True)
class Recalled:
    """What a store recalled for a run: items to show, and pending proposals of this session."""

    items: Sequence[Item[Any]] = ()
    pending: Sequence[Item[Any]] = ()
    #: The instant recalled for (its "now"): items that no longer held then render as past.
    at: datetime | None = None


@runtime_checkable
class LearningStore(Protocol):
    """The protocol every store implements, built-in or custom.

    ``recall`` and ``process`` may be sync or async; kern dispatches once.
    """

    @property
    def name(self) -> str: ...

    @property
    def mode(self) -> LearningMode: ...

    @property
    def schema(self) -> type[BaseModel]: ...

    def recall(self, ctx: RunContext) -> Recalled:
        """What is relevant to this run (``ctx.input``), before the model is called."""
        ...

    def build_context(self, recalled: Recalled) -> str:
        """Render recalled data as a delimited data block ('' for nothing)."""
        ...

    def get_tools(self, ctx: RunContext) -> list[Tool]:
        """Tools the agent gets for this run (agentic and propose modes)."""
        ...

    def process(self, ctx: RunContext, turn: Turn) -> Any:
        """Learn from a finished turn (always mode), for stores outside the combined call."""
        ...


@dataclass(frozen=True, slots=True)
class ExtractionView:
    """A store's part of the combined extraction call.

    ``output`` is the pydantic type of the store's field in the structured answer; ``data`` is
    what is stored now, with short local numbers; ``local_ids`` maps them back to row ids.
    """

    key: str
    output: Any
    guidance: str
    data: str
    local_ids: dict[int, str] = field(default_factory=dict)
    #: The date of the turn (what relative dates in the answer were resolved against).
    at: datetime | None = None


class Store(Generic[S]):
    """Base of the built-in stores: configuration, binding, scope, rows and history."""

    name: ClassVar[str]
    config_class: ClassVar[type[StoreConfig]]
    #: The row kind this store writes by default.
    kind: ClassVar[str]

    def __init__(self, config: StoreConfig | None = None) -> None:
        config = config or self.config_class()
        if not isinstance(config, self.config_class):
            raise ConfigError(
                f"{self.name} takes a {self.config_class.__name__}, got {type(config).__name__}"
            )
        self.config = config
        self._machine: LearningMachine | None = None

    # -------------------------------------------------------------- wiring

    def bind(self, machine: LearningMachine) -> None:
        if self._machine is not None and self._machine is not machine:
            raise ConfigError(f"the {self.name} store already belongs to another LearningMachine")
        self._machine = machine

    @property
    def machine(self) -> LearningMachine:
        if self._machine is None:
            raise ConfigError(f"the {self.name} store is not part of a LearningMachine yet")
        return self._machine

    @property
    def db(self) -> LearningDb:
        return self.machine.db

    @property
    def mode(self) -> LearningMode:
        return self.config.mode

    @property
    def schema(self) -> type[S]:
        return self.config.schema  # type: ignore[return-value]

    @property
    def namespace(self) -> str | None:
        return getattr(self.config, "namespace", None)

    def scope(self, ctx: RunContext) -> str:
        """The access key of this store's rows for a run; every read and write uses it."""
        raise NotImplementedError

    # -------------------------------------------------------------- rows

    def _context(self, user_id: str | None, session_id: str | None = None) -> RunContext:
        """A context for direct API calls made outside any run; the ids are checked here, at
        the edge (``kern.limits.check_id``: an empty or unstorable id is refused)."""
        return RunContext(
            run_id="",
            session_id="" if session_id is None else check_id(session_id, "session_id"),
            user_id=DEFAULT_USER_ID if user_id is None else check_id(user_id, "user_id"),
            agent_id=self.machine.agent_id,
        )

    def _where(self, ctx: RunContext, **extra: Any) -> LearningFilter:
        return LearningFilter(store=self.name, scopes=[self.scope(ctx)], **extra)

    def _record(
        self,
        ctx: RunContext,
        data: BaseModel,
        *,
        kind: str | None = None,
        key: str | None = None,
        status: LearningStatus = "active",
        created_at: datetime | None = None,
        metadata: dict[str, Any] | None = None,
        valid_from: datetime | None = None,
        valid_to: datetime | None = None,
        expires_at: datetime | None = None,
        pinned: bool = False,
    ) -> LearningRecord:
        kind = kind or self.kind
        content = check_content(data.model_dump(mode="json"))
        return LearningRecord(
            id=new_id(),
            store=self.name,
            kind=kind,
            scope=self.scope(ctx),
            content=content,
            text=text_of(data),
            user_id=ctx.user_id,
            session_id=ctx.session_id or None,
            agent_id=ctx.agent_id,
            namespace=self.namespace,
            key=key,
            content_hash=content_hash(kind, content),
            status=status,
            run_id=ctx.run_id or None,
            created_at=created_at,
            metadata=dict(metadata or {}),
            valid_from=valid_from,
            valid_to=valid_to,
            expires_at=expires_at,
            pinned=pinned,
        )

    def _create(self, record: LearningRecord) -> Create:
        return Create(record, embedding=self.machine.embed_text(record.text))

    def _update(
        self, current: LearningRecord, data: BaseModel, metadata: dict[str, Any] | None = None
    ) -> Update:
        content = check_content(data.model_dump(mode="json"))
        text = text_of(data)
        return Update(
            id=current.id,
            content=content,
            text=text,
            content_hash=content_hash(current.kind, content),
            expected_version=current.version,
            metadata=metadata,
            embedding=self.machine.embed_text(text),
        )

    def _apply(self, ops: Sequence[WriteOp], ctx: RunContext, actor: str) -> list[LearningRecord]:
        # A tool's write is the turn's user's: the shared-namespace policy applies to it.
        turn_of = ctx.user_id if actor == "tool" else None
        return self.machine.apply_writes(
            ops, run_id=ctx.run_id or None, actor=actor, turn_of=turn_of
        )

    def _owned(
        self, ctx: RunContext, item_id: str, statuses: Sequence[LearningStatus] = ("active",)
    ) -> LearningRecord:
        """The row ``item_id`` if this run may see it; the same error whether it does not
        exist or belongs to someone else, so ids of other users' data leak nothing."""
        record = self.db.get_learning(item_id)
        if (
            record is None
            or record.store != self.name
            or record.scope != self.scope(ctx)
            or record.status not in statuses
        ):
            raise NotFoundError(f"No {self.name} item with id {item_id!r}.")
        return record

    def schema_for(self, kind: str) -> type[BaseModel]:
        """The schema of rows of ``kind`` (stores with several kinds override this)."""
        return self.schema

    @property
    def kinds(self) -> list[str]:
        return [self.kind]

    def _item(
        self, record: LearningRecord, score: float | None = None, *, past: bool = False
    ) -> Item[S]:
        schema = self.schema_for(record.kind)
        return Item.from_record(record, schema, score=score, past=past)  # type: ignore[arg-type]

    def now(self) -> datetime:
        """The database's "now", which validity and expiry are judged against."""
        return self.db.now()

    # -------------------------------------------------------------- protocol defaults

    def recall(self, ctx: RunContext) -> Recalled:
        raise NotImplementedError

    def build_context(self, recalled: Recalled) -> str:
        raise NotImplementedError

    def get_tools(self, ctx: RunContext) -> list[Tool]:
        return []

    def describe(self, description: str) -> str:
        """A tool description with the store's configured ``instructions`` appended."""
        extra = self.config.instructions
        return f"{description} {extra}" if extra else description

    async def process(self, ctx: RunContext, turn: Turn) -> None:
        """Run extraction for this store alone (the machine batches always-mode stores)."""
        await self.machine.extract(ctx, turn, stores=[self])

    # -------------------------------------------------------------- extraction hooks

    def extraction_view(self, ctx: RunContext, turn: Turn) -> ExtractionView | None:
        """This store's part of the combined extraction call (``None`` to sit it out)."""
        return None

    def extraction_writes(self, value: Any, view: ExtractionView, ctx: RunContext) -> list[WriteOp]:
        """Turn the validated answer for ``view.key`` into write operations."""
        return []
