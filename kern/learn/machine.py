"""The learning machine: picks the stores, recalls before a run, learns after it.

One run, end to end: ``recall`` (wait briefly for the user's pending extraction, then each
store recalls within a token budget) → the agent answers → ``learn`` writes one durable job
and runs it in the background: one structured-output model call for every always-mode store,
validated and applied in one transaction with the job's completion.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from pydantic import BaseModel, ValidationError, create_model

from kern._sync import call_any, run_sync
from kern.context import RunContext
from kern.db.base import (
    Close,
    Db,
    JobRecord,
    LearningDb,
    LearningFilter,
    LearningRecord,
    SearchHit,
    SetStatus,
    Supersede,
    Update,
    WriteOp,
)
from kern.errors import ConfigError, JobLostError, KernError, ModelOutputError, short_error
from kern.learn.config import (
    DecisionLogConfig,
    EntityMemoryConfig,
    LearnedKnowledgeConfig,
    LearningMode,
    SessionContextConfig,
    StoreConfig,
    UserMemoryConfig,
    UserProfileConfig,
)
from kern.learn.items import new_id
from kern.learn.policy import allowed_turn_writes, check_turn_writes, shared_as_proposals
from kern.learn.prompts import EXTRACTION_SYSTEM, LEARNED_CONTEXT_HEADER, extraction_prompt
from kern.learn.stores.base import ExtractionView, LearningStore, Recalled, Store, Turn
from kern.learn.turn import TurnLearning
from kern.models.base import AssistantMessage, Model, ModelRequest, OutputSchema, UserMessage
from kern.search.embedders import Embedder
from kern.search.hybrid import embed_sync, hybrid_search, resolve_embedder
from kern.tools import Tool

__all__ = ["LearningMachine", "RecallResult"]

log = logging.getLogger("kern.learn")

#: Characters of a failed job's error kept (in the queue, the log line and the run's output).
JOB_ERROR_LIMIT = 500

StoreArg = bool | StoreConfig | Store[Any] | None

EXTRACT_JOB = "extract"


@dataclass(frozen=True, slots=True)
class RecallResult:
    """What the agent puts in front of the model for one run."""

    context: str
    tools: list[Tool] = field(default_factory=list)
    recalled: dict[str, Recalled] = field(default_factory=dict)


#: Seconds between two deletions of finished jobs by one LearningMachine.
_CLEANUP_INTERVAL = 3600.0


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
        from kern.learn.stores import (
            DecisionLogStore,
            EntityMemoryStore,
            LearnedKnowledgeStore,
            SessionContextStore,
            UserMemoryStore,
            UserProfileStore,
        )

        self._db = db
        self._model = model
        self.embedder = resolve_embedder(embedder)
        self.namespace = namespace
        self.context_budget = context_budget
        self.consistency_timeout = consistency_timeout
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
        self.shared_writes = shared_writes
        self.background = background
        self.run_jobs = run_jobs
        self.job_lease = job_lease
        self.job_retention = job_retention
        self._next_cleanup = 0.0  # time.monotonic() of the next deletion of finished jobs
        self.agent_id = agent_id
        self.stores: dict[str, LearningStore] = {}
        builtins: list[tuple[str, StoreArg, type[Store[Any]], type[StoreConfig]]] = [
            ("user_profile", user_profile, UserProfileStore, UserProfileConfig),
            ("user_memory", user_memory, UserMemoryStore, UserMemoryConfig),
            ("session_context", session_context, SessionContextStore, SessionContextConfig),
            ("entity_memory", entity_memory, EntityMemoryStore, EntityMemoryConfig),
            ("learned_knowledge", learned_knowledge, LearnedKnowledgeStore, LearnedKnowledgeConfig),
            ("decision_log", decision_log, DecisionLogStore, DecisionLogConfig),
        ]
        for name, arg, store_class, config_class in builtins:
            store = self._build_store(name, arg, store_class, config_class)
            if store is not None:
                self._add(store)
        for custom in custom_stores:
            if not isinstance(custom, LearningStore):
                raise ConfigError(f"{custom!r} does not implement the LearningStore protocol")
            self._add(custom)
        if not self.stores:
            raise ConfigError("a LearningMachine needs at least one store")
        self._tasks: dict[str, set[asyncio.Task[Any]]] = {}
        # job id → the status a run's output carries, until this process has run the job.
        self._statuses: dict[str, TurnLearning] = {}
        self._retries: set[asyncio.Task[Any]] = set()  # failed jobs waiting out their backoff
        self._resumed = False
        from kern.learn.curator import Curator
        from kern.learn.proposals import Proposals

        self.proposals = Proposals(self)
        self.curator = Curator(self)

    @classmethod
    def default(cls) -> LearningMachine:
        """What ``learning=True`` means: profile, memories and session context, always mode."""
        return cls(user_profile=True, user_memory=True, session_context=True)

    def _build_store(
        self,
        name: str,
        arg: StoreArg,
        store_class: type[Store[Any]],
        config_class: type[StoreConfig],
    ) -> Store[Any] | None:
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
            store.bind(self)
        self.stores[store.name] = store

    def __getattr__(self, name: str) -> Any:
        # lm.user_memory, lm.entity_memory … for the stores that are enabled.
        stores = self.__dict__.get("stores", {})
        if name in stores:
            return stores[name]
        raise AttributeError(
            f"LearningMachine has no attribute {name!r}"
            + (f" (enabled stores: {', '.join(stores)})" if stores else "")
        )

    # ------------------------------------------------------------------ wiring

    def attach(self, *, db: Db, model: Model, agent_id: str | None) -> None:
        """Fill in what the agent provides (db, model, agent id) where nothing was given."""
        self._db = self._db or db
        self._model = self._model or model
        self.agent_id = self.agent_id or agent_id

    @property
    def db(self) -> LearningDb:
        if self._db is None:
            raise ConfigError("this LearningMachine has no db: pass db= or give it to an Agent")
        if not isinstance(self._db, LearningDb):
            raise ConfigError(f"{type(self._db).__name__} cannot store learnings")
        return self._db

    @property
    def model(self) -> Model:
        if self._model is None:
            raise ConfigError("this LearningMachine has no model: pass model= or use an Agent")
        return self._model

    def embed_text(self, text: str) -> bytes | None:
        if self.embedder is None or not text:
            return None
        return embed_sync(self.embedder, [text])[0].astype("float32").tobytes()

    def apply_writes(
        self,
        ops: Sequence[WriteOp],
        *,
        run_id: str | None,
        actor: str,
        turn_of: str | None = None,
        job: JobRecord | None = None,
        strict: bool = True,
    ) -> list[LearningRecord]:
        """The learning layer's one apply. ``turn_of`` is the user whose turn the writes come
        from (extraction, agentic and propose tools, a chat confirmation, MCP): the shared-
        namespace policy applies (``kern.learn.policy``), refusing with ``SharedWriteError``
        (``strict``) or dropping what it forbids with a warning (extraction: one forbidden
        operation must not fail the turn's learning). ``None``: the app's code or an admin."""
        ops = list(ops)
        if turn_of is not None:
            ids = [op.id for op in ops if isinstance(op, Update | SetStatus | Supersede | Close)]
            rows = (self.db.get_learning(i) for i in dict.fromkeys(ids))
            current = {r.id: r for r in rows if r is not None}
            if strict:
                check_turn_writes(ops, current, turn_of)
            else:
                ops, refused = allowed_turn_writes(ops, current, turn_of)
                for reason in refused:
                    log.warning("%s write of %s's turn not applied: %s", actor, turn_of, reason)
            if self.shared_writes == "propose":
                ops = shared_as_proposals(ops)
        if not ops and job is None:
            return []
        return self.db.apply(ops, run_id=run_id, actor=actor, job=job)

    def search(self, query: str, where: LearningFilter, *, limit: int) -> list[SearchHit]:
        """Hybrid search used by every store's recall, search API and tools."""
        return hybrid_search(self.db, self.embedder, query, where, limit=limit)

    # ------------------------------------------------------------------ recall

    async def recall(self, ctx: RunContext) -> RecallResult:
        """Everything the stores contribute to one run, within the context budget."""
        await self.wait_for_jobs(ctx.user_id, timeout=self.consistency_timeout)
        recalled: dict[str, Recalled] = {}
        for name, store in self.stores.items():
            recalled[name] = await call_any(store.recall, ctx)
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
        return JobRecord(
            id=new_id(),
            kind=EXTRACT_JOB,
            payload={"user": turn.user, "assistant": turn.assistant, "input": ctx.input},
            user_id=ctx.user_id,
            session_id=ctx.session_id,
            agent_id=ctx.agent_id,
            run_id=ctx.run_id,
        )

    async def learn(
        self, ctx: RunContext, turn: Turn, *, enqueued: JobRecord | None = None
    ) -> TurnLearning | None:
        """After a run: run its extraction job (in the background). ``enqueued`` is the job
        already stored with the run; without it, the job is stored here first. Returns the
        job's live status (None when no store learns from turns)."""
        job = enqueued or self.extraction_job(ctx, turn)
        if job is None:
            return None
        if enqueued is None:
            await asyncio.to_thread(self.db.enqueue_job, job)
        status = TurnLearning(job.id)
        if not self.run_jobs:
            return status  # a worker claims it
        self._statuses[job.id] = status
        if not self.background:
            await self._run_claimed(job.id)
            return status
        task = asyncio.create_task(self._run_claimed(job.id), name=f"kern-extract-{job.id}")
        tasks = self._tasks.setdefault(ctx.user_id, set())
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return status

    async def wait_for_jobs(
        self, user_id: str | None = None, *, timeout: float | None = None
    ) -> bool:
        """Wait until ``user_id``'s (or everyone's) extraction jobs are finished, at most
        ``timeout`` seconds. Returns whether they all finished."""
        deadline = time.monotonic() + (self.consistency_timeout if timeout is None else timeout)
        loop = asyncio.get_running_loop()
        mine = [
            t
            for uid, tasks in self._tasks.items()
            if user_id is None or uid == user_id
            for t in tasks
            if t.get_loop() is loop
        ]
        if mine:
            await asyncio.wait(mine, timeout=max(0.0, deadline - time.monotonic()))
        # Jobs of other processes (or other event loops): poll the queue. A job backing off
        # after a failure is not waited for: it runs later (``_retry_later``), and waiting for
        # it would stall every turn of its user for the whole timeout.
        while await asyncio.to_thread(
            self.db.count_unfinished_jobs, user_id=user_id, due_only=True
        ):
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    async def aclose(self) -> None:
        """Wait (bounded) for pending jobs, then close the model's and the embedder's
        connections. The database is left open: it was given to the machine and may be shared.
        Closing twice, or closing a model the agent closes too, is harmless."""
        await self.wait_for_jobs()
        for task in list(self._retries):  # durable: the next process or a worker retries
            with contextlib.suppress(RuntimeError):  # its loop is already closed
                task.get_loop().call_soon_threadsafe(task.cancel)
        if self._model is not None:
            await self._model.aclose()
        close = getattr(self.embedder, "aclose", None)
        if close is not None:
            await close()

    def close(self) -> None:
        """Synchronous ``aclose``: e.g. at the end of a script."""
        run_sync(self.aclose())

    def wait(self, user_id: str | None = None, *, timeout: float | None = None) -> bool:
        """Synchronous ``wait_for_jobs``: e.g. at the end of a script."""
        return run_sync(self.wait_for_jobs(user_id, timeout=timeout))

    async def process_pending_jobs(self, *, limit: int | None = None) -> int:
        """Run every runnable job in the queue (left by crashed or exited processes)."""
        done = 0
        while limit is None or done < limit:
            job = await asyncio.to_thread(self.db.claim_job, lease_seconds=self.job_lease)
            if job is None:
                break
            await self._execute(job)
            done += 1
        return done

    def process_pending(self, *, limit: int | None = None) -> int:
        """Synchronous ``process_pending_jobs``."""
        return run_sync(self.process_pending_jobs(limit=limit))

    async def resume_unfinished(self) -> None:
        """Once per process, on first use: pick up jobs an earlier process left behind."""
        if self._resumed or not self.run_jobs:
            return
        self._resumed = True
        task = asyncio.create_task(self.process_pending_jobs(), name="kern-resume-jobs")
        self._tasks.setdefault("*", set()).add(task)
        task.add_done_callback(self._tasks["*"].discard)

    async def _run_claimed(self, job_id: str) -> None:
        try:
            job = await asyncio.to_thread(
                self.db.claim_job, job_id=job_id, lease_seconds=self.job_lease
            )
        except KernError as exc:  # the job stays pending; the next process picks it up
            log.error("could not claim extraction job %s: %s", job_id, exc)
            self._settle(job_id, f"could not claim the job: {short_error(exc)}")
            return
        if job is not None:
            await self._execute(job, retry_here=True)
        self._statuses.pop(job_id, None)  # claimed elsewhere: that process reports it

    def _settle(self, job_id: str, error: str | None = None) -> None:
        """Report a job's outcome to the run output that waits for it, if any."""
        status = self._statuses.pop(job_id, None)
        if status is not None:
            status.settle(error)

    async def _execute(self, job: JobRecord, *, retry_here: bool = False) -> None:
        """Run a claimed job; a failure is recorded on the job and never reaches the run.
        ``retry_here``: a turn's own job is retried in this process after its backoff (a
        worker's loop, which claims from the queue, retries it by itself)."""
        ctx = RunContext(
            run_id=job.run_id or "",
            session_id=job.session_id or "",
            user_id=job.user_id or "",
            agent_id=job.agent_id,
            input=str(job.payload.get("input", "")),
        )
        turn = Turn(
            str(job.payload.get("user", "")),
            str(job.payload.get("assistant", "")),
            date=job.created_at,  # relative dates in the turn are resolved against it
        )
        heartbeat = asyncio.create_task(self._keep_lease(job), name=f"kern-lease-{job.id}")
        try:
            for store in self._processing_stores():
                await call_any(store.process, ctx, turn)
            await self.extract(ctx, turn, stores=self._extracting_stores(), job=job)
            self._settle(job.id)
        except JobLostError:
            log.info("job %s was taken over by another worker; not applied here", job.id)
        except Exception as exc:
            # One bounded line: the log, the stored job and the run's output all show it.
            error = short_error(exc, JOB_ERROR_LIMIT)
            log.warning(
                "extraction job %s failed (attempt %d/%d): %s",
                job.id,
                job.attempts,
                job.max_attempts,
                error,
            )
            self._settle(job.id, error)
            retry = 2.0**job.attempts if job.attempts < job.max_attempts else None
            try:
                await asyncio.to_thread(self.db.fail_job, job, error, retry_in=retry)
            except KernError as storage_exc:
                # The job stays claimed; its lease expires and another process retries it.
                log.error("could not record the failure of job %s: %s", job.id, storage_exc)
            else:
                if retry is not None and retry_here and self.run_jobs:
                    self._retry_later(job.id, retry)
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
        await self._delete_old_jobs()

    def _retry_later(self, job_id: str, delay: float) -> None:
        """Claim the job again once its backoff is over, in this process: no restart or worker
        is needed. If another process claims it first, this claim finds nothing to do. Not a
        job the consistency wait waits for; ``aclose`` cancels it (the job stays queued)."""

        async def retry() -> None:
            await asyncio.sleep(delay)
            await self._run_claimed(job_id)

        task = asyncio.create_task(retry(), name=f"kern-retry-{job_id}")
        self._retries.add(task)
        task.add_done_callback(self._retries.discard)

    async def _keep_lease(self, job: JobRecord) -> None:
        """Renew the job's claim every third of ``job_lease`` while it runs, so a slow
        extraction (a model retrying) is not taken over and run a second time."""
        while True:
            await asyncio.sleep(self.job_lease / 3)
            try:
                held = await asyncio.to_thread(
                    self.db.renew_lease, job, lease_seconds=self.job_lease
                )
            except KernError as exc:  # the next beat tries again; the lease is still running
                log.warning("could not renew the lease of job %s: %s", job.id, exc)
                continue
            if not held:  # taken over or finished: the apply (if any) will say so
                return

    async def _delete_old_jobs(self) -> None:
        """Delete finished jobs past ``job_retention``: on this process's first job, then at
        most once an hour (one indexed DELETE, usually of nothing)."""
        if self.job_retention is None or time.monotonic() < self._next_cleanup:
            return
        self._next_cleanup = time.monotonic() + _CLEANUP_INTERVAL
        try:
            deleted = await asyncio.to_thread(
                self.db.delete_done_jobs, older_than=self.job_retention
            )
        except KernError as exc:  # housekeeping: the next attempt is in an hour
            log.warning("could not delete finished extraction jobs: %s", exc)
        else:
            if deleted:
                log.info("deleted %d finished extraction job(s)", deleted)

    # ------------------------------------------------------------------ extraction

    async def extract(
        self,
        ctx: RunContext,
        turn: Turn,
        *,
        stores: Sequence[Store[Any]] | None = None,
        job: JobRecord | None = None,
    ) -> list[WriteOp]:
        """One structured-output call for ``stores``; apply the result in one transaction."""
        stores = list(self._extracting_stores() if stores is None else stores)
        views: list[tuple[Store[Any], ExtractionView]] = []
        for store in stores:
            view = await asyncio.to_thread(store.extraction_view, ctx, turn)
            if view is not None:
                views.append((store, view))
        writes: list[WriteOp] = []
        if views:
            answer = await self._ask(turn, [v for _, v in views])
            for store, view in views:
                value = getattr(answer, view.key)
                writes.extend(await asyncio.to_thread(store.extraction_writes, value, view, ctx))
        if writes or job is not None:
            await asyncio.to_thread(
                functools.partial(
                    self.apply_writes,
                    writes,
                    run_id=ctx.run_id or None,
                    actor="extraction",
                    turn_of=ctx.user_id or None,
                    job=job,
                    strict=False,
                )
            )
        return writes

    async def _ask(self, turn: Turn, views: list[ExtractionView]) -> BaseModel:
        """The model call, with one repair retry for output that does not validate."""
        output_model, schema = _extraction_schema(tuple((v.key, v.output) for v in views))
        guidance = "\n".join(f"- {v.key}: {v.guidance}" for v in views)
        prompt = extraction_prompt(
            turn.user, turn.assistant, [(f"Stored {v.key}", v.data) for v in views], date=turn.date
        )
        messages: list[UserMessage | AssistantMessage] = [UserMessage(prompt)]
        instructions = f"{EXTRACTION_SYSTEM}\n\nWhat to extract:\n{guidance}"
        for attempt in (1, 2):
            response = await self.model.request(
                ModelRequest(messages=messages, instructions=instructions, output_schema=schema)
            )
            try:
                return output_model.model_validate(
                    schema.parse(response.text, provider=self.model.name)
                )
            except (ValidationError, ModelOutputError) as exc:
                if attempt == 2:
                    raise ModelOutputError(
                        f"extraction output invalid after a repair attempt: {_short(exc)}",
                        provider=self.model.name,
                    ) from exc
                messages += [
                    AssistantMessage(response.text),
                    UserMessage(
                        f"That answer is invalid: {_short(exc)}. Return only JSON matching "
                        "the schema."
                    ),
                ]
        raise AssertionError("unreachable")


@functools.lru_cache(maxsize=64)
def _extraction_schema(fields: tuple[tuple[str, Any], ...]) -> tuple[type[BaseModel], OutputSchema]:
    """The combined output model and its JSON schema, built once per set of store outputs.

    Titles are dropped from the schema: they repeat the field names and were most of the
    schema's tokens; descriptions stay, they guide the model.
    """
    definitions: dict[str, Any] = {key: (output, None) for key, output in fields}
    model: type[BaseModel] = create_model("Extraction", **definitions)
    return model, OutputSchema("extraction", _without_titles(model.model_json_schema()))


def _without_titles(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {
            k: _without_titles(v)
            for k, v in schema.items()
            if not (k == "title" and isinstance(v, str))
        }
    if isinstance(schema, list):
        return [_without_titles(v) for v in schema]
    return schema


def _short(exc: Exception) -> str:
    text = str(exc).replace("\n", " ")
    return text[:500]


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
