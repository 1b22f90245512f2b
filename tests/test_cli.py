"""The `kern` command line, through typer's runner."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

import kern.cli
from kern.cli import app
from kern.db.base import JobRecord
from kern.db.sqlite import SqliteDb
from kern.errors import MissingDependencyError
from kern.learn import LearningMachine

runner = CliRunner()


@pytest.fixture
def db_file(tmp_path: Path) -> str:
    path = str(tmp_path / "cli.db")
    db = SqliteDb(db_file=path)
    lm = LearningMachine(db=db, user_memory=True, user_profile=True)
    old = datetime.now(UTC) - timedelta(days=200)
    lm.user_memory.add("Alice keeps bees.", user_id="alice", created_at=old)
    lm.user_memory.add("Alice keeps bees.", user_id="alice")
    lm.user_memory.add("Alice rows on Sundays.", user_id="alice")
    lm.user_profile.update({"name": "Alice"}, user_id="alice")
    lm.user_memory.add("Bob likes chess.", user_id="bob")
    db.close()
    return path


def test_every_command_has_help() -> None:
    for args in (
        ["--help"],
        ["demo", "--help"],
        ["chat", "--help"],
        ["mcp", "--help"],
        ["serve", "--help"],
        ["worker", "--help"],
        ["learnings", "--help"],
        *(
            ["learnings", c, "--help"]
            for c in ("list", "show", "jobs", "export", "import", "forget", "prune", "dedupe")
        ),
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, (args, result.output)
        assert "Usage" in result.output


def test_list_and_show(db_file: str) -> None:
    result = runner.invoke(
        app, ["learnings", "list", "--db", db_file, "--user-id", "alice", "--json"]
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert sorted(r["store"] for r in rows) == ["user_memory"] * 3 + ["user_profile"]
    assert all("Bob" not in json.dumps(r) for r in rows)
    shown = runner.invoke(app, ["learnings", "show", rows[0]["id"], "--db", db_file])
    assert shown.exit_code == 0, shown.output
    assert "create" in shown.output
    # The table shows 12 characters of an id; they are enough to show the item.
    short = runner.invoke(app, ["learnings", "show", rows[0]["id"][:12], "--db", db_file])
    assert short.exit_code == 0 and rows[0]["id"] in short.output
    several = runner.invoke(app, ["learnings", "show", "", "--db", db_file])
    assert several.exit_code == 2 and "several items" in several.output
    missing = runner.invoke(app, ["learnings", "show", "zz%", "--db", db_file])
    assert missing.exit_code == 2 and "no item" in missing.output


def test_prune_dry_run_then_real(db_file: str) -> None:
    dry = runner.invoke(
        app,
        [
            "learnings",
            "prune",
            "--db",
            db_file,
            "--user-id",
            "alice",
            "--max-age-days",
            "90",
            "--dry-run",
        ],
    )
    assert dry.exit_code == 0, dry.output
    assert "would remove 1 item" in dry.output
    real = runner.invoke(
        app, ["learnings", "prune", "--db", db_file, "--user-id", "alice", "--max-age-days", "90"]
    )
    assert "pruned 1 item" in real.output


def test_dedupe(db_file: str) -> None:
    result = runner.invoke(app, ["learnings", "dedupe", "--db", db_file, "--user-id", "alice"])
    assert result.exit_code == 0, result.output
    assert "merged 1 item" in result.output


def test_export_forget_import_round_trip(db_file: str, tmp_path: Path) -> None:
    first = tmp_path / "alice.json"
    assert (
        runner.invoke(
            app, ["learnings", "export", "--db", db_file, "--user-id", "alice", "-o", str(first)]
        ).exit_code
        == 0
    )
    forgot = runner.invoke(
        app, ["learnings", "forget", "--db", db_file, "--user-id", "alice", "--yes"]
    )
    assert forgot.exit_code == 0, forgot.output
    listed = runner.invoke(
        app, ["learnings", "list", "--db", db_file, "--user-id", "alice", "--json"]
    )
    assert listed.output.strip() == ""
    imported = runner.invoke(app, ["learnings", "import", str(first), "--db", db_file])
    assert imported.exit_code == 0, imported.output
    second = tmp_path / "again.json"
    runner.invoke(
        app, ["learnings", "export", "--db", db_file, "--user-id", "alice", "-o", str(second)]
    )
    strip = lambda d: {k: v for k, v in json.loads(d).items() if k != "exported_at"}  # noqa: E731
    assert strip(first.read_text()) == strip(second.read_text())


def test_export_and_import_need_no_server_extra(db_file: str, tmp_path: Path) -> None:
    """`kern learnings export|import` work where fastapi is not installed (no `server` extra)."""
    out = tmp_path / "alice.json"
    SqliteDb(db_file=str(tmp_path / "copy.db")).close()  # import refuses a missing database
    script = (
        "import sys; sys.modules['fastapi'] = None\n"  # an import of fastapi now fails
        "from kern.cli import app\n"
        "app(sys.argv[1:])\n"
    )
    for args in (
        ["learnings", "export", "--db", db_file, "--user-id", "alice", "-o", str(out)],
        ["learnings", "import", str(out), "--db", str(tmp_path / "copy.db")],
    ):
        done = subprocess.run(
            [sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
    assert json.loads(out.read_text())["user_id"] == "alice"
    copy = SqliteDb(db_file=str(tmp_path / "copy.db"))
    try:
        memories = LearningMachine(db=copy, user_memory=True).user_memory
        assert len(memories.list(user_id="alice")) == 3
    finally:
        copy.close()


def test_jobs_shows_the_queue_and_failed_jobs_errors(db_file: str) -> None:
    db = SqliteDb(db_file=db_file)
    for job_id in ("j-ok", "j-bad"):
        db.enqueue_job(JobRecord(id=job_id, kind="extract", payload={}, user_id="alice"))
    bad = db.claim_job(job_id="j-bad")
    assert bad is not None
    db.fail_job(bad, "ModelHTTPError: openai returned 401")
    db.close()

    failed = runner.invoke(
        app, ["learnings", "jobs", "--db", db_file, "--status", "failed", "--json"]
    )
    assert failed.exit_code == 0, failed.output
    [row] = [json.loads(line) for line in failed.output.splitlines()]
    assert (row["id"], row["attempts"], row["error"]) == (
        "j-bad",
        1,
        "ModelHTTPError: openai returned 401",
    )
    table = runner.invoke(app, ["learnings", "jobs", "--db", db_file])
    assert table.exit_code == 0 and "2 job(s)" in table.output and "pending" in table.output
    wrong = runner.invoke(app, ["learnings", "jobs", "--db", db_file, "--status", "finished"])
    assert wrong.exit_code == 2


def test_errors_have_exit_codes(tmp_path: Path) -> None:
    missing = runner.invoke(
        app, ["learnings", "list", "--db", str(tmp_path / "nope.db"), "--user-id", "x"]
    )
    assert missing.exit_code == 2
    assert "no database" in missing.output
    assert runner.invoke(app, ["learnings", "frobnicate"]).exit_code == 2


def test_an_install_hint_keeps_its_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Rich reads `[mcp]` as markup: unescaped, the hint said "pip install 'kern-agents'".
    def missing() -> None:
        raise MissingDependencyError("mcp", "mcp")

    monkeypatch.setattr(kern.cli, "app", missing)
    with pytest.raises(SystemExit) as exit_info:
        kern.cli.main()
    assert exit_info.value.code == 1
    assert "pip install 'kern-agents[mcp]'" in capsys.readouterr().out


def test_help_shows_flags_as_flags_and_fits_80_columns() -> None:
    for args in (["worker", "--help"], ["learnings", "list", "--help"], ["demo", "--help"]):
        result = runner.invoke(app, args, env={"COLUMNS": "80"}, terminal_width=80)
        assert result.exit_code == 0, result.output
        assert "<bool>" not in result.output
        assert max(len(line) for line in result.output.splitlines()) <= 80, result.output
    worker = runner.invoke(app, ["worker", "--help"], terminal_width=80).output
    assert "--until-idle " in worker and "--no-until-idle" not in worker


def test_every_database_option_is_named_db() -> None:
    for args in (
        ["demo"],
        ["chat"],
        ["worker"],
        ["mcp"],
        *(["learnings", c] for c in ("list", "show", "jobs", "export", "import", "forget")),
    ):
        shown = runner.invoke(app, [*args, "--help"]).output
        assert "--db " in shown and "--db-file" not in shown, (args, shown)


def test_show_prints_fields_not_a_dict(db_file: str) -> None:
    listed = runner.invoke(
        app, ["learnings", "list", "--db", db_file, "--user-id", "alice", "--json"]
    )
    profile = next(json.loads(line) for line in listed.output.splitlines() if "profile" in line)
    shown = runner.invoke(app, ["learnings", "show", profile["id"], "--db", db_file])
    assert shown.exit_code == 0, shown.output
    assert "  name: Alice" in shown.output
    assert "{" not in shown.output and "'field'" not in shown.output


def test_list_leaves_out_empty_session_contexts(tmp_path: Path) -> None:
    path = str(tmp_path / "ctx.db")
    lm = LearningMachine(db=SqliteDb(db_file=path), session_context=True)
    lm.session_context.set("s1", {}, user_id="alice")
    lm.session_context.set("s2", {"goal": "Plan a trip to Lisbon"}, user_id="alice")
    lm.db.close()

    table = runner.invoke(app, ["learnings", "list", "--db", path, "--user-id", "alice"])
    assert table.exit_code == 0, table.output
    assert "Lisbon" in table.output
    assert "1 item(s)" in table.output and "1 empty session context(s) not shown" in table.output
    rows = runner.invoke(app, ["learnings", "list", "--db", path, "--user-id", "alice", "--json"])
    assert [json.loads(line)["content"]["goal"] for line in rows.output.splitlines()] == [
        "Plan a trip to Lisbon"
    ]


def test_a_long_job_error_is_one_line_at_the_terminal_width(db_file: str) -> None:
    db = SqliteDb(db_file=db_file)
    db.enqueue_job(JobRecord(id="j-long", kind="extract", payload={}, user_id="alice"))
    claimed = db.claim_job(job_id="j-long")
    assert claimed is not None
    error = "ModelHTTPError: openai returned 500:\n" + "the server said something long " * 40
    db.fail_job(claimed, error)
    db.close()

    result = runner.invoke(app, ["learnings", "jobs", "--db", db_file], terminal_width=80)
    assert result.exit_code == 0, result.output
    [line] = [line for line in result.output.splitlines() if "ModelHTTPError" in line]
    assert len(line) <= 80 and line.rstrip().endswith("…"), line
    assert "j-long" in line
    full = runner.invoke(app, ["learnings", "jobs", "--db", db_file, "--json"])
    assert json.loads(full.output.splitlines()[0])["error"] == error


def test_python_dash_m_knows_every_command() -> None:
    # `python -m kern.cli` used to run main() before the learnings and mcp commands existed.
    done = subprocess.run(
        [sys.executable, "-m", "kern.cli", "learnings", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "export" in done.stdout
