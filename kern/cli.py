"""The ``kern`` command line."""

from __future__ import annotations

import json
import os
import textwrap
import time
from pathlib import Path
from typing import Annotated, Any, cast, get_args

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from kern.agent import Agent, ContentDelta, RunCompleted, RunOutput, ToolCallCompleted
from kern.errors import KernError
from kern.learn import CurationReport, LearningMachine
from kern.models.base import Model
from kern.models.selection import MODEL_CHOICES, pick_model

__all__ = ["app", "main"]

ModelOption = Annotated[str | None, typer.Option(help=f"{MODEL_CHOICES} (see docs/models.md)")]
BaseUrlOption = Annotated[
    str | None,
    typer.Option(
        help="The model server's URL, e.g. http://localhost:8080/v1 (with openai-chat:ID)"
    ),
]

app = typer.Typer(
    help="kern: agents that learn. Run `kern demo` to see it work offline.",
    no_args_is_help=True,
    add_completion=False,
    # Plain click help: it reads well at 80 columns, and flags show as flags (Rich panels
    # squeeze the help text into a narrow column and label every flag `<bool>`).
    rich_markup_mode=None,
)
console = Console(highlight=False)


def main() -> None:
    """Console-script entry point: kern errors become a message and exit code 1."""
    try:
        app()
    except KernError as exc:
        _error(exc)
        raise SystemExit(1) from exc


def _error(message: object, *, prefix: str = "error:") -> None:
    """``message`` after a red prefix, escaped: error texts carry brackets (an install hint's
    ``'kern-agents[mcp]'``) that Rich would otherwise read as markup and swallow."""
    console.print(f"[red]{prefix}[/red] {escape(str(message))}")


def _load_model(model: Model) -> None:
    """Load an in-process model now, under a status line, rather than silently on the first
    turn: the first load reads the weights from disk and takes seconds."""
    from kern.models.llamacpp import LlamaCpp  # llama_cpp itself is imported only to load

    if not isinstance(model, LlamaCpp):
        return
    started = time.monotonic()
    with console.status(f"loading the local model {model.id} (usually a few seconds) …"):
        model.llama()
    console.print(f"[dim]loaded {model.id} in {time.monotonic() - started:.1f}s[/dim]")


# Chosen for what a 135M model does reliably (tried as a new user would, several scripts and
# seeds): from one message that states name, role and company together it extracts the name and
# the company; told the same facts one per turn, it copies the stored profile back on later
# turns and learns nothing new. Asked in a later session, it answers "What is my name?" and
# "What company do I work at?" from the recalled profile most of the time, and other wordings
# rarely. Session 2 shares no history with session 1, so what the agent knows there about
# Alice was learned and recalled. No tools: offered one, the model calls it on every turn.
DEMO_SCRIPT: list[tuple[str, list[str]]] = [
    ("session-1", ["Hi! I'm Alice, a data engineer at Netflix."]),
    ("session-2", ["What is my name?", "What company do I work at?"]),
]
# A 135M model ignores recalled data unless the instructions point at it.
DEMO_INSTRUCTIONS = (
    "You are a friendly assistant. Answer the user's question in one short sentence, using "
    "the user profile below."
)


