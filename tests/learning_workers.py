"""Process entry points for multi-process learning tests (importable under spawn)."""

from __future__ import annotations

import json
import time

from kern.agent import Agent
from kern.learn import LearningMachine
from kern.models.base import ModelRequest, ModelResponse
from kern.models.testing import FunctionModel, TestModel
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


def hang_in_extraction(target: str) -> None:
    """Run one turn whose extraction never finishes (the parent kills this process)."""

    def respond(request: ModelRequest) -> ModelResponse:
        if request.output_schema is not None:
            time.sleep(3600)
        return ModelResponse("ok")

    db = open_db(target)
    lm = LearningMachine(db=db, user_memory=True, job_lease=1.0)
    agent = Agent(model=FunctionModel(respond), db=db, learning=lm)
    agent.run("My favourite colour is teal", user_id="u", session_id="s")
    time.sleep(3600)


def extraction_answer() -> str:
    return json.dumps(
        {"user_memory": {"add": [{"content": "The user's favourite colour is teal."}]}}
    )
