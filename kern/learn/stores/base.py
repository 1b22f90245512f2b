"""What every store shares: the protocol, scoping, rows, flows and extraction hooks.

A built-in store is a small subclass that says *which* rows it keeps (kind, scope, schema),
how to render them for the model, and which operations extraction and tools may perform.
Its hooks are pure: data in, recall views and write operations out; where a hook needs stored
data it is a flow (``kern.learn.backend``) that asks for it, and the machine's backend answers.
The direct API (``lm.user_memory.add``) is async methods over the backend (``aadd``) with sync
twins by ``syncify``. List stores live in ``kern.learn.stores.listing``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Generic, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel

from kern.context import DEFAULT_USER_ID, RunContext
from kern.db.base import (
    LearningFilter,
    LearningRecord,
    LearningStatus,
    Update,
    WriteOp,
)
from kern.errors import ConfigError, NotFoundError
from kern.learn.backend import Apply, Flow, Get, LearningBackend, Now, Read
from kern.learn.config import LearningMode, StoreConfig
from kern.learn.items import Item, content_hash, new_id, text_of
from kern.learn.prompts import data_block, proposal_reply
from kern.learn.timeline import is_current, time_scope
from kern.limits import check_content, check_id
from kern.tools import Tool

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

    ``recall`` and ``process`` may be plain functions, coroutines or flows (generators
    yielding ``kern.learn.backend`` requests); kern dispatches once.
    """

    @property
    def name(self) -> str: ...

    @property
    def mode(self) -> LearningMode: ...

    @property
    def schema(self) -> type[BaseModel]: ...

    def recall(self, ctx: RunContext) -> Recalled | Awaitable[Recalled] | Flow[Recalled]:
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
    #: The answer refers to stored items by number and dates them: the call then carries the
    #: rules for numbered, dated items (``kern.learn.prompts.DATED_ITEM_RULES``).
    dated_items: bool = False


