"""The learning machine: picks the stores, recalls before a run, learns after it.

One run, end to end: ``recall`` (wait briefly for the user's pending extraction, then each
store recalls within a token budget) → the agent answers → ``learn`` writes one durable job
and runs it in the background: one structured-output model call for every always-mode store,
validated and applied in one transaction with the job's completion.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Generic, TypeVar

from kern._sync import syncify
from kern.context import RunContext
from kern.db.base import (
    Db,
    JobRecord,
    LearningDb,
)
from kern.errors import ConfigError
from kern.learn.backend import LearningBackend
from kern.learn.config import LearningMode, StoreConfig
from kern.learn.extraction import extract
from kern.learn.jobs import JobRunner, new_job
from kern.learn.prompts import LEARNED_CONTEXT_HEADER
from kern.learn.stores import (
    DecisionLogStore,
    EntityMemoryStore,
    LearnedKnowledgeStore,
    SessionContextStore,
    UserMemoryStore,
    UserProfileStore,
)
from kern.learn.stores.base import LearningStore, Recalled, Store, Turn
from kern.learn.turn import TurnLearning
from kern.models.base import Model
from kern.search.embedders import Embedder
from kern.search.hybrid import resolve_embedder
from kern.tools import Tool

__all__ = ["LearningMachine", "RecallResult"]

StoreArg = bool | StoreConfig | Store[Any] | None
StoreT = TypeVar("StoreT", bound=Store[Any])


@dataclass(frozen=True, slots=True)
class RecallResult:
    """What the agent puts in front of the model for one run."""

    context: str
    tools: list[Tool] = field(default_factory=list)
    recalled: dict[str, Recalled] = field(default_factory=dict)


class _Builtin(Generic[StoreT]):
    """A built-in store as a typed attribute (``lm.user_profile`` is a ``UserProfileStore``
    for editors and mypy), set, not looked up through ``__getattr__``."""

    def __init__(self, store_class: type[StoreT]) -> None:
        self.store_class = store_class

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, machine: LearningMachine, owner: type) -> StoreT:
        store = machine.stores.get(self.name)
        if not isinstance(store, self.store_class):
            raise AttributeError(
                f"LearningMachine has no attribute {self.name!r} (enabled stores: "
                f"{', '.join(machine.stores)}; pass {self.name}=True to enable it)"
            )
        return store


class LearningMachine:
    """Learning Stores for an agent.

    Args:
        db: Where learnings live (default: the agent's db).
        model: The model for extraction (default: the agent's model).
        embedder: ``None`` (full-text recall), ``"local"`` (all-MiniLM-L6-v2, offline), or an
            ``Embedder``.
        namespace: Default sharing scope of entity memory, learned knowledge and the decision
            log: ``"global"``, ``"user"`` or a group name.
        user_profile, user_memory, session_context, entity_memory, learned_knowledge,
        decision_log: ``True``, a config, or a store instance to enable a store.
        custom_stores: Stores of your own implementing ``LearningStore``.
        context_budget: Upper bound, in tokens (≈ 4 characters each), of recalled context.
        consistency_timeout: Seconds a run waits for the user's pending extraction jobs
            before recalling, so turn N+1 sees what turn N taught.
        background: Run extraction in the background (default) or before ``run`` returns.
        run_jobs: Run extraction jobs in this process (default). ``False`` only enqueues
            them, for app servers whose jobs ``kern worker`` processes run (docs/scaling.md).
        job_lease: Seconds a claim on a job lasts unless renewed; a running job's claim is
            renewed every third of it, so only a job whose process died (or hung) is taken
            over by another, once its lease expires.
        job_retention: Seconds a finished job (it holds its turn's text) is kept before it is
            deleted; ``None`` keeps them all. Failed jobs are always kept, with their errors.
        shared_writes: What a user's turn (extraction, tools) may do in a shared namespace:
            ``"add"`` items (never change or remove another user's: ``kern.learn.policy``), or
            ``"propose"`` them: every shared item a turn writes waits for an admin or the app.
    """

    def __init__(
        self,
        *,
        db: Db | None = None,
        model: Model | None = None,
        embedder: Embedder | str | None = None,
        namespace: str = "global",
        user_profile: StoreArg = None,
        user_memory: StoreArg = None,
        session_context: StoreArg = None,
        entity_memory: StoreArg = None,
        learned_knowledge: StoreArg = None,
        decision_log: StoreArg = None,
        custom_stores: Sequence[LearningStore] = (),
        context_budget: int = 2000,
        consistency_timeout: float = 5.0,
        background: bool = True,
        run_jobs: bool = True,
        job_lease: float = 60.0,
        job_retention: float | None = 7 * 24 * 3600,
        agent_id: str | None = None,
        shared_writes: str = "add",
    ) -> None:
        if not run_jobs and not background:
            raise ConfigError(
                "background=False runs extraction before run() returns, and run_jobs=False "
                "leaves it to workers: choose one"
            )
        if not 0 < job_lease < math.inf:
            raise ConfigError(f"job_lease takes seconds (> 0), got {job_lease!r}")
        if job_retention is not None and not 0 <= job_retention < math.inf:
            raise ConfigError(f"job_retention takes seconds (>= 0) or None, got {job_retention!r}")
        if shared_writes not in ("add", "propose"):
            raise ConfigError(f"shared_writes takes 'add' or 'propose', got {shared_writes!r}")
        self.backend = LearningBackend(db, resolve_embedder(embedder), agent_id, shared_writes)
        self._model = model
        self.namespace = namespace
        self.context_budget = context_budget
        self.consistency_timeout = consistency_timeout
        self.jobs = JobRunner(
            lambda: self.db,
            self._run_job,
            lease=job_lease,
            retention=job_retention,
            background=background,
            run_jobs=run_jobs,
        )
        self.stores: dict[str, LearningStore] = {}
        args = (
            user_profile,
            user_memory,
            session_context,
            entity_memory,
            learned_knowledge,
            decision_log,
        )
        for (name, store_class), arg in zip(_BUILTINS.items(), args, strict=True):
            store = self._build_store(name, arg, store_class)
            if store is not None:
                self._add(store)
        for custom in custom_stores:
            if not isinstance(custom, LearningStore):
                raise ConfigError(f"{custom!r} does not implement the LearningStore protocol")
            self._add(custom)
        if not self.stores:
            raise ConfigError("a LearningMachine needs at least one store")
        from kern.learn.curator import Curator
        from kern.learn.proposals import Proposals

        self.proposals = Proposals(self)
        self.curator = Curator(self)

    @classmethod
    def default(cls) -> LearningMachine:
        """What ``learning=True`` means: profile, memories and session context, always mode."""
        return cls(user_profile=True, user_memory=True, session_context=True)

    def _build_store(
        self, name: str, arg: StoreArg, store_class: type[Store[Any]]
    ) -> Store[Any] | None:
        config_class = store_class.config_class
        if arg is None or arg is False:
            return None
        if arg is True:
            namespaced = "namespace" in config_class.model_fields
            config = config_class(namespace=self.namespace) if namespaced else config_class()
            return store_class(config)
        if isinstance(arg, StoreConfig):
            return store_class(arg)
        if isinstance(arg, store_class):
            return arg
        raise ConfigError(
            f"{name}= takes True, a {config_class.__name__} or a {store_class.__name__}, "
            f"got {type(arg).__name__}"
        )

    def _add(self, store: LearningStore) -> None:
        if store.name in self.stores:
            raise ConfigError(f"two stores are named {store.name!r}")
        if isinstance(store, Store):
            store.use(self.backend)
        if store.name not in _BUILTINS:
            # A custom store is an attribute too (``lm.todos``): set, not looked up through
            # ``__getattr__``, so the built-ins below stay typed for editors and mypy.
            if hasattr(self, store.name):
                raise ConfigError(
                    f"a store cannot be named {store.name!r}: LearningMachine uses it"
                )
            setattr(self, store.name, store)
        self.stores[store.name] = store

    # ------------------------------------------------------------------ the stores, typed

    user_profile = _Builtin(UserProfileStore)
    user_memory = _Builtin(UserMemoryStore)
    session_context = _Builtin(SessionContextStore)
    entity_memory = _Builtin(EntityMemoryStore)
    learned_knowledge = _Builtin(LearnedKnowledgeStore)
    decision_log = _Builtin(DecisionLogStore)

    # ------------------------------------------------------------------ wiring

    def attach(self, *, db: Db, model: Model, agent_id: str | None) -> None:
        """Fill in what the agent provides (db, model, agent id) where nothing was given."""
        self.backend.attach(db, agent_id)
        self._model = self._model or model

    @property
    def db(self) -> LearningDb:
        return self.backend.db

    @property
    def model(self) -> Model:
        if self._model is None:
            raise ConfigError("this LearningMachine has no model: pass model= or use an Agent")
        return self._model

    @property
    def embedder(self) -> Embedder | None:
        return self.backend.embedder

    @property
    def agent_id(self) -> str | None:
        return self.backend.agent_id

    @property
    def background(self) -> bool:
        return self.jobs.background

    @property
    def run_jobs(self) -> bool:
        return self.jobs.run_jobs

    @property
    def shared_writes(self) -> str:
        """What a user's turn may do in a shared namespace: ``"add"`` or ``"propose"``."""
        return self.backend.shared_writes

    @property
    def job_lease(self) -> float:
        return self.jobs.lease

    @job_lease.setter
    def job_lease(self, seconds: float) -> None:
        self.jobs.lease = seconds

    @property
    def job_retention(self) -> float | None:
        return self.jobs.retention

    # ------------------------------------------------------------------ recall

    async def recall(self, ctx: RunContext) -> RecallResult:
        """Everything the stores contribute to one run, within the context budget."""
        await self.await_for_jobs(ctx.user_id, timeout=self.consistency_timeout)
        recalled: dict[str, Recalled] = {}
        for name, store in self.stores.items():
            recalled[name] = await self.backend.call(store.recall, ctx)
        blocks = self._fit_budget(recalled)
        tools: list[Tool] = []
        for store in self.stores.values():
            tools.extend(store.get_tools(ctx))
        if any(s.mode is LearningMode.PROPOSE for s in self.stores.values()):
            tools.append(self.proposals.confirm_tool())
        context = ""
        if blocks:
            context = LEARNED_CONTEXT_HEADER + "\n\n" + "\n\n".join(blocks)
        return RecallResult(context, tools, recalled)

    def _fit_budget(self, recalled: dict[str, Recalled]) -> list[str]:
        """Render blocks, dropping the least relevant items of the largest store until the
        rendered context fits ``context_budget`` (≈ 4 characters per token)."""
        items = {name: list(r.items) for name, r in recalled.items()}
        while True:
            blocks = [
                self.stores[name].build_context(replace(recalled[name], items=items[name]))
                for name in recalled
            ]
            blocks = [b for b in blocks if b]
            size = sum(len(b) for b in blocks) // 4
            largest = max(items, key=lambda n: len(items[n]), default=None)
            if size <= self.context_budget or largest is None or not items[largest]:
                return blocks
            items[largest].pop()

    # ------------------------------------------------------------------ learn

    def _extracting_stores(self) -> list[Store[Any]]:
        return [
            s
            for s in self.stores.values()
            if isinstance(s, Store) and s.mode is LearningMode.ALWAYS
        ]

    def _processing_stores(self) -> list[LearningStore]:
        """Custom always-mode stores that learn through their own ``process``."""
        return [
            s
            for s in self.stores.values()
            if not isinstance(s, Store) and s.mode is LearningMode.ALWAYS
        ]

    def extraction_job(self, ctx: RunContext, turn: Turn) -> JobRecord | None:
        """The extraction job of a finished turn, or ``None`` when no store learns by itself.

        The agent stores it with the turn's run in one transaction (``LearningDb.add_run(run,
        job=…)``), so a stored turn always has its job, then hands it to ``learn``.
        """
        if not self._extracting_stores() and not self._processing_stores():
            return None
        return new_job(ctx, turn)

    async def learn(
        self, ctx: RunContext, turn: Turn, *, enqueued: JobRecord | None = None
    ) -> TurnLearning | None:
        """After a run: run its extraction job (in the background). ``enqueued`` is the job
        already stored with the run; without it, the job is stored here first. Returns the
        job's live status (None when no store learns from turns)."""
        job = enqueued or self.extraction_job(ctx, turn)
        if job is None:
            return None
        return await self.jobs.submit(job, stored=enqueued is not None)

    async def _run_job(self, ctx: RunContext, turn: Turn, job: JobRecord) -> None:
        for store in self._processing_stores():
            await self.backend.call(store.process, ctx, turn)
        await extract(self.backend, self.model, ctx, turn, self._extracting_stores(), job=job)

    async def await_for_jobs(
        self, user_id: str | None = None, *, timeout: float | None = None
    ) -> bool:
        """Wait until ``user_id``'s (or everyone's) extraction jobs are finished, at most
        ``timeout`` seconds (default: ``consistency_timeout``). Returns whether they all
        finished."""
        wait = self.consistency_timeout if timeout is None else timeout
        return await self.jobs.wait(user_id, timeout=wait)

    async def aprocess_pending(self, *, limit: int | None = None) -> int:
        """Run every runnable job in the queue (left by crashed or exited processes)."""
        return await self.jobs.process_pending(limit=limit)

    async def resume_unfinished(self) -> None:
        """Once per process, on first use: pick up jobs an earlier process left behind."""
        await self.jobs.resume_unfinished()

    async def aclose(self) -> None:
        """Wait (bounded) for pending jobs, then close the model's and the embedder's
        connections. The database is left open: it was given to the machine and may be shared.
        Closing twice, or closing a model the agent closes too, is harmless."""
        await self.await_for_jobs()
        self.jobs.cancel_retries()  # durable: the next process or a worker retries them
        if self._model is not None:
            await self._model.aclose()
        close = getattr(self.embedder, "aclose", None)
        if close is not None:
            await close()

    wait_for_jobs = syncify(await_for_jobs)
    process_pending = syncify(aprocess_pending)
    close = syncify(aclose)


#: The built-in stores, in the order of ``LearningMachine``'s arguments (and its recall).
_BUILTINS: dict[str, type[Store[Any]]] = {
    name: attribute.store_class
    for name, attribute in vars(LearningMachine).items()
    if isinstance(attribute, _Builtin)
}


def resolve_learning(learning: object) -> LearningMachine | None:
    """Interpret ``Agent(learning=...)``."""
    if learning is None or learning is False:
        return None
    if learning is True:
        return LearningMachine.default()
    if isinstance(learning, LearningMachine):
        return learning
    raise ConfigError(
        f"learning= takes True, False or a LearningMachine, got {type(learning).__name__}"
    )
