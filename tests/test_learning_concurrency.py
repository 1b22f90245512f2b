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
    # Every write is accounted for: a changed value supersedes the field's row (the old value
    # stays, as the field's past), an equal one bumps its version; each is a history event.
    # Nothing is overwritten silently.
    every = LearningFilter(store="user_profile", statuses=("active", "superseded"))
    rows = db.list_learnings(every, limit=10_000)
    key_of = {r.id: r.key for r in rows}
    assert [r.key for r in rows if r.status == "active"].count("location") == 1
    assert sum(r.key == "location" for r in rows) == writers * EACH  # each value was new
    events = db.history(user_id="u", store="user_profile", limit=100_000)
    writes = [key_of[e.learning_id] for e in events if e.action in ("create", "update")]
    assert writes.count("location") == writers * EACH
    assert writes.count("timezone") + writes.count("role") == writers * EACH
    superseded = sum(e.action == "supersede" for e in events)
    assert superseded == sum(r.status == "superseded" for r in rows)
    db.close()
