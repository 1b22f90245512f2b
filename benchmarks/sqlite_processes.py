"""Many processes, one SQLite file: does every turn get stored, and every stored turn learned?

Each of ``--processes`` processes runs ``--turns`` learning turns (always mode, one memory per
turn from a scripted model) for its own user on one SQLite file, with SqliteDb's default busy
timeout. Afterwards the file is read once: turns that failed, runs stored without their
extraction job, jobs not done, and memories against turns. "Lost" is a turn that was answered
(or stored) but will never be learned.

    python benchmarks/sqlite_processes.py --processes 16 --turns 150
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import func, select


def _respond(request: Any) -> Any:
    from kern.models.base import ModelResponse, UserMessage

    if request.output_schema is None:
        return ModelResponse("noted")
    exchange = next(m.content for m in request.messages if isinstance(m, UserMessage))
    said = json.loads(exchange.splitlines()[1])["user"]
    return ModelResponse(json.dumps({"user_memory": {"add": [{"content": f"User said {said}"}]}}))


def _process(db_file: str, worker: int, turns: int, queue: Any) -> None:
    from kern.agent import Agent
    from kern.db.sqlite import SqliteDb
    from kern.errors import KernError
    from kern.learn import LearningMachine
    from kern.models.testing import FunctionModel

    db = SqliteDb(db_file=db_file)
    lm = LearningMachine(db=db, user_memory=True)
    agent = Agent(model=FunctionModel(_respond), db=db, learning=lm)
    failures: list[str] = []
    for turn in range(turns):
        try:
            agent.run(f"fact {worker}-{turn}", user_id=f"u{worker}", session_id=f"s{worker}")
        except KernError as exc:
            failures.append(f"{type(exc).__name__}: {exc}")
    lm.wait_for_jobs(timeout=120)
    agent.close()
    db.close()
    queue.put((worker, failures))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=16)
    parser.add_argument("--turns", type=int, default=150)
    parser.add_argument("--db", help="SQLite file (default: a new temporary one)")
    args = parser.parse_args()

    from kern.db.schema import jobs, learnings, runs
    from kern.db.sqlite import SqliteDb

    db_file = args.db or str(Path(tempfile.mkdtemp(prefix="kern-procs-")) / "kern.db")
    SqliteDb(db_file=db_file).close()  # migrate once, before the crowd arrives
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    started = time.perf_counter()
    processes = [
        context.Process(target=_process, args=(db_file, w, args.turns, queue))
        for w in range(args.processes)
    ]
    for p in processes:
        p.start()
    results = [queue.get() for _ in processes]
    for p in processes:
        p.join()
    elapsed = time.perf_counter() - started

    failures = [f for _, fs in results for f in fs]
    db = SqliteDb(db_file=db_file)
    with db.transaction(write=False) as conn:
        completed = conn.execute(
            select(func.count()).select_from(runs).where(runs.c.status == "completed")
        ).scalar_one()
        failed_runs = conn.execute(
            select(func.count()).select_from(runs).where(runs.c.status == "failed")
        ).scalar_one()
        without_job = conn.execute(
            select(func.count())
            .select_from(runs)
            .where(runs.c.status == "completed", runs.c.run_id.not_in(select(jobs.c.run_id)))
        ).scalar_one()
        job_states = dict(
            conn.execute(select(jobs.c.status, func.count()).group_by(jobs.c.status)).all()
        )
        memories = conn.execute(
            select(func.count())
            .select_from(learnings)
            .where(learnings.c.store == "user_memory", learnings.c.status == "active")
        ).scalar_one()
    db.close()
    total = args.processes * args.turns
    report = {
        "processes": args.processes,
        "turns": total,
        "seconds": round(elapsed, 1),
        "turns_failed": len(failures),
        "runs_completed": completed,
        "runs_failed": failed_runs,
        "completed_runs_without_job": without_job,
        "jobs": job_states,
        "memories": memories,
        "lost": total - memories,
        "failure_examples": sorted(set(failures))[:3],
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