class Store(Generic[S]):
    """Base of the built-in stores: configuration, scope, rows, flows and tools."""

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
        self._backend: LearningBackend | None = None

    # -------------------------------------------------------------- the service

    def use(self, backend: LearningBackend) -> None:
        """Give the store the backend its direct API and tools run through (its machine's)."""
        if self._backend is not None and self._backend is not backend:
            raise ConfigError(f"the {self.name} store already belongs to another LearningMachine")
        self._backend = backend

    @property
    def backend(self) -> LearningBackend:
        if self._backend is None:
            raise ConfigError(f"the {self.name} store is not part of a LearningMachine yet")
        return self._backend

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

    # -------------------------------------------------------------- rows (pure)

    def _context(self, user_id: str | None, session_id: str | None = None) -> RunContext:
        """A context for direct API calls made outside any run; the ids are checked here, at
        the edge (``kern.limits.check_id``: an empty or unstorable id is refused)."""
        return RunContext(
            run_id="",
            session_id="" if session_id is None else check_id(session_id, "session_id"),
            user_id=DEFAULT_USER_ID if user_id is None else check_id(user_id, "user_id"),
            agent_id=self.backend.agent_id,
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

    def _update(
        self,
        current: LearningRecord | Item[Any],
        data: BaseModel,
        metadata: dict[str, Any] | None = None,
    ) -> Update:
        """New content for ``current``, a compare-and-swap on its version (the backend adds
        the embedding)."""
        content = check_content(data.model_dump(mode="json"))
        return Update(
            id=current.id,
            content=content,
            text=text_of(data),
            content_hash=content_hash(current.kind, content),
            expected_version=current.version,
            metadata=metadata,
        )

    @staticmethod
    def _apply(ctx: RunContext, ops: Sequence[WriteOp], actor: str) -> Flow[list[LearningRecord]]:
        # A tool's write is the turn's user's: the shared-namespace policy applies to it.
        turn_of = ctx.user_id if actor == "tool" else None
        saved = yield Apply(ops, actor, ctx.run_id or None, turn_of)
        return saved  # type: ignore[no-any-return]

    def _owned(self, ctx: RunContext, item_id: str) -> Flow[LearningRecord]:
        """The active row ``item_id`` if this run may see it; the same error whether it does
        not exist or belongs to someone else, so ids of other users' data leak nothing."""
        record = yield Get(item_id)
        if (
            record is None
            or record.store != self.name
            or record.scope != self.scope(ctx)
            or record.status != "active"
        ):
            raise NotFoundError(f"No {self.name} item with id {item_id!r}.")
        return record  # type: ignore[no-any-return]

    def _change(
        self,
        ctx: RunContext,
        item_id: str,
        op: Callable[[LearningRecord], WriteOp],
        actor: str,
    ) -> Flow[LearningRecord]:
        """Apply ``op(row)`` to the row ``item_id`` this run may see; returns the written row.
        Every change of one item by id (update, supersede, close, delete) goes through here."""
        current = yield from self._owned(ctx, item_id)
        (saved,) = yield from self._apply(ctx, [op(current)], actor)
        return saved

    def _list(
        self,
        where: LearningFilter,
        limit: int,
        offset: int = 0,
        status: LearningStatus = "active",
        *,
        newest_first: bool = True,
        **time: Any,
    ) -> Flow[list[Item[S]]]:
        """Rows of ``where``: for status ``active``, those of the time asked (``time_scope``),
        the ones that no longer held then marked ``past``; any other status whatever its time."""
        at = None
        if status == "active":
            scope = time_scope((yield Now()), **time)
            where, at = scope.where(where), scope.at
        records = yield Read(where, limit=limit, offset=offset, newest_first=newest_first)
        return [self._item(r, past=at is not None and not is_current(r, at)) for r in records]

    def _proposed(self, ctx: RunContext, limit: int, **read: Any) -> Flow[list[Item[S]]]:
        """This session's pending proposals, in propose mode (recall shows them apart)."""
        if self.mode is not LearningMode.PROPOSE:
            return []
        where = self._where(ctx, kinds=self.kinds, statuses=("proposed",))
        items = yield from self._list(where, limit, status="proposed", **read)
        return [i for i in items if i.session_id == ctx.session_id]

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

    # -------------------------------------------------------------- protocol defaults

    def recall(self, ctx: RunContext) -> Flow[Recalled]:
        raise NotImplementedError

    def build_context(self, recalled: Recalled) -> str:
        raise NotImplementedError

    def get_tools(self, ctx: RunContext) -> list[Tool]:
        return []

    def _pending_block(self, rows: Iterable[dict[str, Any]]) -> str:
        """This session's proposals, apart from what is known: they are not saved yet."""
        return data_block(
            f"{self.name}_pending_proposals",
            "Proposed in this session, NOT saved yet: awaiting the user's confirmation.",
            rows,
        )

    def describe(self, description: str) -> str:
        """A tool description (or extraction guidance) with the store's configured
        ``instructions`` appended."""
        extra = self.config.instructions
        return f"{description} {extra}" if extra else description

    def process(self, ctx: RunContext, turn: Turn) -> None:
        """Built-in stores learn in their machine's combined extraction call, not here."""
        raise ConfigError(
            f"the {self.name} store learns through its LearningMachine's extraction job"
        )

    # -------------------------------------------------------------- tools

    def _tool(
        self,
        flow: Callable[[RunContext, Any], Flow[Any]],
        *,
        name: str,
        description: str,
        arguments: type[BaseModel],
    ) -> Tool:
        """A tool whose logic is ``flow(ctx, arguments)``, driven by the backend."""

        async def call(ctx: RunContext, data: BaseModel) -> Any:
            return await self.backend.run(flow(ctx, data))

        return Tool.for_model(call, name=name, description=description, arguments=arguments)

    def _save_tool(
        self,
        ops: Callable[[RunContext, BaseModel, LearningStatus], list[WriteOp]],
        *,
        proposing: bool,
        name: str,
        description: str,
        arguments: type[BaseModel],
        saved: Callable[[list[LearningRecord], BaseModel], str],
    ) -> Tool:
        """The add / propose tool of every store, in one place: ``ops`` builds the rows
        (status ``proposed`` when proposing); a proposal's reply says it is NOT saved yet."""

        def save(ctx: RunContext, data: BaseModel) -> Flow[str]:
            writes = ops(ctx, data, "proposed" if proposing else "active")
            if not writes:
                return "Nothing to change: pass at least one field."
            records = yield from self._apply(ctx, writes, "tool")
            return proposal_reply([r.id for r in records]) if proposing else saved(records, data)

        return self._tool(save, name=name, description=description, arguments=arguments)

    # -------------------------------------------------------------- extraction hooks

    def extraction_view(self, ctx: RunContext, turn: Turn) -> Flow[ExtractionView | None]:
        """This store's part of the combined extraction call (``None`` to sit it out)."""
        return None
        yield  # a flow that asks for nothing

    def extraction_writes(
        self, value: Any, view: ExtractionView, ctx: RunContext
    ) -> Flow[list[WriteOp]]:
        """Turn the validated answer for ``view.key`` into write operations."""
        return []
        yield  # a flow that asks for nothing
