"""Replay kern's ranking on recorded search inputs: a ranking variant measured in seconds.

``record`` runs every question of ``locomo_recall.py``'s protocol (sessions, no metadata)
through ``hybrid_search`` once, without and with ``embedder="local"``, and keeps what each
search handed to ``kern.search.ranking.rank`` (its candidates, contexts, dates, subjects,
covered words). ``replay`` ranks those inputs again, with kern's ``rank`` or any function of
the same signature, and prints recall@5/10/20 by split (tune LoCoMo 1-2, held-out LoCoMo,
held-out MADial) and recall@10 by LoCoMo category. Replaying kern's own ``rank`` gives
``recall_default.py``'s numbers in every digit, so a variant of ``rank`` (or of
``RankingConfig``) can be judged without a database::

    KERN_BENCH_DATA=<bench-data> .venv/bin/python benchmarks/recall_replay.py record OUT.pkl
    .venv/bin/python benchmarks/recall_replay.py replay OUT.pkl [--set coverage_weight=0.5]

From Python: ``records = load(path)``, then ``evaluate(records["default"], rank_with=my_rank)``.
Recording embeds every memory with MiniLM (a few minutes on 2 cores); ``--vectors FILE``
keeps those embeddings for the next recording.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import pickle
import statistics
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import locomo_recall as bench  # puts this checkout's kern first on the path
from engines import open_engine

import kern.search.hybrid as hybrid
from kern.search import LocalEmbedder, Vector
from kern.search.ranking import RankingConfig, rank

KS = (5, 10, 20)


@dataclass(frozen=True)
class Record:
    """One question's search: where it counts, its evidence, and ``rank``'s arguments."""

    split: str
    category: int
    evidence: tuple[str, ...]
    query: str
    arguments: dict[str, Any]
    turns: dict[str, str]  # item id -> LoCoMo dia_id (or MADial memory id)


async def record(
    vectors: dict[str, Vector] | None,
) -> tuple[dict[str, list[Record]], dict[str, Vector]]:
    """Every question searched once per mode ("default", "local"), ``rank``'s inputs kept;
    and the memories' embeddings (``vectors``, or computed when ``None``)."""
    conversations = bench.load(bench.DEFAULT_DATA) + bench.load_madial(bench.BENCH_DATA)
    embedder = LocalEmbedder()
    if vectors is None:
        vectors = await bench.embed_memories(conversations, embedder)
    seen: list[tuple[str, dict[str, Any]]] = []

    def spy(query: str, **arguments: Any) -> Any:
        seen.append((query, arguments))
        return rank(query, **arguments)

    # ``hybrid_search`` calls ``rank`` by its name in ``kern.search.hybrid``.
    setattr(hybrid, "rank", spy)  # noqa: B010 (mypy: the module does not export the name)
    records: dict[str, list[Record]] = {}
    try:
        with (
            tempfile.TemporaryDirectory() as folder,
            open_engine("sqlite", Path(folder), None, database="kern_replay") as db,
        ):
            product = bench.build_product(conversations, vectors, db, sessions=True)
            for mode, model in (("default", None), ("local", embedder)):
                search = bench.product_search(product, model)
                rows = records[mode] = []
                for conv in conversations:
                    for question in conv.questions:
                        seen.clear()
                        await search(conv, question.text, max(KS))
                        query, arguments = seen[-1]
                        arguments = dict(arguments)
                        arguments["sequences"] = [list(s) for s in arguments["sequences"]]
                        ids = {*arguments["text_scores"], *(arguments["vector_scores"] or {})}
                        ids.update(key for s in arguments["sequences"] for key in s)
                        turns = {key: product.dia_ids[key] for key in ids}
                        rows.append(
                            Record(
                                conv.split,
                                question.category,
                                question.evidence,
                                query,
                                arguments,
                                turns,
                            )
                        )
                print(f"recorded {mode}: {len(rows)} questions", file=sys.stderr)
    finally:
        setattr(hybrid, "rank", rank)  # noqa: B010
    return records, vectors


def evaluate(
    records: Sequence[Record],
    *,
    rank_with: Callable[..., list[tuple[str, float]]] = rank,
    config: RankingConfig | None = None,
) -> tuple[dict[str, dict[int, float]], dict[tuple[str, int], float]]:
    """Recall@k by split, and recall@10 by (split, category), of ``rank_with`` on ``records``
    (``config`` replaces the recorded ``RankingConfig``)."""
    by_split: dict[str, list[dict[int, float]]] = {}
    by_category: dict[tuple[str, int], list[float]] = {}
    for row in records:
        arguments = dict(row.arguments, k=max(KS))
        if config is not None:
            arguments["config"] = config
        found = [row.turns[key] for key, _ in rank_with(row.query, **arguments)]
        evidence = set(row.evidence)
        recall = {k: len(evidence.intersection(found[:k])) / len(evidence) for k in KS}
        by_split.setdefault(row.split, []).append(recall)
        by_category.setdefault((row.split, row.category), []).append(recall[10])
    return (
        {
            split: {k: statistics.fmean(r[k] for r in rows) for k in KS}
            for split, rows in by_split.items()
        },
        {key: statistics.fmean(values) for key, values in sorted(by_category.items())},
    )


def load(path: Path) -> dict[str, list[Record]]:
    """The records ``record`` wrote (a pickle: load only files you wrote)."""
    stored = pickle.loads(path.read_bytes())
    return {mode: [Record(**row) for row in rows] for mode, rows in stored.items()}


def save(path: Path, records: dict[str, list[Record]]) -> None:
    """Records as plain dicts, so any script can ``load`` them (not only this one as
    ``__main__``)."""
    path.write_bytes(
        pickle.dumps({mode: [vars(r) for r in rows] for mode, rows in records.items()})
    )


def _config(settings: Sequence[str]) -> RankingConfig | None:
    """``RankingConfig()`` with ``name=value`` settings (values as Python literals)."""
    if not settings:
        return None
    names = {f.name for f in fields(RankingConfig)}
    changes: dict[str, Any] = {}
    for setting in settings:
        name, _, value = setting.partition("=")
        if name not in names:
            raise SystemExit(f"RankingConfig has no field {name!r}")
        changes[name] = ast.literal_eval(value)
    return replace(RankingConfig(), **changes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    recording = commands.add_parser("record", help="search every question once, keep inputs")
    recording.add_argument("out", type=Path)
    recording.add_argument("--vectors", type=Path, help="embeddings cache (read or written)")
    replaying = commands.add_parser("replay", help="rank recorded inputs again")
    replaying.add_argument("records", type=Path)
    replaying.add_argument("--set", nargs="*", default=[], help="RankingConfig name=value")
    args = parser.parse_args()
    if args.command == "record":
        cached = args.vectors is not None and args.vectors.exists()
        known = pickle.loads(args.vectors.read_bytes()) if cached else None
        records, vectors = asyncio.run(record(known))
        if args.vectors is not None and not cached:
            args.vectors.write_bytes(pickle.dumps(vectors))
        save(args.out, records)
        return
    config = _config(args.set)
    for mode, rows in load(args.records).items():
        splits, categories = evaluate(rows, config=config)
        print(f"{mode}: R@5/10/20, then R@10 of LoCoMo categories 1-4")
        for split, recall in splits.items():
            line = f"  {split:18s} " + " ".join(f"{recall[k]:.3f}" for k in KS)
            cats = [f"{c}: {v:.3f}" for (s, c), v in categories.items() if s == split and c]
            print(line + ("   " + ", ".join(cats) if cats else ""))


if __name__ == "__main__":
    main()
