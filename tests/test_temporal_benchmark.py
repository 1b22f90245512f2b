"""The temporal scenario benchmark's scripted run (benchmarks/temporal) on a few scenarios of
each kind: the mechanics it measures must all work. The full run (84 scenarios) is
``python -m benchmarks.temporal.run``."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from benchmarks.temporal.run import check, run_scenario, shown_items, summary
from benchmarks.temporal.scenarios import KINDS, Question, scenarios


def test_the_scenarios_are_many_varied_and_stable() -> None:
    every = scenarios()
    assert len(every) >= 80
    assert {s.kind for s in every} == set(KINDS)
    assert len({s.turns[0].user for s in every}) > 60  # not 80 copies of one sentence
    assert [s.to_dict() for s in every] == [s.to_dict() for s in scenarios()]
    for s in every:
        assert s.questions and all(q.must or q.must_not or q.past for q in s.questions)


@pytest.mark.parametrize("kind", KINDS)
def test_scripted_scenarios_pass(kind: str, tmp_path: Path) -> None:
    chosen = [s for s in scenarios() if s.kind == kind][:2]
    outcomes = [o for s in chosen for o in asyncio.run(run_scenario(s, None, tmp_path))]
    assert [o.problems for o in outcomes] == [[] for _ in outcomes]
    assert summary(outcomes)["passed"] == len(outcomes)


def test_the_check_reads_current_past_and_stale_rows() -> None:
    block = '{"content": "lives in Berlin"}\n{"content": "lives in Lisbon", "past": true}'
    assert check(block, Question("", "q", must=["Berlin"], past=["Lisbon"])) == []
    assert check(block, Question("", "q", must=["Lisbon"])) == ["missing current 'Lisbon'"]
    assert check(block, Question("", "q", past=["Berlin"])) == ["missing past 'Berlin'"]
    assert check(block, Question("", "q", must_not=["Lisbon"])) == ["stale 'Lisbon' recalled"]
    prompt = "x\n## Stored user_memory\n[1] a\n[2] b (since 2025-01-01)\n\n## Stored other\n[1] c"
    assert shown_items(prompt) == {1: "a", 2: "b (since 2025-01-01)"}
