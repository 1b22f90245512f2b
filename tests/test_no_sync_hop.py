"""No sync hop inside the async core: nothing on kern's event loop waits on ``run_sync``.

Once, recall and extraction ran store hooks in worker threads of the loop's default pool,
and those waited (``run_sync``) on an embedder that itself needed a thread of the same pool;
sync tools ran in that pool too. With as many concurrent runs as the pool has threads, none
could finish. These tests run four times the default pool size of sync ``Agent.run`` calls at
once; the wait below only turns a deadlock into a failure instead of a hung suite.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any

import numpy as np

from kern.agent import Agent, RunOutput
from kern.context import RunContext
from kern.db.sqlite import SqliteDb
from kern.learn import LearningMachine, LearningMode, UserMemoryConfig
from kern.models.base import ModelRequest, ModelResponse, ToolCall, ToolResultMessage
from kern.models.testing import FunctionModel, TestModel
from kern.search.embedders import HashEmbedder, Vector
from kern.tools import tool

#: Four times the default size of asyncio's thread pool, min(32, cpu + 4).
RUNS = 4 * ThreadPoolExecutor()._max_workers


class ThreadedEmbedder(HashEmbedder):
    """Embeds in a worker thread of the running loop's default pool, like LocalEmbedder."""

    async def embed(self, texts: Sequence[str]) -> list[Vector]:
        vectors = await asyncio.to_thread(lambda: [self._vector(t) for t in texts])
        return [v / (np.linalg.norm(v) or 1.0) for v in vectors]


def run_all_at_once(agent: Agent, message: str, users: int) -> list[RunOutput]:
    """``RUNS`` sync ``agent.run`` calls from as many threads at once; fails (instead of
    hanging the suite) when any has not finished after two minutes."""
    pool = ThreadPoolExecutor(RUNS)
    futures = [
        pool.submit(agent.run, message, user_id=f"u{i % users}", session_id=f"s{i}")
        for i in range(RUNS)
    ]
    _, hung = wait(futures, timeout=120)
    pool.shutdown(wait=not hung, cancel_futures=True)
    assert not hung, f"{len(hung)} of {RUNS} concurrent runs never finished"
    return [f.result() for f in futures]


def test_threaded_sync_runs_with_a_to_thread_embedder_do_not_deadlock(tmp_path: Any) -> None:
    """Recall embeds the message: the store's search must await the embedder, not wait on
    it from a thread of the pool the embedder needs."""
    db = SqliteDb(db_file=str(tmp_path / "d.db"))
    lm = LearningMachine(
        db=db,
        user_memory=UserMemoryConfig(mode=LearningMode.AGENTIC),
        embedder=ThreadedEmbedder(),
    )
    agent = Agent(model=TestModel("ok"), db=db, learning=lm)
    lm.user_memory.add("The user likes tea.", user_id="u0")
    outputs = run_all_at_once(agent, "tea?", users=3)
    assert all(o.content for o in outputs)
    assert any("likes tea" in o.recalled for o in outputs)
    db.close()


def test_threaded_sync_runs_whose_sync_tool_calls_the_sync_store_api_do_not_deadlock(
    tmp_path: Any,
) -> None:
    """A sync tool runs in a thread; calling ``lm.user_memory.add`` there waits on the loop,
    whose write needs a thread for the database: those must never be the same threads."""
    db = SqliteDb(db_file=str(tmp_path / "t.db"))
    lm = LearningMachine(db=db, user_memory=UserMemoryConfig(mode=LearningMode.AGENTIC))

    @tool
    def note(text: str, ctx: RunContext) -> str:
        """Note something about the user.

        Args:
            text: What to note.
        """
        return lm.user_memory.add(text, user_id=ctx.user_id).id

    def respond(request: ModelRequest) -> ModelResponse:
        if any(isinstance(m, ToolResultMessage) for m in request.messages):
            return ModelResponse("noted")
        return ModelResponse(tool_calls=(ToolCall("c1", "note", '{"text": "likes tea"}'),))

    agent = Agent(model=FunctionModel(respond), db=db, learning=lm, tools=[note])
    outputs = run_all_at_once(agent, "note it", users=RUNS)
    assert all(o.content == "noted" for o in outputs)
    assert len(lm.user_memory.list(user_id="u0")) == 1
    db.close()
