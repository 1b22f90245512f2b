"""The temporal scenario benchmark: do recalled blocks hold what is true now, and only that?

Two ways to run it::

    .venv/bin/python -m benchmarks.temporal.run                       # scripted extraction
    .venv/bin/python -m benchmarks.temporal.run --model M --base-url URL [--json OUT]
    .venv/bin/python -m benchmarks.temporal.run --llamacpp [GGUF]        # in-process, SmolLM2

Each scenario runs through the product: an ``Agent`` (whose answers are the scenario's scripted
assistant lines) with ``LearningMachine(user_memory=True, background=False)`` on a fresh SQLite
file whose clock is set to each turn's date, so extraction sees the turn's date and recall's
"now" is the question's date. After the turns, each question is recalled
(``LearningMachine.recall``, what the agent puts in front of its model) and the block is
checked: every ``must`` text on a row valid now, every ``past`` text on a row marked past, no
``must_not`` text anywhere.

*Scripted*: extraction is a ``FunctionModel`` that returns the scenario's perfect answer,
translating each ``match`` into the number the extraction prompt showed for that item. It tests
the mechanics (dates, supersession, closing, expiry, the related items shown for a cascade,
recall's filters and past rendering); every question must pass. *Model*: extraction is any
OpenAI-compatible endpoint, measuring how often a real model's extraction leaves recall holding
the current fact and no stale one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from datetime import time as dtime
from pathlib import Path
from typing import Any

from benchmarks.temporal.scenarios import KINDS, Question, Scenario, Step, scenarios
from kern.agent import Agent
from kern.context import RunContext
from kern.db.sqlite import SqliteDb
from kern.learn import LearningMachine
from kern.models.base import Model, ModelRequest
from kern.models.testing import FunctionModel

USER = "bench-user"
#: Turns happen in the morning, questions in the evening of their dates.
TURN_TIME, QUESTION_TIME = dtime(9, 0), dtime(18, 0)


class Clock:
    """The database's clock, set by the runner to each turn's and question's date."""

    def __init__(self) -> None:
        self.now = datetime(2024, 1, 1, tzinfo=UTC)

    def set(self, day: str, at: dtime) -> None:
        self.now = datetime.combine(date.fromisoformat(day), at, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@dataclass(frozen=True)
class Outcome:
    scenario: str
    kind: str
    question: str
    passed: bool
    problems: list[str]
    block: str


# -- the scripted extraction model ------------------------------------------------------------

_ITEM = re.compile(r"^\[(\d+)\] (.*)$")


def shown_items(prompt: str, store: str = "user_memory") -> dict[int, str]:
    """The numbered items the extraction prompt showed for ``store``."""
    section = prompt.split(f"## Stored {store}", 1)
    if len(section) < 2:
        return {}
    items: dict[int, str] = {}
    for line in section[1].split("\n## ", 1)[0].splitlines():
        found = _ITEM.match(line.strip())
        if found:
            items[int(found.group(1))] = found.group(2)
    return items


class ScriptedExtraction:
    """Answers each extraction call with the current turn's scripted operations; an item the
    prompt did not show cannot be referred to, and is reported as ``unresolved``."""

    def __init__(self) -> None:
        self.step: Step | None = None
        self.unresolved: list[str] = []

    def __call__(self, request: ModelRequest) -> dict[str, Any]:
        assert self.step is not None
        prompt = str(request.messages[-1].content)
        shown = shown_items(prompt)
        answer: dict[str, list[Any]] = {}
        for op, entries in self.step.extraction.items():
            out: list[Any] = []
            for entry in entries:
                entry = dict(entry)
                match = entry.pop("match", None)
                if match is not None:
                    number = next((n for n, text in shown.items() if match in text), None)
                    if number is None:
                        self.unresolved.append(f"{op}: no shown item contains {match!r}")
                        continue
                    entry["id"] = number
                out.append(entry)
            answer[op] = out
        return {"user_memory": answer}


# -- running one scenario ---------------------------------------------------------------------


def _reply(step_of: Callable[[], Step | None]) -> FunctionModel:
    def reply(request: ModelRequest) -> str:
        step = step_of()
        return step.assistant if step is not None else "ok"

    return FunctionModel(reply, id="scripted-assistant")


def check(block: str, question: Question) -> list[str]:
    """What is wrong with a recalled block for ``question`` (empty: it passes)."""
    lines = block.splitlines()

    def past(line: str) -> bool:
        return '"past": true' in line

    problems = []
    for text in question.must:
        if not any(text in line and not past(line) for line in lines):
            problems.append(f"missing current {text!r}")
    for text in question.past:
        if not any(text in line and past(line) for line in lines):
            problems.append(f"missing past {text!r}")
    for text in question.must_not:
        if text in block:
            problems.append(f"stale {text!r} recalled")
    return problems


async def run_scenario(
    scenario: Scenario, extraction: Model | None, workdir: Path
) -> list[Outcome]:
    clock = Clock()
    script = ScriptedExtraction()
    model = extraction or FunctionModel(script, id="scripted-extraction")
    db = SqliteDb(db_file=workdir / f"{scenario.id}.db", clock=clock)
    lm = LearningMachine(user_memory=True, model=model, background=False)
    agent = Agent(model=_reply(lambda: script.step), db=db, learning=lm)
    problems_in_turns: list[str] = []
    try:
        for n, step in enumerate(scenario.turns):
            clock.set(step.date, TURN_TIME)
            script.step = step
            output = await agent.arun(step.user, user_id=USER, session_id=f"{scenario.id}-{n}")
            errors = [getattr(output, "learning_error", None)]
            problems_in_turns += [f"turn {n}: {e}" for e in errors if e]
            if n == len(scenario.turns) - 2 and scenario.background:
                clock.set(scenario.background_date, TURN_TIME)
                for text in scenario.background:
                    await asyncio.to_thread(lm.user_memory.add, text, user_id=USER)
        jobs = db.list_jobs(status="failed")
        problems_in_turns += [f"extraction failed: {j.error}" for j in jobs]
        problems_in_turns += script.unresolved
        outcomes = []
        for question in scenario.questions:
            clock.set(question.date, QUESTION_TIME)
            ctx = RunContext(
                run_id="question",
                session_id=f"{scenario.id}-question",
                user_id=USER,
                input=question.text,
            )
            block = (await lm.recall(ctx)).context
            problems = check(block, question)
            if problems and extraction is None:
                problems += problems_in_turns
            outcomes.append(
                Outcome(scenario.id, scenario.kind, question.text, not problems, problems, block)
            )
        return outcomes
    finally:
        await agent.aclose()
        db.close()


async def run_all(
    selected: list[Scenario], extraction: Model | None, *, verbose: bool
) -> list[Outcome]:
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="kern-temporal-") as tmp:
        for scenario in selected:
            got = await run_scenario(scenario, extraction, Path(tmp))
            outcomes += got
            if verbose:
                for o in got:
                    mark = "ok  " if o.passed else "FAIL"
                    print(f"{mark} {o.scenario:14} {o.question}", *o.problems, sep="\n      ")
    return outcomes