@app.command()
def demo(
    model: ModelOption = None,
    base_url: BaseUrlOption = None,
    db: Annotated[
        Path, typer.Option("--db", help="Demo SQLite file (deleted and recreated)")
    ] = Path("tmp/demo.db"),
) -> None:
    """A short scripted conversation over two sessions, then what was stored."""
    from kern.db.sqlite import SqliteDb
    from kern.models.llamacpp import LlamaCpp

    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    chosen = pick_model(model, base_url=base_url)
    console.print(
        f"[bold]kern demo[/bold] · model [cyan]{chosen.name}[/cyan] · db {escape(str(db))}"
    )
    if not os.environ.get("OPENAI_API_KEY") and model is None:
        console.print("[dim]offline: set OPENAI_API_KEY to run the demo against OpenAI[/dim]")
    _load_model(chosen)
    database = SqliteDb(db_file=str(db))
    # The script's facts are profile fields, so the profile is the one store: what it holds is
    # easy to check against the script. (learning=True also keeps free-form memories and a
    # session summary, which a 135M model writes poorly: it copies whole replies into them.)
    lm = LearningMachine(user_profile=True)
    agent = Agent(
        model=chosen,
        db=database,
        instructions=DEMO_INSTRUCTIONS,
        learning=lm,
    )
    for session_id, messages in DEMO_SCRIPT:
        console.rule(f"{session_id} (a new conversation: no shared chat history)")
        for text in messages:
            console.print(f"[bold green]you ›[/bold green] {escape(text)}")
            try:
                output = _chat_turn(agent, text, user_id="alice", session_id=session_id)
            except KernError as exc:  # a small local model can fail a turn; show it, go on
                console.print()
                _error(exc, prefix="this turn failed:")
                continue
            console.print("[dim]recalled into the instructions:[/dim]")
            console.print(_recalled_data(output.recalled), style="dim", markup=False)
        with console.status("learning from the session (background extraction) …"):
            _wait_for_learning(lm, "alice", timeout=300)
        console.print(f"[bold magenta]learned after {session_id}:[/bold magenta]")
        _show_learnings(lm, "alice")
    console.rule("stored")
    table = Table("session", "run", "input", "model calls", "tokens in/out", "seconds")
    for session in reversed(database.list_sessions(user_id="alice")):
        for index, run in enumerate(database.get_runs(session.session_id), 1):
            m = run.metrics
            table.add_row(
                session.session_id,
                str(index),
                Text(run.input),  # wrapped by the table, never cut
                str(m["model_calls"]),
                f"{m['input_tokens']}/{m['output_tokens']}",
                f"{m['duration']:.2f}",
            )
    console.print(table)
    jobs = database.list_jobs()
    done = sum(j.status == "done" for j in jobs)
    console.print(f"extraction jobs: {done}/{len(jobs)} done, one model call each")
    for job in jobs:
        if job.error:
            _error(f"job {job.id[:8]} {job.status}: {job.error}", prefix="warning:")
    if isinstance(chosen, LlamaCpp) and chosen.id.startswith("SmolLM2-135M"):
        console.print(
            "\n[dim]SmolLM2-135M is a very small model: it picks a profile out of a message "
            "and answers short questions from it, but it can store a field you never gave and "
            "its longer answers wander. For a stronger model, set OPENAI_API_KEY or pass "
            "--model/--base-url for another server.[/dim]"
        )
    console.print(
        f"\nthe database is kept: [cyan]kern learnings list --db {db} --user-id alice[/cyan]"
    )
    agent.close()
    database.close()


def _recalled_data(recalled: str) -> str:
    """What a run recalled, without the fixed header that introduces it to the model."""
    from kern.learn.prompts import LEARNED_CONTEXT_HEADER

    data = recalled.removeprefix(LEARNED_CONTEXT_HEADER).strip()
    return "\n".join(line for line in data.splitlines() if line.strip()) or "(nothing recalled)"


def _wait_for_learning(lm: LearningMachine, user_id: str, *, timeout: float) -> None:
    """Wait for ``user_id``'s extraction jobs until each is done or has failed an attempt: a
    failed job waits for a retry by a later process, which this one would wait for in vain."""
    deadline = time.monotonic() + timeout
    while not lm.wait_for_jobs(user_id, timeout=0.5) and time.monotonic() < deadline:
        jobs = [j for j in lm.db.list_jobs(limit=1000) if j.user_id == user_id]
        if all(j.status == "done" or j.error for j in jobs):
            return


def _profile_lines(lm: LearningMachine, user_id: str) -> list[str]:
    """The user's profile as ``field: value`` lines, fields in the schema's order."""
    profile = lm.user_profile.get(user_id=user_id).model_dump(exclude_none=True)
    return [f"{field.replace('_', ' ')}: {value}" for field, value in profile.items()]


def _show_learnings(lm: LearningMachine, user_id: str) -> None:
    profile = _profile_lines(lm, user_id)
    console.print("[magenta]profile[/magenta]", escape(" · ".join(profile) or "(empty)"))


