"""What a long message costs search: the recall query of a run is the user's message.

A user holds ``--memories`` memories on SQLite; searches run with messages of growing length
made of (a) words drawn from a 20,000-word vocabulary (thousands of distinct terms), (b) dates
("in 2003 on May 7, 2003 …", the time-expression parser's worst case), and one agent run with
the longest message reports its recall time. Before the fix, 14,000 distinct terms cost
4.95 s and a 100,000-character REST run 19.1 s (quadratic term de-duplication).

    python benchmarks/query_cost.py
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import string
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memories", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()

    from kern.agent import Agent
    from kern.db.sqlite import SqliteDb
    from kern.learn import LearningMachine, LearningMode, UserMemoryConfig
    from kern.models.testing import TestModel

    rng = random.Random(7)
    vocabulary = [
        "".join(rng.choices(string.ascii_lowercase, k=rng.randint(3, 9))) for _ in range(20_000)
    ]
    db = SqliteDb(db_file=":memory:")
    # Agentic mode: the run recalls (the cost measured) and no extraction runs afterwards.
    memory = UserMemoryConfig(mode=LearningMode.AGENTIC)
    lm = LearningMachine(db=db, user_memory=memory, consistency_timeout=0)
    agent = Agent(model=TestModel("ok"), db=db, learning=lm)
    for i in range(args.memories):
        lm.user_memory.add(f"memory {i}: " + " ".join(rng.choices(vocabulary, k=10)), user_id="u")

    def words(n: int) -> str:
        return " ".join(rng.choice(vocabulary) for _ in range(n // 5))[:n]

    def dates(n: int) -> str:
        parts = (f"in {2000 + i % 26} on May {1 + i % 28}, {2000 + i % 26}" for i in range(n))
        return " ".join(parts)[:n]

    results: dict[str, dict[str, float]] = {}
    for label, make in (("words", words), ("dates", dates)):
        for length in (1_000, 10_000, 100_000):
            query = make(length)
            lm.user_memory.search(query, user_id="u", limit=10)  # warm up
            times = []
            for _ in range(args.repeats):
                started = time.perf_counter()
                lm.user_memory.search(query, user_id="u", limit=10)
                times.append((time.perf_counter() - started) * 1000)
            results[f"{label} {length:,} chars"] = {
                "median_ms": round(statistics.median(times), 1),
                "max_ms": round(max(times), 1),
            }
    recall = []
    for _ in range(args.repeats):
        output = agent.run(words(100_000), user_id="u", session_id="s")
        recall.append(output.metrics.recall_duration * 1000)
    results["agent.run recall, 100,000 chars"] = {
        "median_ms": round(statistics.median(recall), 1),
        "max_ms": round(max(recall), 1),
    }
    agent.close()
    db.close()
    print(json.dumps({"memories": args.memories, "results": results}, indent=2))


if __name__ == "__main__":
    main()
