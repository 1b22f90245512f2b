"""`kern mcp` over stdio, driven by the official MCP client."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("mcp", reason="MCP TESTS SKIPPED: the `mcp` extra is not installed")

from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from kern.db.sqlite import SqliteDb
from kern.learn import LearningMachine


async def test_an_mcp_client_lists_tools_saves_and_recalls_a_memory(tmp_path: Path) -> None:
    db_file = tmp_path / "mcp.db"
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "kern.mcp", "--db", str(db_file), "--user-id", "alice"],
    )
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        names = {tool.name for tool in (await session.list_tools()).tools}
        assert {
            "add_memory",
            "search_memories",
            "update_user_profile",
            "remember_entity_fact",
            "save_learning",
            "log_decision",
        } <= names
        for tool in (await session.list_tools()).tools:
            assert not {"user_id", "namespace", "agent_id"} & set(
                tool.input_schema.get("properties", {})
            )
        saved = await session.call_tool("add_memory", {"content": "Alice keeps bees."})
        assert not saved.is_error
        assert "Saved memory" in saved.content[0].text
        found = await session.call_tool("search_memories", {"query": "bees"})
        rows = json.loads(found.content[0].text)
        assert [r["content"] for r in rows] == ["Alice keeps bees."]
        bad = await session.call_tool("add_memory", {"content": 3})
        assert bad.is_error

    # Stored for alice, in the same database an agent would use, and for nobody else.
    db = SqliteDb(db_file=str(db_file))
    lm = LearningMachine(db=db, user_memory=True)
    assert [m.content for m in lm.user_memory.list(user_id="alice")] == ["Alice keeps bees."]
    assert lm.user_memory.list(user_id="bob") == []
    db.close()