def _chat_turn(agent: Agent, text: str, *, user_id: str, session_id: str) -> RunOutput:
    """Run one turn, streaming the answer to the terminal."""
    console.print("[bold blue]agent ›[/bold blue] ", end="")
    for event in agent.run(text, user_id=user_id, session_id=session_id, stream=True):
        if isinstance(event, ContentDelta):
            console.print(event.text, end="", markup=False)
        elif isinstance(event, ToolCallCompleted):
            console.print(
                f"[dim]\\[tool {escape(event.call.name)} → {escape(event.content)}][/dim] ",
                end="",
            )
        elif isinstance(event, RunCompleted):
            m = event.output.metrics
            console.print(f"\n[dim]({m.model_calls} model call(s), {m.duration:.2f}s)[/dim]")
            return event.output
    raise AssertionError("a run ends with RunCompleted")


@app.command()
def chat(
    user_id: Annotated[str, typer.Option(help="Who you are")] = "me",
    session_id: Annotated[str | None, typer.Option(help="Resume a session")] = None,
    model: ModelOption = None,
    base_url: BaseUrlOption = None,
    db: Annotated[
        str, typer.Option("--db", help="SQLite file (created if missing) or postgresql:// URL")
    ] = "tmp/kern.db",
) -> None:
    """Chat with a learning agent in the terminal.

    Ctrl-C stops the answer being written; Ctrl-C at the prompt, Ctrl-D or /quit leaves.
    """
    from kern.db import open_db

    chosen = pick_model(model, base_url=base_url)
    _load_model(chosen)
    agent = Agent(model=chosen, db=open_db(db), session_id=session_id, learning=True)
    lm = agent.get_learning_machine()
    assert lm is not None
    console.print(
        f"session {agent.session_id} · model {chosen.name} · /memory /profile /proposals "
        "/forget /quit · Ctrl-C stops an answer"
    )
    while True:
        try:
            # The terminal echoes what is typed; the line is not printed again.
            text = console.input("[bold green]you ›[/bold green] ").strip()
        except (EOFError, KeyboardInterrupt):
            console.print("\nbye: what was learned is kept in", db, markup=False)
            break
        if text in ("/quit", "/exit"):
            console.print("bye: what was learned is kept in", db, markup=False)
            break
        if text.startswith("/"):
            _slash_command(text, lm, user_id)
        elif text:
            try:
                output = _chat_turn(agent, text, user_id=user_id, session_id=agent.session_id)
            except KeyboardInterrupt:
                console.print("\n[yellow]stopped[/yellow] [dim](Ctrl-C at the prompt quits)[/dim]")
            except KernError as exc:
                console.print()
                _error(exc)
            else:
                _warn_if_learning_failed(output, timeout=lm.consistency_timeout)
    agent.close()


def _warn_if_learning_failed(output: RunOutput, *, timeout: float) -> None:
    """One line after a turn whose learning failed. The next turn would wait for the job
    anyway (read-your-writes), so waiting here costs no extra time."""
    if output.learning is not None and output.learning.wait_for(timeout) == "failed":
        error = escape(output.learning.error or "")
        console.print(f"[yellow]learning from this turn failed:[/yellow] {error}", soft_wrap=True)


def _slash_command(text: str, lm: LearningMachine, user_id: str) -> None:
    """The REPL's commands: look at and manage what the agent learned about you."""
    command = text.split()[0]
    lm.wait_for_jobs(user_id, timeout=30)  # what the last turn taught, not what it still learns
    if command == "/memory":
        memories = lm.user_memory.list(user_id=user_id)
        for memory in memories:
            console.print(f"  {memory.id[:8]}  {memory.content}", markup=False)
        console.print(f"[dim]{len(memories)} memor{'y' if len(memories) == 1 else 'ies'}[/dim]")
    elif command == "/profile":
        profile = _profile_lines(lm, user_id)
        for line in profile:
            console.print(f"  {line}", markup=False)
        if not profile:
            console.print("[dim](empty profile)[/dim]")
    elif command == "/proposals":
        proposals = lm.proposals.list(user_id=user_id)
        for proposal in proposals:
            console.print(f"  {proposal.id}  {proposal.store}: {proposal.content}", markup=False)
        console.print(f"[dim]{len(proposals)} pending proposal(s)[/dim]")
    elif command == "/forget":
        removed = lm.db.delete_user(user_id)
        console.print(f"forgot everything about {user_id} ({removed} rows)", markup=False)
    else:
        console.print(
            f"[yellow]unknown command {escape(command)}[/yellow]: "
            "/memory /profile /proposals /forget /quit"
        )


