"""The ``kern`` command line."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from kern.agent import Agent, ContentDelta, RunCompleted, RunOutput, ToolCallCompleted
from kern.errors import KernError
from kern.learn import LearningMachine
from kern.models.base import Model
from kern.tools import tool

app = typer.Typer(
    help="kern: agents that learn. Run `kern demo` to see it work offline.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console(highlight=False)


def main() -> None:
    """Console-script entry point: kern errors become a message and exit code 1."""
    try:
        app()
    except KernError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise SystemExit(1) from exc


def pick_model(model: str | None = None) -> Model:
    """``--model`` if given, else OpenAI when OPENAI_API_KEY is set, else the local model."""
    choice = model or ("openai:gpt-5-mini" if os.environ.get("OPENAI_API_KEY") else "local")
    provider, _, model_id = choice.partition(":")
    if provider == "local":
        from kern.models.llamacpp import LlamaCpp

        return LlamaCpp(model_path=model_id or None, seed=7, temperature=0.2, max_tokens=512)
    if provider == "openai":
        from kern.models.openai import OpenAIResponses

        return OpenAIResponses(id=model_id)
    if provider == "anthropic":
        from kern.models.anthropic import Anthropic

        return Anthropic(id=model_id)
    raise typer.BadParameter(f"unknown model {choice!r}; use local, openai:ID or anthropic:ID")


@tool
def current_time(city: str) -> str:
    """The current UTC time, for questions about the time anywhere.

    Args:
        city: The city the user asked about.
    """
    return f"It is {datetime.now(UTC):%H:%M} UTC (asked for {city})."


DEMO_SCRIPT: list[tuple[str, list[str]]] = [
    (
        "session-1",
        [
            "Hi! I'm Alice and I work at Netflix as a data engineer.",
            "What time is it in Tokyo right now?",
        ],
    ),
    ("session-2", ["What do you remember from our earlier chat?"]),
]


@app.command()
def demo(
    model: Annotated[str | None, typer.Option(help="local, openai:ID or anthropic:ID")] = None,
    db_file: Annotated[Path, typer.Option(help="Demo database (recreated)")] = Path("tmp/demo.db"),
) -> None:
    """A short scripted conversation over two sessions, then what was stored."""
    from kern.db.sqlite import SqliteDb

    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_file}{suffix}").unlink(missing_ok=True)
    chosen = pick_model(model)
    console.print(f"[bold]kern demo[/bold] · model [cyan]{chosen.name}[/cyan] · db {db_file}")
    if not os.environ.get("OPENAI_API_KEY") and model is None:
        console.print("[dim]offline: set OPENAI_API_KEY to run the demo against OpenAI[/dim]")
    db = SqliteDb(db_file=str(db_file))
    agent = Agent(
        model=chosen,
        db=db,
        instructions="You are a concise, friendly assistant. Answer in one or two sentences.",
        tools=[current_time],
        learning=True,
    )
    lm = agent.get_learning_machine()
    assert lm is not None
    for session_id, messages in DEMO_SCRIPT:
        console.rule(session_id)
        for text in messages:
            try:
                output = _chat_turn(agent, text, user_id="alice", session_id=session_id)
            except KernError as exc:  # a small local model can fail a turn; show it, go on
                console.print(f"\n[red]this turn failed:[/red] {exc}")
                continue
            if output.recalled:
                console.print(f"[dim]recalled for this answer:\n{output.recalled}[/dim]")
        with console.status("learning from the session (background extraction)…"):
            lm.wait("alice", timeout=300)
        _show_learnings(lm, "alice")
    console.rule("stored")
    table = Table("session", "run", "input", "model calls", "tokens in/out", "seconds")
    for session in reversed(db.list_sessions(user_id="alice")):
        for index, run in enumerate(db.get_runs(session.session_id), 1):
            m = run.metrics
            table.add_row(
                session.session_id,
                str(index),
                run.input[:40],
                str(m["model_calls"]),
                f"{m['input_tokens']}/{m['output_tokens']}",
                f"{m['duration']:.2f}",
            )
    console.print(table)
    jobs = db.list_jobs()
    done = sum(j.status == "done" for j in jobs)
    console.print(f"extraction jobs: {done}/{len(jobs)} done, one model call each")
    for job in jobs:
        if job.error:
            console.print(f"[yellow]job {job.id[:8]} {job.status}: {job.error}[/yellow]")
    agent.close()
    db.close()


def _show_learnings(lm: LearningMachine, user_id: str) -> None:
    profile = lm.user_profile.get(user_id=user_id).model_dump(exclude_none=True)
    console.print(f"[magenta]profile[/magenta] {profile or '(empty)'}")
    for memory in lm.user_memory.list(user_id=user_id):
        console.print(f"[magenta]memory[/magenta]  {memory.content}")


def _chat_turn(agent: Agent, text: str, *, user_id: str, session_id: str) -> RunOutput:
    console.print(f"[bold green]you ›[/bold green] {text}")
    console.print("[bold blue]agent ›[/bold blue] ", end="")
    for event in agent.run(text, user_id=user_id, session_id=session_id, stream=True):
        if isinstance(event, ContentDelta):
            console.print(event.text, end="", markup=False)
        elif isinstance(event, ToolCallCompleted):
            console.print(f"[dim]\\[tool {event.call.name} → {event.content}][/dim] ", end="")
        elif isinstance(event, RunCompleted):
            m = event.output.metrics
            console.print(f"\n[dim]({m.model_calls} model call(s), {m.duration:.2f}s)[/dim]")
            return event.output
    raise AssertionError("a run ends with RunCompleted")


@app.command()
def chat(
    user_id: Annotated[str, typer.Option(help="Who you are")] = "me",
    session_id: Annotated[str | None, typer.Option(help="Resume a session")] = None,
    model: Annotated[str | None, typer.Option(help="local, openai:ID or anthropic:ID")] = None,
    db_file: Annotated[Path, typer.Option(help="Database file")] = Path("tmp/kern.db"),
) -> None:
    """Chat with a learning agent in the terminal (Ctrl-D or /quit to leave)."""
    from kern.db.sqlite import SqliteDb

    agent = Agent(
        model=pick_model(model),
        db=SqliteDb(db_file=str(db_file)),
        session_id=session_id,
        learning=True,
    )
    console.print(f"session {agent.session_id} · /quit to leave")
    while True:
        try:
            text = console.input("[bold green]you ›[/bold green] ").strip()
        except (EOFError, KeyboardInterrupt):
            break
        if text in ("/quit", "/exit"):
            break
        if text:
            _chat_turn(agent, text, user_id=user_id, session_id=agent.session_id)


if __name__ == "__main__":  # pragma: no cover
    main()
