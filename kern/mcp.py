"""``kern mcp``: the learning stores' tools, and the user's profile and memories as resources,
for any MCP client, over stdio.

The server is scoped when it starts: every call runs as the configured user, in the configured
namespace, exactly as the same tools would inside an agent run. Nothing a client sends can
change the scope: tools take no user, namespace or agent arguments.

With ``--app module:agent`` the app's own learning configuration is served: its stores, modes,
schemas and namespaces. A store in propose mode offers only proposal tools (the user confirms
with ``confirm_proposal`` or in the web UI); an always-mode store learns from conversations,
so it offers no tools here.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import kern
from kern._extras import require
from kern._load import load_spec
from kern.context import RunContext
from kern.db import open_db
from kern.errors import ConfigError, KernError
from kern.learn import LearningMachine, LearningMode
from kern.tools import Tool

__all__ = ["machine_from_app", "mcp_machine", "open_mcp_db", "serve_stdio", "version"]

#: The resources a server offers (when their store is enabled): URI → (store, title).
RESOURCES = {
    "kern://profile": ("user_profile", "The user's profile"),
    "kern://memories": ("user_memory", "What is remembered about the user"),
}


def version() -> str:
    """kern's version, as the MCP server reports it to clients (``kern.__version__``: the
    distribution is ``kern-agents``, and ``kern`` on PyPI is another project's)."""
    return kern.__version__


def open_mcp_db(target: str, *, create: bool = False) -> Any:
    """The database at ``target`` (a SQLite file or a ``postgresql://`` URL). A SQLite file
    that does not exist is refused unless ``create``: a mistyped path must not start a new,
    empty memory that the client then writes to."""
    if "://" not in target and target != ":memory:" and not create:
        path = Path(target).expanduser()
        if not path.is_file():
            raise ConfigError(
                f"no database file at {str(path)!r}: check --db (the file an agent or "
                "`kern chat` wrote), or pass --create to start a new one"
            )
    return open_db(target)


def mcp_machine(
    db: Any, *, namespace: str = "global", agent_id: str | None = None
) -> LearningMachine:
    """A machine with every store in agentic mode: MCP clients decide what to save."""
    from kern.learn import (
        DecisionLogConfig,
        EntityMemoryConfig,
        LearnedKnowledgeConfig,
        SessionContextConfig,
        UserMemoryConfig,
        UserProfileConfig,
    )

    agentic = LearningMode.AGENTIC
    return LearningMachine(
        db=db,
        agent_id=agent_id,
        user_profile=UserProfileConfig(mode=agentic),
        user_memory=UserMemoryConfig(mode=agentic),
        session_context=SessionContextConfig(mode=agentic),
        entity_memory=EntityMemoryConfig(mode=agentic, namespace=namespace),
        learned_knowledge=LearnedKnowledgeConfig(mode=agentic, namespace=namespace),
        decision_log=DecisionLogConfig(mode=agentic, namespace=namespace),
    )


def machine_from_app(app_spec: str) -> LearningMachine:
    """The learning machine of ``module:name`` (an ``Agent`` with learning, a
    ``LearningMachine`` with a database, or a function with no arguments returning one)."""
    from kern.agent import Agent

    target = load_spec(
        app_spec,
        accept=lambda t: isinstance(t, Agent | LearningMachine),
        what="an Agent or a LearningMachine",
    )
    machine = target.get_learning_machine() if isinstance(target, Agent) else target
    if machine is None:
        raise ConfigError(f"{app_spec!r} is an Agent without learning: nothing to serve")
    assert isinstance(machine, LearningMachine)
    machine.db  # noqa: B018 - a machine without a database fails here, before serving
    return machine


def server_tools(machine: LearningMachine, ctx: RunContext) -> dict[str, Tool]:
    """The tools an agent run would get from the stores (by their modes), by name."""
    tools = [tool for store in machine.stores.values() for tool in store.get_tools(ctx)]
    if any(s.mode is LearningMode.PROPOSE for s in machine.stores.values()):
        tools.append(machine.proposals.confirm_tool())
    return {tool.name: tool for tool in tools}


