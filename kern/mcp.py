"""``kern mcp``: the learning stores' tools for any MCP client, over stdio.

The server is scoped when it starts: every call runs as the configured user, in the configured
namespace, exactly as the same tools would inside an agent run. Nothing a client sends can
change the scope: tools take no user, namespace or agent arguments.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from kern._extras import require
from kern.context import RunContext
from kern.db import open_db
from kern.learn import LearningMachine
from kern.tools import Tool

__all__ = ["mcp_machine", "serve_stdio"]


def mcp_machine(
    db: Any, *, namespace: str = "global", agent_id: str | None = None
) -> LearningMachine:
    """A machine with every store in agentic mode: MCP clients decide what to save."""
    from kern.learn import (
        DecisionLogConfig,
        EntityMemoryConfig,
        LearnedKnowledgeConfig,
        LearningMode,
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


async def serve_stdio(machine: LearningMachine, *, user_id: str, session_id: str = "mcp") -> None:
    """Serve the machine's tools on stdin/stdout until the client disconnects."""
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

    tools: dict[str, Tool] = {
        tool.name: tool for store in machine.stores.values() for tool in store.get_tools(context())
    }

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

    server: Any = Server("kern", on_list_tools=list_tools, on_call_tool=call_tool)
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


def main(argv: list[str] | None = None) -> None:
    """``python -m kern.mcp --db FILE --user-id ID [--namespace NS]`` (also ``kern mcp``)."""
    import argparse

    import anyio

    parser = argparse.ArgumentParser(prog="kern mcp", description=__doc__.split("\n")[0])
    parser.add_argument("--db", required=True, help="SQLite file (or a postgresql:// URL)")
    parser.add_argument("--user-id", required=True)
    parser.add_argument("--namespace", default="global")
    parser.add_argument("--session-id", default="mcp")
    args = parser.parse_args(argv)
    db = open_db(args.db)
    try:
        machine = mcp_machine(db, namespace=args.namespace)
        anyio.run(lambda: serve_stdio(machine, user_id=args.user_id, session_id=args.session_id))
    finally:
        db.close()


if __name__ == "__main__":
    main()
