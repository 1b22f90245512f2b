from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Iterator, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, overload

from kern._sync import iterate_sync, run_sync, syncify
from kern.agent.output import (
    ContentDelta,
    RunCompleted,
    RunEvent,
    RunMetrics,
    RunOutput,
    RunStarted,
    ToolCallCompleted,
    ToolCallStarted,
)
from kern.context import DEFAULT_USER_ID, RunContext
from kern.db.base import Db, JobRecord, LearningDb, RunRecord
from kern.errors import ConfigError, ModelError, RunLimitError
from kern.learn.machine import RecallResult
from kern.learn.stores.base import Turn
from kern.limits import check_id, check_message, check_metadata
from kern.models.base import (
    Message,
    Model,
    ModelRequest,
    ModelResponse,
    TextDelta,
    ToolCall,
    ToolResultMessage,
    UserMessage,
    message_from_dict,
    message_to_dict,
)
from kern.tools import Tool, ToolOutcome, as_tool

if TYPE_CHECKING:
    from kern.learn.machine import LearningMachine
    from kern.tools.core import ToolFunction

__all__ = ["Agent"]


class Agent:
    """A model with tools, persistent sessions and (optionally) learning.

    Args:
        model: Any ``kern.models`` model.
        db: Where sessions, runs and learnings live. ``None`` keeps them in an in-memory
            SQLite database for the life of the process.
        instructions: The system instructions.
        tools: ``Tool`` objects or plain functions.
        learning: ``True`` for user profile, user memory and session context in always mode,
            or a ``LearningMachine`` for full control.
        add_history_to_context: Send the session's earlier messages with each request.
        num_history_runs: How many earlier runs of the session to send.
        max_steps: Model calls allowed in one run before it stops with ``RunLimitError``.
        agent_id: Identifies this agent in stored sessions and its decision log.
        session_id: The session used when a run passes none (default: a new id per agent).
    """

    def __init__(
        self,
        model: Model,
        *,
        db: Db | None = None,
        instructions: str | None = None,
        tools: Sequence[Tool | ToolFunction] = (),
        learning: bool | LearningMachine = False,
        add_history_to_context: bool = True,
        num_history_runs: int = 3,
        max_steps: int = 10,
        agent_id: str | None = None,
        session_id: str | None = None,
    ) -> None:
        if not isinstance(model, Model):
            raise ConfigError(f"model must be a kern Model, got {type(model).__name__}")
        if max_steps < 1 or num_history_runs < 0:
            raise ConfigError("max_steps must be ≥ 1 and num_history_runs ≥ 0")
        self.model = model
        self.db: Db = db if db is not None else _memory_db()
        self.instructions = instructions
        self.tools = [as_tool(t) for t in tools]
        _check_unique_names(self.tools)
        self.add_history_to_context = add_history_to_context
        self.num_history_runs = num_history_runs
        self.max_steps = max_steps
        self.agent_id = None if agent_id is None else check_id(agent_id, "agent_id")
        self.session_id = (
            str(uuid.uuid4()) if session_id is None else check_id(session_id, "session_id")
        )
        self.learning_machine = _learning_machine(learning, self)

    # ----------------------------------------------------------------- public API

    @overload
    def arun(
        self,
        message: str,
        *,
        user_id: str | None = ...,
        session_id: str | None = ...,
        stream: Literal[False] = ...,
        metadata: dict[str, Any] | None = ...,
    ) -> Awaitable[RunOutput]: ...
    @overload
    def arun(
        self,
        message: str,
        *,
        user_id: str | None = ...,
        session_id: str | None = ...,
        stream: Literal[True],
        metadata: dict[str, Any] | None = ...,
    ) -> AsyncIterator[RunEvent]: ...
    def arun(
        self,
        message: str,
        *,
        user_id: str | None = None,
        session_id: str | None = None,
        stream: bool = False,
        metadata: dict[str, Any] | None = None,
    ) -> Awaitable[RunOutput] | AsyncIterator[RunEvent]:
        """Run one turn. ``await agent.arun(...)`` gives a ``RunOutput``;
        ``agent.arun(..., stream=True)`` is an async iterator of ``RunEvent``s ending with
        ``RunCompleted``."""
        ctx = self._context(message, user_id, session_id, metadata)
        events = self._run(ctx, stream_model=stream)
        return events if stream else _final_output(events)

    @overload
    def run(
        self,
        message: str,
        *,
        user_id: str | None = ...,
        session_id: str | None = ...,
        stream: Literal[False] = ...,
        metadata: dict[str, Any] | None = ...,
    ) -> RunOutput: ...
    @overload
    def run(
        self,
        message: str,
        *,
        user_id: str | None = ...,
        session_id: str | None = ...,
        stream: Literal[True],
        metadata: dict[str, Any] | None = ...,
    ) -> Iterator[RunEvent]: ...
    def run(
        self,
        message: str,
        *,
        user_id: str | None = None,
        session_id: str | None = None,
        stream: bool = False,
        metadata: dict[str, Any] | None = None,
    ) -> RunOutput | Iterator[RunEvent]:
        """The synchronous form of ``arun``; safe to call inside a running event loop."""
        ctx = self._context(message, user_id, session_id, metadata)
        events = self._run(ctx, stream_model=stream)
        return iterate_sync(events) if stream else run_sync(_final_output(events))

    def print_response(
        self,
        message: str,
        *,
        user_id: str | None = None,
        session_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        file: Any = None,
    ) -> None:
        """Stream the answer to ``file`` (stdout by default) as it arrives."""
        out = file or sys.stdout
        events = self.run(
            message, user_id=user_id, session_id=session_id, metadata=metadata, stream=True
        )
        for event in events:
            if isinstance(event, ContentDelta):
                out.write(event.text)
                out.flush()
        out.write("\n")

    async def aclose(self) -> None:
        """Wait (bounded) for background learning, then close the model's connections.

        The database is left open: it was given to the agent and may be shared.
        """
        if self.learning_machine is not None:
            await self.learning_machine.aclose()
        await self.model.aclose()

    close = syncify(aclose)

    def get_learning_machine(self) -> LearningMachine | None:
        """The agent's learning machine (``None`` without learning): its stores, proposals
        and curator."""
        return self.learning_machine

    async def aget_session_messages(self, session_id: str | None = None) -> list[Message]:
        """Every message stored for a session, oldest first."""
        runs = await asyncio.to_thread(self.db.get_runs, session_id or self.session_id)
        return [message_from_dict(m) for run in runs for m in run.messages]

    get_session_messages = syncify(aget_session_messages)

    # ----------------------------------------------------------------- the run

    def _context(
        self,
        message: str,
        user_id: str | None,
        session_id: str | None,
        metadata: dict[str, Any] | None,
    ) -> RunContext:
        """Every argument of a run, checked here (``kern.limits``) before anything is stored:
        a refused run leaves no trace."""
        return RunContext(
            run_id=str(uuid.uuid4()),
            session_id=self.session_id
            if session_id is None
            else check_id(session_id, "session_id"),
            user_id=DEFAULT_USER_ID if user_id is None else check_id(user_id, "user_id"),
            agent_id=self.agent_id,
            input=check_message(message),
            metadata={} if metadata is None else check_metadata(metadata),
        )

    async def _run(self, ctx: RunContext, *, stream_model: bool) -> AsyncIterator[RunEvent]:
        """The one implementation of a turn; every public entry point drives this."""
        started = time.perf_counter()
        created_at = datetime.now(UTC)
        metrics = RunMetrics()
        new_messages: list[Message] = [UserMessage(ctx.input)]
        # Outside the try: a session refused to this user (another user's) stores no failed
        # run in it, which would put this user's text in the other user's history.
        await asyncio.to_thread(
            self.db.upsert_session, ctx.session_id, user_id=ctx.user_id, agent_id=self.agent_id
        )
        yield RunStarted(ctx.run_id, ctx.session_id)
        try:
            recall_started = time.perf_counter()
            recalled = await self._recall(ctx)
            metrics.recall_duration = time.perf_counter() - recall_started
            instructions = "\n\n".join(p for p in (self.instructions, recalled.context) if p)
            history = await self._history(ctx.session_id)
            tools = {t.name: t for t in self.tools}
            for extra in recalled.tools:
                if extra.name in tools:
                    raise ConfigError(f"tool name {extra.name!r} is used by a learning store")
                tools[extra.name] = extra
            response = ModelResponse()
            for _ in range(self.max_steps):
                request = ModelRequest(
                    messages=[*history, *new_messages],
                    instructions=instructions or None,
                    tools=[t.definition for t in tools.values()],
                )
                step_started = time.perf_counter()
                async for item in self._call_model(request, stream=stream_model):
                    if isinstance(item, ModelResponse):
                        response = item
                    else:
                        yield item
                metrics.add_model_call(response.usage, time.perf_counter() - step_started)
                new_messages.append(response.message)
                if not response.tool_calls:
                    break
                for call in response.tool_calls:
                    yield ToolCallStarted(call)
                outcomes = await asyncio.gather(
                    *(_call_tool(tools, call, ctx) for call in response.tool_calls)
                )
                for call, outcome in zip(response.tool_calls, outcomes, strict=True):
                    metrics.tool_calls += 1
                    yield ToolCallCompleted(call, outcome.content, outcome.is_error)
                    new_messages.append(
                        ToolResultMessage(call.id, call.name, outcome.content, outcome.is_error)
                    )
            else:
                raise RunLimitError(
                    f"the run used its {self.max_steps} model steps without a final answer; "
                    "raise Agent(max_steps=...) if the task needs more tool calls"
                )
        except Exception as exc:
            metrics.duration = time.perf_counter() - started
            await self._save_run(ctx, created_at, new_messages, metrics, error=exc)
            raise
        metrics.duration = time.perf_counter() - started
        machine = self.learning_machine
        turn = Turn(ctx.input, response.text or "")
        # With one database, the run and its extraction job are stored in one transaction: a
        # stored turn always has its job (a crash or a locked database in between cannot leave
        # a completed run that is never learned).
        job = machine.extraction_job(ctx, turn) if machine is not None else None
        together = job is not None and machine is not None and machine.db is self.db
        await self._save_run(ctx, created_at, new_messages, metrics, job=job if together else None)
        learning = None
        if machine is not None:
            learning = await machine.learn(ctx, turn, enqueued=job if together else None)
        output = RunOutput(
            run_id=ctx.run_id,
            session_id=ctx.session_id,
            user_id=ctx.user_id,
            content=response.text,
            messages=tuple(new_messages),
            metrics=metrics,
            recalled=recalled.context,
            recalled_items=tuple(i for r in recalled.recalled.values() for i in r.items),
            learning=learning,
        )
        yield RunCompleted(output)

    async def _recall(self, ctx: RunContext) -> RecallResult:
        if self.learning_machine is None:
            return RecallResult("")
        await self.learning_machine.resume_unfinished()
        return await self.learning_machine.recall(ctx)

    async def _call_model(
        self, request: ModelRequest, *, stream: bool
    ) -> AsyncIterator[ContentDelta | ModelResponse]:
        """One model call: text deltas as they stream (if streaming), then the response."""
        if not stream:
            yield await self.model.request(request)
            return
        response: ModelResponse | None = None
        async for event in self.model.stream(request):
            if isinstance(event, TextDelta):
                yield ContentDelta(event.text)
            else:
                response = event
        if response is None:
            raise ModelError("the stream ended without a response", provider=self.model.name)
        yield response

    async def _history(self, session_id: str) -> list[Message]:
        if not self.add_history_to_context or self.num_history_runs == 0:
            return []
        runs = await asyncio.to_thread(self.db.get_runs, session_id, limit=self.num_history_runs)
        return [message_from_dict(m) for run in runs for m in run.messages]

    async def _save_run(
        self,
        ctx: RunContext,
        created_at: datetime,
        messages: list[Message],
        metrics: RunMetrics,
        *,
        error: Exception | None = None,
        job: JobRecord | None = None,
    ) -> None:
        last = messages[-1]
        record = RunRecord(
            run_id=ctx.run_id,
            session_id=ctx.session_id,
            user_id=ctx.user_id,
            agent_id=self.agent_id,
            status="failed" if error else "completed",
            input=ctx.input,
            content=None if error else getattr(last, "content", None),
            messages=[message_to_dict(m) for m in messages],
            metrics=metrics.to_dict(),
            created_at=created_at,
            error=f"{type(error).__name__}: {error}" if error else None,
        )
        if job is None:
            await asyncio.to_thread(self.db.add_run, record)
        else:
            assert isinstance(self.db, LearningDb)  # the machine's db, checked by the caller
            await asyncio.to_thread(self.db.add_run, record, job=job)


async def _final_output(events: AsyncIterator[RunEvent]) -> RunOutput:
    async for event in events:
        if isinstance(event, RunCompleted):
            return event.output
    raise AssertionError("a run always ends with RunCompleted or an exception")


async def _call_tool(tools: dict[str, Tool], call: ToolCall, ctx: RunContext) -> ToolOutcome:
    tool = tools.get(call.name)
    if tool is None:
        available = ", ".join(sorted(tools)) or "none"
        return ToolOutcome(f"Unknown tool {call.name!r}. Available tools: {available}.", True)
    return await tool.call(call.arguments, ctx)


def _check_unique_names(tools: Sequence[Tool]) -> None:
    seen: set[str] = set()
    for t in tools:
        if t.name in seen:
            raise ConfigError(f"two tools are named {t.name!r}; tool names must be unique")
        seen.add(t.name)


def _learning_machine(learning: object, agent: Agent) -> LearningMachine | None:
    from kern.learn.machine import resolve_learning

    machine = resolve_learning(learning)
    if machine is not None:
        machine.attach(db=agent.db, model=agent.model, agent_id=agent.agent_id)
    return machine


def _memory_db() -> Db:
    from kern.db.sqlite import SqliteDb

    return SqliteDb(db_file=":memory:")
