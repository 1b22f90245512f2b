"""Every Python example in README.md and docs/*.md runs (STYLE 13: docs run).

The ```python blocks of one page run in order in one namespace, so a page can build up an
example; each page runs in a fresh temporary working directory. Nothing reaches a network:
``OpenAIResponses``/``OpenAIChat``/``OpenAIEmbedder``/``Anthropic`` examples talk, through their
official SDKs, to one local ``FakeServer`` whose "model" answers plausibly and extracts
learnings from what the user said (``tests/fakes/docs_server.py``). Tracebacks point at the
Markdown file and line of the failing example.

A block fenced as ```python skip-run is compiled but not run; each page that has one must say
why in ``SKIP_RUN`` below.
"""

from __future__ import annotations

import contextlib
import re
import shlex
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from kern._sync import run_sync
from kern.agent import Agent
from kern.cli import app as cli_app
from kern.db.sql import SqlDb
from kern.learn import LearningMachine
from kern.models.base import Model
from tests.fakes.docs_server import DocsProtocol, plausible_model
from tests.fakes.server import FakeServer

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

#: Pages allowed to hold ```python skip-run blocks, and why those cannot run here.
SKIP_RUN: dict[str, str] = {}

#: DESIGN §1: the README shows this snippet unchanged.
SEED = """\
from kern.agent import Agent
from kern.db.sqlite import SqliteDb
from kern.models.openai import OpenAIResponses

agent = Agent(model=OpenAIResponses(id="gpt-5.2"), db=SqliteDb(db_file="tmp/agents.db"), learning=True)
agent.print_response("I'm Alice, I work at Netflix. Keep answers short.", user_id="alice", session_id="s1")
agent.print_response("What do you know about me?", user_id="alice", session_id="s2")   # knows Alice, Netflix, short answers

lm = agent.get_learning_machine()
lm.curator.prune(user_id="alice", max_age_days=90)   # remove memories older than 90 days
lm.curator.deduplicate(user_id="alice")              # remove duplicates
"""  # noqa: E501


@dataclass(frozen=True)
class Example:
    page: Path
    #: Line number (1-based) of the example's first line of code in the page.
    line: int
    code: str
    run: bool
    #: For a ``$ kern …`` line of a ```console block: its arguments after ``kern``.
    command: tuple[str, ...] | None = None


_FENCE = re.compile(r"^(`{3,})(.*)$")


def examples(page: Path) -> list[Example]:
    """The ```python blocks of a page, and each ``$ kern …`` line of its ```console blocks,
    in order."""
    found: list[Example] = []
    lines = page.read_text(encoding="utf-8").splitlines()
    index = 0
    while index < len(lines):
        match = _FENCE.match(lines[index])
        index += 1
        if not match:
            continue
        fence, info = match.group(1), match.group(2).split()
        start = index
        while index < len(lines) and lines[index].strip() != fence:
            index += 1
        if info and info[0] == "python":
            code = "\n".join(lines[start:index]) + "\n"
            found.append(Example(page, start + 1, code, run="skip-run" not in info[1:]))
        elif info and info[0] == "console":
            for number in range(start, index):
                if lines[number].startswith("$ kern "):
                    argv = tuple(shlex.split(lines[number][len("$ kern ") :]))
                    found.append(Example(page, number + 1, lines[number], True, argv))
        index += 1
    return found


@pytest.fixture(scope="module")
def model_server() -> Iterator[FakeServer]:
    with FakeServer(DocsProtocol(), plausible_model) as server:
        yield server


