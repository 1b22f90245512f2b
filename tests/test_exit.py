"""A process that exits while an extraction job is still running: one honest log line, no
misleading failure, and the job stays queued for the next process."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from kern.db.sqlite import SqliteDb

SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    import kern._sync
    from kern.agent import Agent
    from kern.db.sqlite import SqliteDb
    from kern.learn import LearningMachine
    from kern.models.testing import FunctionModel

    kern._sync.EXIT_WAIT = 0.5  # the process exits while the extraction still runs

    async def respond(request):
        if request.output_schema is not None:
            await asyncio.sleep(30)
            return {}
        return "ok"

    agent = Agent(
        model=FunctionModel(respond),
        db=SqliteDb(db_file=sys.argv[1]),
        learning=LearningMachine(user_profile=True),
    )
    agent.run("I'm Alice.", user_id="alice", session_id="s1")
    print("answered")
    """
)


def test_exiting_during_an_extraction_says_so_once_and_keeps_the_job(tmp_path: Path) -> None:
    db_file = tmp_path / "exit.db"
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(db_file)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "answered"
    assert "extraction jobs stay queued" in done.stderr
    # Before, the job ran on into the shut-down executors: a job failure that never happened
    # ("cannot schedule new futures after shutdown") and an unretrieved task's traceback.
    assert "Traceback" not in done.stderr
    assert "failed (attempt" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    db = SqliteDb(db_file=str(db_file))
    (job,) = db.list_jobs()
    assert job.status != "done" and job.error is None  # still queued, not marked as failed
    db.close()
