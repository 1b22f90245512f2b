"""No lost update: 16 threads and processes writing one user's profile and memories at once, on
SQLite and PostgreSQL."""

from __future__ import annotations

import multiprocessing
import threading

from kern.db.base import LearningFilter
from tests.backends import Backend
from tests.learning_workers import write_profile_and_memories

THREADS, PROCESSES, EACH = 8, 8, 10


def test_every_write_is_accounted_for(backend: Backend) -> None:
    target = backend.target
    spawn = multiprocessing.get_context("spawn")
    processes = [
        spawn.Process(target=write_profile_and_memories, args=(target, f"p{i}", EACH))
        for i in range(PROCESSES)
    ]
    errors: list[BaseException] = []
    threads = [
        threading.Thread(target=write_profile_and_memories, args=(target, f"t{i}", EACH, errors))
        for i in range(THREADS)
    ]
    for worker in [*processes, *threads]:
        worker.start()
    for thread in threads:
        thread.join()
    for process in processes:
        process.join()
        assert process.exitcode == 0
    assert errors == []

    writers = THREADS + PROCESSES
    db = backend.open()
    memories = db.list_learnings(LearningFilter(store="user_memory"), limit=10_000)
    assert len(memories) == writers * EACH
    assert {m.text for m in memories} == {
        f"memory {w} {i}"
        for w in [*(f"t{i}" for i in range(THREADS)), *(f"p{i}" for i in range(PROCESSES))]
        for i in range(EACH)
    }
    fields = {r.key: r for r in db.list_learnings(LearningFilter(store="user_profile"))}
    assert set(fields) == {"location", "timezone", "role"}
    # One row per field, each write a version and a history event: nothing overwritten silently.
    location = fields["location"]
    assert location.version == writers * EACH
    assert len(db.history(learning_id=location.id, limit=10_000)) == writers * EACH
    timezone_and_role = sum(fields[k].version for k in ("timezone", "role"))
    assert timezone_and_role == writers * EACH
    db.close()
