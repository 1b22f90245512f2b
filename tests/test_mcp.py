"""`kern mcp` over stdio, driven by the official MCP client: tools, resources, the version,
a database that must exist, and an app's own learning configuration (``--app``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mcp", reason="MCP TESTS SKIPPED: the `mcp` extra is not installed")

from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp_types import TextResourceContents

from kern.db.sqlite import SqliteDb
from kern.learn import LearningMachine
from kern.mcp import version

ROOT = Path(__file__).resolve().parents[1]


async def test_an_mcp_client_lists_tools_saves_and_recalls_a_memory(tmp_path: Path) -> None:
    db_file = tmp_path / "mcp.db"
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "kern.mcp", "--db", str(db_file), "--create", "--user-id", "alice"],
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


def test_a_database_file_that_does_not_exist_is_refused_unless_created(tmp_path: Path) -> None:
    missing = tmp_path / "typo.db"
    refused = subprocess.run(
        [sys.executable, "-m", "kern.mcp", "--db", str(missing), "--user-id", "alice"],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert refused.returncode == 2
    assert f"no database file at '{missing}'" in refused.stderr
    assert "--create" in refused.stderr
    assert not missing.exists()  # nothing was created behind the user's back


async def test_the_server_reports_kerns_version_and_offers_profile_and_memories(
    tmp_path: Path,
) -> None:
    db_file = tmp_path / "mcp.db"
    SqliteDb(db_file=str(db_file)).close()  # an existing database: no --create needed
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "kern.mcp", "--db", str(db_file), "--user-id", "alice"],
    )
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        init = await session.initialize()
        assert init.server_info.name == "kern"
        assert init.server_info.version == version() != ""
        await session.call_tool("add_memory", {"content": "Alice keeps bees."})
        await session.call_tool(
            "update_user_profile", {"name": "Alice", "communication_style": "short"}
        )
        listed = {str(r.uri): r for r in (await session.list_resources()).resources}
        assert set(listed) == {"kern://profile", "kern://memories"}
        assert listed["kern://profile"].mime_type == "application/json"
        profile = await read_json(session, "kern://profile")
        assert profile == {"name": "Alice", "communication_style": "short"}
        memories = await read_json(session, "kern://memories")
        assert [m["content"] for m in memories] == ["Alice keeps bees."]
        with pytest.raises(Exception, match="no resource 'kern://secrets'"):
            await session.read_resource("kern://secrets")


async def read_json(session: ClientSession, uri: str) -> Any:
    (content,) = (await session.read_resource(uri)).contents
    assert isinstance(content, TextResourceContents)
    return json.loads(content.text)


APP = """
from kern.agent import Agent
from kern.db.sqlite import SqliteDb
from kern.learn import LearningMachine, LearningMode, UserMemoryConfig, UserProfileConfig
from kern.models.testing import TestModel

agent = Agent(
    model=TestModel(),
    db=SqliteDb(db_file={db!r}),
    learning=LearningMachine(
        user_memory=UserMemoryConfig(mode=LearningMode.PROPOSE),
        user_profile=UserProfileConfig(mode=LearningMode.ALWAYS),
    ),
)
"""


async def test_with_an_app_its_modes_hold_a_propose_store_only_proposes(tmp_path: Path) -> None:
    db_file = tmp_path / "app.db"
    (tmp_path / "mcp_app_under_test.py").write_text(textwrap.dedent(APP.format(db=str(db_file))))
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "kern.mcp", "--app", "mcp_app_under_test:agent", "--user-id", "alice"],
        cwd=str(tmp_path),
        # The app's directory is the working directory; kern is still this checkout's.
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        names = {tool.name for tool in (await session.list_tools()).tools}
        # Memories are proposed, never saved; the always-mode profile learns from
        # conversations, so it offers no tool; the other stores are not enabled.
        assert "propose_memory" in names and "confirm_proposal" in names
        assert not {"add_memory", "update_user_profile", "save_learning"} & names
        proposed = await session.call_tool("propose_memory", {"content": "Alice keeps bees."})
        assert not proposed.is_error, proposed.content
        assert await read_json(session, "kern://memories") == []

    db = SqliteDb(db_file=str(db_file))
    lm = LearningMachine(db=db, user_memory=True)
    assert lm.user_memory.list(user_id="alice") == []
    assert [p.content for p in lm.proposals.list(user_id="alice")] == ["Alice keeps bees."]
    db.close()


def test_app_and_db_together_are_refused() -> None:
    refused = subprocess.run(
        [sys.executable, "-m", "kern.mcp", "--app", "x:agent", "--db", "x.db", "--user-id", "a"],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert refused.returncode == 2 and "--app serves the app's own database" in refused.stderr