class _Created:
    """Every agent, learning machine and database a page creates, kept alive until the page
    ends, so that it can be released: an agent an example drops without closing (say, by
    reusing the name ``agent``) would otherwise leave its HTTP connections to the collector."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.objects: list[Any] = []
        for cls in (Agent, LearningMachine, SqlDb):
            original = cls.__init__

            def init(obj: Any, *args: Any, _original: Any = original, **kwargs: Any) -> None:
                _original(obj, *args, **kwargs)
                self.objects.append(obj)

            monkeypatch.setattr(cls, "__init__", init)

    def release(self, namespace: dict[str, Any]) -> None:
        """Finish what a page left running: learning jobs, model connections, databases."""
        found = [*self.objects, *namespace.values()]
        agents = [v for v in found if isinstance(v, Agent)]
        machines = [v for v in found if isinstance(v, LearningMachine)]
        machines += [a.learning_machine for a in agents if a.learning_machine is not None]
        for machine in machines:
            with contextlib.suppress(Exception):  # a db the page already closed
                machine.wait_for_jobs(timeout=10)
        models = {id(v): v for v in found if isinstance(v, Model)}
        models.update({id(a.model): a.model for a in agents})
        for model in models.values():
            run_sync(model.aclose())
        for machine in machines:  # the embedders' connections (OpenAIEmbedder's)
            close = getattr(machine.embedder, "aclose", None)
            if close is not None:
                run_sync(close())
        for db in {id(v): v for v in found if isinstance(v, SqlDb)}.values():
            db.close()
        self.objects.clear()


#: Pages with code to run (decisions.md, for one, has none).
RUNNABLE = [page for page in PAGES if examples(page)]


def test_every_page_with_code_is_run() -> None:
    assert RUNNABLE, "no documentation page has a ```python block"
    assert {p.name for p in PAGES} - {p.name for p in RUNNABLE} <= {"decisions.md"}


@pytest.mark.parametrize("page", RUNNABLE, ids=[p.name for p in RUNNABLE])
def test_examples_run(
    page: Path, model_server: FakeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocks = examples(page)
    skipped = [b for b in blocks if not b.run]
    assert not skipped or page.name in SKIP_RUN, (
        f"{page.name} has skip-run blocks (lines {[b.line for b in skipped]}); "
        "say why in SKIP_RUN or make them run"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENAI_BASE_URL", model_server.url + "/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-docs")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", model_server.url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-docs")
    created = _Created(monkeypatch)
    name = "docs_" + re.sub(r"\W", "_", page.stem)
    module = types.ModuleType(name)
    module.__file__ = str(page)
    sys.modules[name] = module  # so classes defined in examples (pydantic, dataclasses) resolve
    try:
        for block in blocks:
            if block.command is not None:
                result = CliRunner().invoke(cli_app, list(block.command))
                assert result.exit_code == 0, f"{page.name}:{block.line}: {result.output}"
                continue
            # Leading newlines make traceback line numbers those of the Markdown file.
            code = compile("\n" * (block.line - 1) + block.code, str(page), "exec")
            if block.run:
                exec(code, module.__dict__)
    finally:
        try:
            created.release(module.__dict__)
        finally:
            del sys.modules[name]


# --------------------------------------------------------------------------- page structure


def _readme() -> str:
    return (ROOT / "README.md").read_text(encoding="utf-8")


def test_readme_opens_with_make_demo_and_make_test() -> None:
    lines = _readme().splitlines()
    assert lines[0].startswith("# ")
    fence = next(i for i, line in enumerate(lines) if line.startswith("```"))
    prose = [line for line in lines[1:fence] if line.strip()]
    assert len(prose) <= 3, "only the one-line pitch may come before the set-up commands"
    assert lines[fence] == "```bash"
    end = lines.index("```", fence + 1)
    commands = [line.split("#")[0].strip() for line in lines[fence + 1 : end]]
    assert commands == ["make demo", "make test"]


def test_readme_shows_the_seed_snippet_unchanged() -> None:
    first_python = next(e for e in examples(ROOT / "README.md"))
    assert first_python.code == SEED


def test_readme_links_every_docs_page_and_every_link_resolves() -> None:
    text = _readme()
    links = set(re.findall(r"\]\((docs/[^)#]+)", text))
    for link in links:
        assert (ROOT / link).is_file(), f"README links to a missing {link}"
    pages = {f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")}
    assert pages <= links, f"pages not linked from the README: {sorted(pages - links)}"


@pytest.mark.parametrize("page", PAGES[1:], ids=[p.name for p in PAGES[1:]])
def test_relative_links_between_pages_resolve(page: Path) -> None:
    for target in re.findall(r"\]\(([\w.-]+\.md)(?:#[\w-]+)?\)", page.read_text("utf-8")):
        assert (page.parent / target).is_file(), f"{page.name} links to a missing {target}"


def test_example_collection_sees_fences_and_skip_markers(tmp_path: Path) -> None:
    page = tmp_path / "p.md"
    page.write_text(
        "text\n```python\na = 1\n```\n```bash\nls\n```\n```python skip-run\nb = 2\n```\n",
        encoding="utf-8",
    )
    found = examples(page)
    assert [(e.line, e.code, e.run) for e in found] == [(3, "a = 1\n", True), (9, "b = 2\n", False)]
    page.write_text(
        "```console\n$ kern learnings list --db 'my db.db' --user-id alice\nno output\n```\n",
        encoding="utf-8",
    )
    [command] = examples(page)
    assert (command.line, command.command) == (
        2,
        ("learnings", "list", "--db", "my db.db", "--user-id", "alice"),
    )