def read_resource(machine: LearningMachine, uri: str, *, user_id: str) -> str:
    """A resource's JSON text (``KeyError`` for a URI this machine does not offer)."""
    store, _ = RESOURCES[uri]
    if store not in machine.stores:
        raise KeyError(uri)
    if store == "user_profile":
        profile = machine.user_profile.get(user_id=user_id)
        return json.dumps(profile.model_dump(mode="json", exclude_none=True), ensure_ascii=False)
    memories = machine.user_memory.list(user_id=user_id, limit=500)
    rows = [
        {"id": m.id, "content": m.content, "created_at": m.created_at.isoformat()} for m in memories
    ]
    return json.dumps(rows, ensure_ascii=False)


async def serve_stdio(machine: LearningMachine, *, user_id: str, session_id: str = "mcp") -> None:
    """Serve the machine's tools and resources on stdin/stdout until the client disconnects."""
    require("mcp", "mcp")
    import mcp_types as types
    from mcp.server.lowlevel.server import Server
    from mcp.server.stdio import stdio_server

    def context() -> RunContext:
        # A fresh run id per call: a proposal made by one call can be confirmed by a later one.
        return RunContext(
            run_id=uuid.uuid4().hex,
            session_id=session_id,
            user_id=user_id,
            agent_id=machine.agent_id,
        )

    tools = server_tools(machine, context())
    offered = {uri: spec for uri, spec in RESOURCES.items() if spec[0] in machine.stores}

    async def list_tools(request: Any, params: Any) -> Any:
        return types.ListToolsResult(
            tools=[
                types.Tool(name=t.name, description=t.description, input_schema=t.parameters)
                for t in tools.values()
            ]
        )

    async def call_tool(request: Any, params: Any) -> Any:
        tool = tools.get(params.name)
        if tool is None:
            text, is_error = f"Unknown tool {params.name!r}.", True
        else:
            outcome = await tool.call(json.dumps(params.arguments or {}), context())
            text, is_error = outcome.content, outcome.is_error
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=text)], is_error=is_error
        )

    async def list_resources(request: Any, params: Any) -> Any:
        return types.ListResourcesResult(
            resources=[
                types.Resource(uri=uri, name=store, title=title, mime_type="application/json")
                for uri, (store, title) in offered.items()
            ]
        )

    async def read(request: Any, params: Any) -> Any:
        uri = str(params.uri)
        if uri not in offered:
            known = ", ".join(offered) or "none"
            raise KernError(f"no resource {uri!r} on this server (offered: {known})")
        text = await asyncio.to_thread(read_resource, machine, uri, user_id=user_id)
        return types.ReadResourceResult(
            contents=[types.TextResourceContents(uri=uri, mime_type="application/json", text=text)]
        )

    server: Any = Server(
        "kern",
        version=version(),
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_list_resources=list_resources,
        on_read_resource=read,
    )
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


def main(argv: list[str] | None = None) -> None:
    """``python -m kern.mcp (--db FILE [--create] | --app module:agent) --user-id ID``
    (also ``kern mcp``)."""
    import argparse

    import anyio

    parser = argparse.ArgumentParser(prog="kern mcp", description=__doc__.split("\n")[0])
    parser.add_argument("--db", help="SQLite file (or a postgresql:// URL)")
    parser.add_argument(
        "--create", action="store_true", help="Create the SQLite file if it does not exist"
    )
    parser.add_argument(
        "--app",
        help="module:name of your Agent (or LearningMachine): serve its stores, modes and "
        "database instead of every store in agentic mode",
    )
    parser.add_argument("--user-id", required=True)
    parser.add_argument(
        "--namespace", help="Namespace of the shared stores (default: global; not with --app)"
    )
    parser.add_argument("--session-id", default="mcp")
    args = parser.parse_args(argv)
    try:
        if args.app is not None:
            if args.db is not None or args.namespace is not None or args.create:
                raise ConfigError(
                    "--app serves the app's own database and namespaces: drop --db, "
                    "--create and --namespace"
                )
            machine = machine_from_app(args.app)
            db = None
        else:
            if args.db is None:
                raise ConfigError("pass --db FILE (or --app module:agent)")
            db = open_mcp_db(args.db, create=args.create)
            machine = mcp_machine(db, namespace=args.namespace or "global")
    except KernError as exc:
        parser.error(str(exc))
    try:
        anyio.run(lambda: serve_stdio(machine, user_id=args.user_id, session_id=args.session_id))
    finally:
        if db is not None:
            db.close()


if __name__ == "__main__":
    main()