@app.command()
def serve(
    app_spec: Annotated[
        str,
        typer.Option(
            "--app", help="module:name of an Agent, a FastAPI app, or a function returning one"
        ),
    ],
    host: Annotated[str, typer.Option(help="Interface to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port")] = 8000,
    tokens_file: Annotated[
        Path | None,
        typer.Option(help="JSON or TOML file of admin and user tokens (else the environment)"),
    ] = None,
) -> None:
    """The REST API, SSE chat and web UI for an agent (the `server` extra).

    Tokens come from KERN_ADMIN_TOKENS and KERN_USER_TOKENS or --tokens-file; see
    docs/server.md.
    """
    from kern.server.serve import serve as serve_app

    serve_app(app_spec, host=host, port=port, tokens_file=tokens_file)


@app.command()
def worker(
    app_spec: Annotated[
        str, typer.Option("--app", help="module:name of the app's Agent or LearningMachine")
    ],
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            help="SQLite file or postgresql:// URL, for an app without a database of its own",
        ),
    ] = None,
    concurrency: Annotated[int, typer.Option(min=1, max=64, help="Jobs run at once")] = 4,
    until_idle: Annotated[
        bool, typer.Option("--until-idle", help="Exit when the queue is empty")
    ] = False,
) -> None:
    """Run extraction jobs from the durable queue until stopped (SIGTERM/SIGINT).

    A database the app already has is never replaced by --db.
    """
    import logging

    from kern.worker import serve as serve_worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    done = serve_worker(db_url=db, app=app_spec, concurrency=concurrency, until_idle=until_idle)
    console.print(f"worker stopped after {done} job(s)")


# --------------------------------------------------------------------------- learnings

learnings_app = typer.Typer(
    help="Inspect and maintain what agents learned, in a kern database.",
    no_args_is_help=True,
)
app.add_typer(learnings_app, name="learnings")

DbOption = Annotated[str, typer.Option("--db", help="SQLite file or postgresql:// URL")]
UserOption = Annotated[str, typer.Option("--user-id", help="Whose learnings")]


def _machine(db_target: str) -> LearningMachine:
    """Every built-in store over the database: the CLI reads what any agent wrote."""
    from kern.db import open_db

    if "://" not in db_target and not Path(db_target).exists():
        raise typer.BadParameter(f"no database at {db_target}", param_hint="--db")
    return LearningMachine(
        db=open_db(db_target),
        user_profile=True,
        user_memory=True,
        session_context=True,
        entity_memory=True,
        learned_knowledge=True,
        decision_log=True,
    )


@learnings_app.command("list")
def learnings_list(
    db: DbOption,
    user_id: UserOption,
    store: Annotated[str | None, typer.Option(help="Only this store")] = None,
    status: Annotated[str, typer.Option(help="active, proposed, deleted …")] = "active",
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines")] = False,
) -> None:
    """A user's learnings, newest first."""
    from kern.db.base import LearningFilter

    lm = _machine(db)
    if store is not None and store not in lm.stores:
        raise typer.BadParameter(f"unknown store {store!r}; one of {', '.join(lm.stores)}")
    where = LearningFilter(store=store, user_id=user_id, statuses=(status,))  # type: ignore[arg-type]
    found = lm.db.list_learnings(where, limit=limit)
    # A session context the extraction left empty is a row with nothing to read.
    records = [r for r in found if r.text.strip()]
    _print_rows(
        [
            {
                "id": r.id,
                "store": r.store,
                "kind": r.kind,
                "content": r.content,
                "status": r.status,
                "created_at": r.created_at.isoformat() if r.created_at else None,
            }
            for r in records
        ],
        ("id", "store", "kind", "content", "created"),
        [
            (
                r.id[:12],
                r.store,
                r.kind,
                r.text,
                f"{r.created_at:%Y-%m-%d}" if r.created_at else "",
            )
            for r in records
        ],
        noun="item(s)",
        as_json=as_json,
    )
    if len(records) < len(found) and not as_json:
        console.print(
            f"[dim]({len(found) - len(records)} empty session context(s) not shown)[/dim]"
        )