def summary(outcomes: list[Outcome]) -> dict[str, Any]:
    by_kind: dict[str, dict[str, int]] = {}
    for kind in KINDS:
        mine = [o for o in outcomes if o.kind == kind]
        by_kind[kind] = {"questions": len(mine), "passed": sum(o.passed for o in mine)}
    return {
        "questions": len(outcomes),
        "passed": sum(o.passed for o in outcomes),
        "scenarios": len({o.scenario for o in outcomes}),
        "by_kind": by_kind,
    }


def table(result: dict[str, Any]) -> str:
    rows = ["| kind | questions | passed | share |", "|---|---:|---:|---:|"]
    for kind, r in result["by_kind"].items():
        share = r["passed"] / r["questions"] if r["questions"] else 0.0
        rows.append(f"| {kind} | {r['questions']} | {r['passed']} | {share:.2f} |")
    total = result["passed"] / result["questions"] if result["questions"] else 0.0
    rows.append(f"| **all** | {result['questions']} | {result['passed']} | {total:.2f} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="extraction model name at --base-url (default: scripted)")
    parser.add_argument("--base-url", help="an OpenAI-compatible endpoint, e.g. .../v1")
    parser.add_argument("--api-key", default=os.environ.get("OPENAI_API_KEY", "none"))
    parser.add_argument(
        "--llamacpp",
        nargs="?",
        const="",
        metavar="GGUF",
        help="extract in-process with kern's LlamaCpp (default GGUF: SmolLM2-135M-Instruct)",
    )
    parser.add_argument("--kind", choices=KINDS, action="append", help="only these kinds")
    parser.add_argument("--limit", type=int, help="at most this many scenarios")
    parser.add_argument("--per-kind", type=int, help="at most this many scenarios of each kind")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("-v", "--verbose", action="store_true", help="one line per question")
    args = parser.parse_args(argv)

    selected = [s for s in scenarios() if not args.kind or s.kind in args.kind]
    if args.per_kind:
        selected = [s for k in KINDS for s in [s for s in selected if s.kind == k][: args.per_kind]]
    if args.limit:
        selected = selected[: args.limit]
    extraction: Model | None = None
    if args.model:
        from kern.models.openai import OpenAIChat

        extraction = OpenAIChat(args.model, base_url=args.base_url, api_key=args.api_key)
    elif args.llamacpp is not None:
        from kern.models.llamacpp import LlamaCpp

        extraction = LlamaCpp(model_path=args.llamacpp or None)
    started = time.perf_counter()
    outcomes = asyncio.run(run_all(selected, extraction, verbose=args.verbose))
    result = summary(outcomes)
    result["extraction"] = extraction.name if extraction is not None else "scripted"
    result["seconds"] = round(time.perf_counter() - started, 1)
    print(table(result))
    what = f"{result['scenarios']} scenarios, {result['seconds']} s"
    print(f"{what}, extraction: {result['extraction']}")
    failures = Counter(p for o in outcomes for p in o.problems)
    if failures and args.verbose:
        print("most common problems:", *failures.most_common(10), sep="\n  ")
    if args.json:
        result["outcomes"] = [o.__dict__ for o in outcomes]
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if extraction is None and result["passed"] != result["questions"]:
        return 1  # the scripted run tests the mechanics: every question must pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
