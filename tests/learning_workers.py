"""Process entry points for multi-process learning tests (importable under spawn)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from kern.agent import Agent
from kern.learn import LearningMachine
from kern.models.base import ModelRequest, ModelResponse, UserMessage
from kern.models.testing import FunctionModel, TestModel
from kern.worker import serve
from tests.backends import open_db


def write_profile_and_memories(
    target: str, worker: str, count: int, errors: list[BaseException] | None = None
) -> None:
    # 16 writers contend for one SQLite write lock on 2 cores: open_db allows a long busy wait,
    # so a write can only fail loudly (StorageError), never by a short timeout under test load.
    try:
        _write(target, worker, count)
    except BaseException as exc:
        if errors is None:
            raise
        errors.append(exc)


def _write(target: str, worker: str, count: int) -> None:
    db = open_db(target)
    lm = LearningMachine(db=db, user_profile=True, user_memory=True)
    Agent(model=TestModel(), db=db, learning=lm)
    for i in range(count):
        lm.user_profile.update({"location": f"{worker}-{i}"}, user_id="u")
        lm.user_profile.update(
            {"role": worker} if i == count - 1 else {"timezone": worker}, user_id="u"
        )
        lm.user_memory.add(f"memory {worker} {i}", user_id="u")
    db.close()


def hang_in_extraction(target: str, lease: float) -> None:
    """Run one turn whose extraction never finishes, its job claimed under a lease of
    ``lease`` seconds (the parent kills this process)."""

    def respond(request: ModelRequest) -> ModelResponse:
        if request.output_schema is not None:
            time.sleep(3600)
        return ModelResponse("ok")

    db = open_db(target)
    lm = LearningMachine(db=db, user_memory=True, job_lease=lease)
    agent = Agent(model=FunctionModel(respond), db=db, learning=lm)
    agent.run("My favourite colour is teal", user_id="u", session_id="s")
    time.sleep(3600)


def extraction_answer() -> str:
    return json.dumps(
        {"user_memory": {"add": [{"content": "The user's favourite colour is teal."}]}}
    )


# -- apps for `kern worker` tests (tests/test_worker.py): factories taking the worker's db ------


def said(request: ModelRequest) -> str:
    """The user's message of the exchange an extraction request is about."""
    exchange = next(m.content for m in request.messages if isinstance(m, UserMessage))
    return str(json.loads(exchange.splitlines()[1])["user"])


def remember_what_was_said(request: ModelRequest) -> ModelResponse:
    if request.output_schema is None:
        return ModelResponse("ok")
    memory = {"content": f"The user said {said(request)}."}
    return ModelResponse(json.dumps({"user_memory": {"add": [memory]}}))


def job_machine(db: Any) -> LearningMachine:
    """The app a worker loads: one memory per job, naming the job's message."""
    return LearningMachine(db=db, model=FunctionModel(remember_what_was_said), user_memory=True)


def hanging_job_machine(db: Any) -> LearningMachine:
    """Like ``job_machine``, but the apply transaction hangs after its first write (holding its
    locks, uncommitted) and touches the file KERN_TEST_FLAG: the parent kills the process
    there, mid-job."""
    flag = Path(os.environ["KERN_TEST_FLAG"])
    original = db._apply_op

    def apply_op_then_hang(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        flag.write_text("inside the apply transaction")
        time.sleep(3600)
        return result

    db._apply_op = apply_op_then_hang
    machine = job_machine(db)
    machine.job_lease = 2.0
    return machine


def run_worker_process(target: str, app: str, concurrency: int = 2) -> None:
    """A worker process, as `kern worker --db target --app app` runs it, until the queue is
    empty (or SIGTERM)."""
    serve(db_url=target, app=app, concurrency=concurrency, poll_interval=0.05, until_idle=True)


def run_idle_worker_process(target: str, ready: Any) -> None:
    """A worker that never runs out of patience: only a signal stops it. ``ready`` (a
    multiprocessing Event) is set once its signal handlers are installed, so the test's signal
    cannot arrive before them, however slowly this process imports on a busy machine."""
    from kern import worker

    install = worker._stop_on_signals

    def install_then_report(stop: Any) -> Any:
        restore = install(stop)
        ready.set()
        return restore

    worker._stop_on_signals = install_then_report  # type: ignore[assignment]
    serve(db_url=target, app="tests.learning_workers:job_machine", poll_interval=0.05)