@learnings_app.command("jobs")
def learnings_jobs(
    db: DbOption,
    status: Annotated[
        str | None, typer.Option(help="pending, running, done or failed (default: all)")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines")] = False,
) -> None:
    """The extraction queue, newest first: each job's status, attempts and last error."""
    from kern.db.base import JobStatus

    statuses = get_args(JobStatus)
    if status is not None and status not in statuses:
        raise typer.BadParameter(f"{status!r}: one of {', '.join(statuses)}", param_hint="--status")
    lm = _machine(db)
    jobs = lm.db.list_jobs(status=cast(JobStatus | None, status), limit=limit)
    _print_rows(
        [
            {
                "id": job.id,
                "status": job.status,
                "attempts": job.attempts,
                "max_attempts": job.max_attempts,
                "user_id": job.user_id,
                "run_id": job.run_id,
                "error": job.error,
                "created_at": job.created_at.isoformat() if job.created_at else None,
            }
            for job in jobs
        ],
        ("id", "status", "attempts", "user", "created"),
        [
            (
                job.id[:12],
                job.status,
                f"{job.attempts}/{job.max_attempts}",
                job.user_id or "",
                f"{job.created_at:%Y-%m-%d %H:%M}" if job.created_at else "",
            )
            for job in jobs
        ],
        noun="job(s)",
        as_json=as_json,
    )
    errors = [job for job in jobs if job.error] if not as_json else []
    for job in errors:
        # One line per error, at the terminal's width: an error can be a long server reply.
        line = _one_line(job.error or "", console.width - 15)
        console.print(f"  {job.id[:12]} ", escape(line), style="yellow", highlight=False)
    if errors:
        console.print("[dim]last error of each job; --json prints them whole[/dim]")


def _one_line(text: str, width: int) -> str:
    """``text`` on one line of at most ``width`` characters, cut at a word with an ellipsis."""
    return textwrap.shorten(" ".join(text.split()), width=max(width, 20), placeholder=" …")


def _print_rows(
    rows: list[dict[str, Any]],
    headers: tuple[str, ...],
    cells: list[tuple[str, ...]],
    *,
    noun: str,
    as_json: bool,
) -> None:
    """``rows`` as JSON lines, for scripts; or ``cells`` as a table under ``headers``."""
    if as_json:
        for row in rows:
            typer.echo(json.dumps(row, ensure_ascii=False))
        return
    table = Table(*headers)
    for row_cells in cells:
        table.add_row(*(Text(cell) for cell in row_cells))  # stored text is never markup
    console.print(table)
    console.print(f"[dim]{len(cells)} {noun}[/dim]")


@learnings_app.command("show")
def learnings_show(
    item_id: Annotated[str, typer.Argument(help="An item id (or its first characters)")],
    db: DbOption,
) -> None:
    """One item and its full history."""
    lm = _machine(db)
    record = lm.db.get_learning(_full_id(lm, item_id))
    if record is None:
        _error(f"no item {item_id!r}")
        raise typer.Exit(2)
    console.print(f"[bold]{record.store}[/bold] {record.kind} {record.id}", markup=False)
    console.print(
        f"status {record.status} · version {record.version} · user {record.user_id}",
        markup=False,
    )
    content = record.content
    if content.keys() == {"field", "value"}:  # a profile field: one row per field
        content = {str(content["field"]): content["value"]}
    for field, value in content.items():
        if value not in (None, "", [], {}):
            console.print(f"  {field.replace('_', ' ')}: {_readable(value)}", markup=False)
    table = Table("when", "action", "by", "run", "after")
    for event in lm.db.history(learning_id=record.id):
        after = (event.after or {}).get("text", "") if isinstance(event.after, dict) else ""
        table.add_row(
            f"{event.created_at:%Y-%m-%d %H:%M:%S}",
            event.action,
            Text(event.actor or ""),
            (event.run_id or "")[:12],
            Text(str(after)),
        )
    console.print(table)


def _readable(value: object) -> str:
    """A stored value for people: lists joined with commas, mappings as ``key: value``."""
    if isinstance(value, list):
        return ", ".join(_readable(v) for v in value)
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_readable(v)}" for k, v in value.items())
    return str(value)


