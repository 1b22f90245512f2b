"""Recall@k of kern's default search (no embedder) on LoCoMo and MADial, quickly.

The "kern default" rows of ``locomo_recall.py`` (same protocol, same code: ``build_product``
and ``product_search``), without embedding anything, so a change to full-text search can be
checked on both engines in a few minutes:

    KERN_BENCH_DATA=<bench-data> .venv/bin/python benchmarks/recall_default.py [--engine E]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import locomo_recall as bench  # puts this checkout's kern first on the path
from engines import open_engine


async def run(engine: str, data: Path, madial: Path) -> dict[str, dict[str, dict[int, float]]]:
    conversations = bench.load(data) + bench.load_madial(madial)
    results = {}
    with (
        tempfile.TemporaryDirectory() as folder,
        open_engine(engine, Path(folder), None, database="kern_rc") as db,
        open_engine(engine, Path(folder), None, database="kern_rc_flat") as flat,
    ):
        for name, sessions, target in (
            ("default, sessions", True, db),
            ("default, no session_id", False, flat),
        ):
            product = bench.build_product(conversations, {}, target, sessions=sessions)
            result = await bench.evaluate(conversations, bench.product_search(product, None))
            results[name] = result.recall
            print(name, json.dumps(result.recall), flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--engine", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--data", type=Path, default=bench.DEFAULT_DATA)
    parser.add_argument("--madial", type=Path, default=bench.DEFAULT_DATA.parent)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = asyncio.run(run(args.engine, args.data, args.madial))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
