"""Search latency at 1,000 memories: plain BM25, kern's default search, and embedder="local".

    .venv/bin/python benchmarks/search_latency.py [--memories 1000] [--rounds 2] [--json OUT]
        [--save-ids FILE | --check-ids FILE]

One user holds the first ``--memories`` LoCoMo turns ("Speaker: text", session ids, session
dates), added with ``lm.user_memory.add``; the queries are the LoCoMo questions about them.
Each query is run by every method in turn (round robin), so the three share the machine's
load alike, and the figures that carry across machines are the ratios to plain BM25 in the
same run:

- plain BM25: ``db.search_text(query, filter, limit=10)``, the engine's full-text search alone;
- default: ``lm.user_memory.search(query, limit=10)`` with no embedder (full-text candidates,
  contexts, ranking, rows);
- local: the same with ``LearningMachine(embedder="local")`` (all-MiniLM-L6-v2 on the CPU): the
  query is embedded, then full-text and vector candidates are ranked together.

The machine is shared; the load average and the share of CPU other processes took while
timing are printed with the figures, and so is each method's CPU time per query (this
process's, all threads), which other processes barely move.

``--save-ids FILE`` writes the top 10 of every query (as LoCoMo dia_ids) for the default and
local searches; ``--check-ids FILE`` compares this run's against them and exits 1 on any
difference: an optimisation of search must leave its results alone.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from locomo_recall import DEFAULT_DATA, CpuMeter, Precomputed, embed_memories, load

from kern.db.sqlite import SqliteDb
from kern.learn import LearningMachine
from kern.search import LocalEmbedder

USER = "bench"


def percentiles(timings: list[float]) -> dict[str, float]:
    ordered = sorted(timings)
    return {
        "p50_ms": statistics.median(ordered),
        "p95_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))],
    }


async def run(data: Path, memories: int, rounds: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The latency figures, and the top 10 (dia_ids) each method returned for each query."""
    conversations = load(data)
    turns = [(conv, turn) for conv in conversations for turn in conv.turns][:memories]
    kept = {turn.dia_id + conv.sample_id for conv, turn in turns}
    queries = [
        question.text
        for conv in conversations
        for question in conv.questions
        if all(e + conv.sample_id in kept for e in question.evidence)
    ]
    embedder = LocalEmbedder()
    vectors = await embed_memories(
        [replace(conversations[0], turns=tuple(t for _, t in turns))], embedder
    )
    with tempfile.TemporaryDirectory() as folder:
        db = SqliteDb(db_file=Path(folder) / "latency.db")
        writer = LearningMachine(db=db, user_memory=True, embedder=Precomputed(vectors))
        dia_ids: dict[str, str] = {}
        for conv, turn in turns:
            item = writer.user_memory.add(
                turn.content,
                user_id=USER,
                session_id=conv.session_id(turn),
                created_at=turn.date.replace(tzinfo=UTC),
            )
            dia_ids[item.id] = f"{conv.sample_id}:{turn.dia_id}"
        default = LearningMachine(db=db, user_memory=True)
        local = LearningMachine(db=db, user_memory=True, embedder="local")
        store = default.user_memory
        where = store._where(store._context(USER), kinds=store.kinds)
        methods: dict[str, Callable[[str], list[Any]]] = {
            "plain BM25 (db.search_text)": lambda q: db.search_text(q, where, limit=10),
            "default search (no embedder)": lambda q: store.search(q, user_id=USER, limit=10),
            'embedder="local"': lambda q: local.user_memory.search(q, user_id=USER, limit=10),
        }
        for query in queries[:20]:  # warm-up: statement caches, the model's first calls
            for method in methods.values():
                method(query)
        timings: dict[str, list[float]] = {name: [] for name in methods}
        cpu: dict[str, float] = dict.fromkeys(methods, 0.0)
        found: dict[str, list[list[str]]] = {name: [] for name in methods}
        meter = CpuMeter()
        load_before = os.getloadavg()[0]
        for _ in range(rounds):
            for query in queries:
                for name, method in methods.items():
                    started, started_cpu = time.perf_counter(), time.process_time()
                    hits = method(query)
                    timings[name].append((time.perf_counter() - started) * 1000)
                    cpu[name] += time.process_time() - started_cpu
                    if len(found[name]) < len(queries):
                        found[name].append([_key(hit) for hit in hits])
        other = meter.other_share()
        load_after = os.getloadavg()[0]
        for machine in (writer, default, local):
            machine.close()
        db.close()
    results = {name: percentiles(values) for name, values in timings.items()}
    for name, values in results.items():
        values["cpu_ms"] = cpu[name] * 1000 / len(timings[name])
    base = results["plain BM25 (db.search_text)"]
    for values in results.values():
        values["p50_ratio"] = values["p50_ms"] / base["p50_ms"]
        values["p95_ratio"] = values["p95_ms"] / base["p95_ms"]
        values["cpu_ratio"] = values["cpu_ms"] / base["cpu_ms"]
    # By position: a few LoCoMo questions are asked twice with different answers.
    top = {
        name: [[dia_ids[key] for key in keys] for keys in found[name]] for name in list(methods)[1:]
    }
    return {
        "memories": len(turns),
        "queries": len(queries) * rounds,
        "load_average": [load_before, load_after],
        "other_cpu": other,
        "cpus": os.cpu_count(),
        "methods": results,
    }, top


def _key(hit: Any) -> str:
    """The stored id of a search result (``db.search_text`` hits and store items differ)."""
    return str(hit.record.id if hasattr(hit, "record") else hit.id)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="LoCoMo JSON file")
    parser.add_argument("--memories", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2, help="times each query is run")
    parser.add_argument("--json", type=Path)
    ids = parser.add_mutually_exclusive_group()
    ids.add_argument("--save-ids", type=Path, help="write each query's top 10 to this file")
    ids.add_argument("--check-ids", type=Path, help="fail unless each top 10 equals this file's")
    args = parser.parse_args()
    result, top = asyncio.run(run(args.data, args.memories, args.rounds))
    print(
        f"{result['memories']} memories, {result['queries']} queries per method; load average "
        f"{result['load_average'][0]:.1f} -> {result['load_average'][1]:.1f} on "
        f"{result['cpus']} cores, other processes took {result['other_cpu']:.0%} of the CPU"
    )
    print(
        f"{'method':32} {'p50 ms':>8} {'p95 ms':>8} {'CPU ms':>8} "
        f"{'p50 x':>7} {'p95 x':>7} {'CPU x':>7}"
    )
    for name, r in result["methods"].items():
        print(
            f"{name:32} {r['p50_ms']:>8.1f} {r['p95_ms']:>8.1f} {r['cpu_ms']:>8.1f} "
            f"{r['p50_ratio']:>7.1f} {r['p95_ratio']:>7.1f} {r['cpu_ratio']:>7.1f}"
        )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if args.save_ids:
        args.save_ids.write_text(json.dumps(top, indent=1) + "\n")
    if args.check_ids:
        expected = json.loads(args.check_ids.read_text())
        same = True
        for name, tops in top.items():
            differ = [i for i, ids in enumerate(tops) if expected[name][i : i + 1] != [ids]]
            print(f"{name}: top 10 identical for {len(tops) - len(differ)} of {len(tops)} queries")
            if differ or len(expected[name]) != len(tops):
                print(f"  first differing queries (by position): {differ[:10]}")
                same = False
        if not same:
            sys.exit(1)


if __name__ == "__main__":
    main()