def _full_id(lm: LearningMachine, prefix: str) -> str:
    """The id of the one item whose id starts with ``prefix`` (``list`` shows 12 characters),
    else ``prefix`` as given; two matches are an error asking for more characters."""
    from sqlalchemy import select

    from kern.db.schema import learnings
    from kern.db.sql import SqlDb

    if not isinstance(lm.db, SqlDb):
        return prefix
    query = select(learnings.c.id).where(learnings.c.id.startswith(prefix, autoescape=True))
    with lm.db.transaction(write=False, action="find an item by id prefix") as conn:
        found = list(conn.execute(query.limit(2)).scalars())
    if len(found) > 1:
        _error(f"several items start with {prefix!r}: give more of the id")
        raise typer.Exit(2)
    return found[0] if found else prefix


@learnings_app.command("export")
def learnings_export(
    db: DbOption,
    user_id: UserOption,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="File (default: stdout)")
    ] = None,
) -> None:
    """Everything stored about a user, as one JSON document."""
    from kern.db.userdata import export_user

    data = export_user(_machine(db).db, user_id).model_dump_json(indent=2)
    if output is None:
        typer.echo(data)
    else:
        output.write_text(data)
        console.print(f"exported {user_id} to {output}", markup=False)


@learnings_app.command("import")
def learnings_import(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="An export file")],
    db: DbOption,
) -> None:
    """Load a user's export back (ids, history and timestamps kept)."""
    from kern.db.userdata import UserExport, import_user
    from kern.learn.imports import import_check

    data = UserExport.model_validate_json(file.read_text())
    machine = _machine(db)
    with console.status(f"importing {data.user_id} …"):
        result = import_user(machine.db, data.user_id, data, check=import_check(machine.stores))
    console.print(f"imported {data.user_id}: {result}", markup=False)


@learnings_app.command("forget")
def learnings_forget(
    db: DbOption,
    user_id: UserOption,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask")] = False,
) -> None:
    """Delete every row of a user: learnings, vectors, history, sessions, runs, jobs."""
    if not yes and not typer.confirm(f"Forget everything about {user_id}? This cannot be undone"):
        raise typer.Exit(1)
    removed = _machine(db).db.delete_user(user_id)
    console.print(f"forgot {user_id}: {removed} row(s) removed", markup=False)


def _report(report: CurationReport, verb: str) -> None:
    for removal in report.removed:
        console.print(
            f"  {removal.store:<18} {removal.id[:12]}  {escape(removal.content[:60])}"
            f"  [dim]({escape(removal.reason)})[/dim]"
        )
    prefix = "would remove" if report.dry_run else verb
    console.print(f"{prefix} {len(report)} item(s)")


@learnings_app.command("prune")
def learnings_prune(
    db: DbOption,
    user_id: UserOption,
    max_age_days: Annotated[float | None, typer.Option(help="Remove older items")] = None,
    max_count: Annotated[int | None, typer.Option(help="Keep the newest N per store")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only show what would go")] = False,
) -> None:
    """Remove old or excess items (recorded in history; undoable)."""
    report = _machine(db).curator.prune(
        user_id=user_id, max_age_days=max_age_days, max_count=max_count, dry_run=dry_run
    )
    _report(report, "pruned")


@learnings_app.command("dedupe")
def learnings_dedupe(
    db: DbOption,
    user_id: UserOption,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only show what would merge")] = False,
) -> None:
    """Merge exact and near-duplicate items into the oldest of each group."""
    with console.status("looking for duplicates …"):
        report = _machine(db).curator.deduplicate(user_id=user_id, dry_run=dry_run)
    _report(report, "merged")


@app.command()
def mcp(
    user_id: UserOption,
    db: Annotated[str | None, typer.Option("--db", help="SQLite file or postgresql:// URL")] = None,
    create: Annotated[
        bool, typer.Option("--create", help="Create the SQLite file if it does not exist")
    ] = False,
    app_spec: Annotated[
        str | None,
        typer.Option("--app", help="module:name of your Agent: serve its stores and modes"),
    ] = None,
    namespace: Annotated[
        str | None, typer.Option(help="Namespace of shared stores (default global)")
    ] = None,
) -> None:
    """Serve the stores' tools, and the user's profile and memories, to MCP clients over
    stdio, as one user."""
    from kern.mcp import main as mcp_main

    argv = ["--user-id", user_id]
    for flag, value in (("--db", db), ("--app", app_spec), ("--namespace", namespace)):
        if value is not None:
            argv += [flag, value]
    mcp_main(argv + (["--create"] if create else []))


if __name__ == "__main__":  # pragma: no cover - at the end, once every command is defined
    main()
