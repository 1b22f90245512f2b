"""``SqliteDb``: the embedded default, one file shared safely by threads and processes.

How SQLite is made safe for several writers:

- WAL journal: readers never block the writer, nor the writer readers.
- Every write transaction starts with ``BEGIN IMMEDIATE``: it takes the write lock before
  reading, so a read-then-write can never fail half-way with "database is locked". It waits up
  to ``busy_timeout_ms`` (30 s) in all for the lock: SQLite's own busy handler waits at most 5 s
  per attempt and is not fair (16 processes on two cores starved some writers past 5 s, and 4
  of 2,400 turns failed), so a ``BEGIN`` refused as locked is retried, after a short random
  pause, until that bound. Python's ``sqlite3`` would otherwise begin
  transactions itself, lazily and only before DML; the connection is put in driver autocommit
  mode and SQLAlchemy's ``begin`` event emits the ``BEGIN`` (the recipe documented in
  SQLAlchemy's SQLite dialect, "Enabling Non-Legacy SQLite Transactional Modes").
- Foreign keys on, on every connection.
- A process that forks drops (without closing) the connections it inherited, as SQLite requires.

Full-text search is FTS5 over ``learnings.text`` (the contentless table ``learnings_fts``,
Porter stemming over unicode61 tokens, kept in step by triggers), ranked by BM25. Since
migration ``m005_scoped_full_text`` the index also holds each row's scope as one token, so a
search's ``MATCH`` is bounded by its scopes before any row is scored.
"""

from __future__ import annotations

import logging
import os
import random
import sqlite3
import time
import weakref
from collections.abc import Callable, Sequence
from datetime import datetime
from functools import lru_cache
from json import dumps
from pathlib import Path
from typing import Any

from sqlalchemy import (
    URL,
    ColumnElement,
    Connection,
    Engine,
    Select,
    bindparam,
    column,
    create_engine,
    event,
    func,
    literal_column,
    select,
    table,
    text,
)
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import QueuePool
from sqlalchemy.sql.expression import ColumnClause

from kern._text import query_terms
from kern.db._candidates import SEARCH_CACHE_MB
from kern.db._fts5 import DocumentCounts, bm25_scores, fts5_tokens, varints
from kern.db._learnings import filter_shape, shape_clauses
from kern.db._sqlbase import check_limit
from kern.db.base import LearningFilter
from kern.db.fulltext import fts5_match
from kern.db.migrations import migrate
from kern.db.schema import learnings
from kern.db.sql import WRITE_OPTION, SqlDb, filter_values
from kern.errors import ConfigError, StorageError

__all__ = ["SqliteDb", "create_sqlite_engine"]

logger = logging.getLogger(__name__)

MEMORY = ":memory:"

# The FTS5 table, by name only: it is not part of ``kern.db.schema.metadata`` (SQLite-specific).
# ``_FTS_NAME`` is the table as FTS5's MATCH and bm25() take it (a constant, never user input).
_FTS = table("learnings_fts", column("rowid"))
_FTS_NAME: ColumnClause[Any] = literal_column("learnings_fts")

# File engines alive in this process, so a forked child can drop the connections it inherited.
_FILE_ENGINES: weakref.WeakSet[Engine] = weakref.WeakSet()


def _drop_inherited_connections() -> None:
    for engine in list(_FILE_ENGINES):
        engine.dispose(close=False)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_drop_inherited_connections)


class SqliteDb(SqlDb):
    """kern's data in one SQLite file, created with its folders and migrated on open.

    ``db_file=":memory:"`` keeps everything in memory for the life of this object; threads
    share it by taking turns on its single connection. ``search_cache_mb``: how much of the
    scopes' rows search keeps in memory between writes (docs/search.md; 0 turns it off).
    """

    def __init__(
        self,
        db_file: str | os.PathLike[str] = "tmp/agents.db",
        *,
        busy_timeout_ms: int = 30_000,
        clock: Callable[[], datetime] | None = None,
        search_cache_mb: float = SEARCH_CACHE_MB,
    ) -> None:
        engine = create_sqlite_engine(db_file, busy_timeout_ms=busy_timeout_ms)
        self.db_file = MEMORY if _is_memory(db_file) else str(Path(db_file).absolute())
        self.busy_timeout_ms = busy_timeout_ms
        super().__init__(engine, clock=clock, search_cache_mb=search_cache_mb)
        self._document_counts = DocumentCounts()
        try:
            migrate(self)
        except BaseException:
            self.close()
            raise

    def search_text_scores(
        self, query: str, where: LearningFilter, *, limit: int = 50
    ) -> list[tuple[str, float]]:
        """``search_text``'s ids and scores: for a scoped search in a large table, FTS5's
        ``bm25()`` computed outside FTS5 from reads bounded by the scopes (``kern.db._fts5``:
        the same numbers, bit for bit); else the ``bm25()`` statement."""
        check_limit(limit)
        words = query_terms(query)
        if not limit or not words or not where.scopes:
            return super().search_text_scores(query, where, limit=limit)
        with self.transaction(write=False, action="search learnings") as conn:
            scored = self._scores_outside_fts5(conn, words, where)
            if scored is None:
                found = self._text_search_query(query, where, limit, (learnings.c.id,))
                assert found is not None  # words and scopes: a MATCH to run
                # ``all()``: one fetch of up to ``limit`` (500) rows, not a fetch per row.
                return [(key, float(score)) for key, score in conn.execute(*found).all()]
        return scored[:limit]

    def _scores_outside_fts5(
        self, conn: Connection, words: Sequence[str], where: LearningFilter
    ) -> list[tuple[str, float]] | None:
        """The scoped ``bm25()`` ranking, best first, computed as ``kern.db._fts5`` says;
        ``None`` when ``bm25()`` itself should run: a small table (its walk costs little), many
        candidates (tokenizing them would cost more), or a word or row ``fts5_tokens`` cannot
        vouch for."""
        spelled = [fts5_tokens(word) for word in words]
        if any(tokens is not None and len(tokens) != 1 for tokens in spelled):
            return None  # a phrase of several tokens to FTS5
        matches = [_scoped_match(fts5_match([word]) or "", where.scopes) for word in words]
        records = [bytes(block) for block in conn.execute(_INDEX_STATE).scalars()]
        if len(records) != 2:
            return None  # not the records FTS5 keeps once it holds rows
        averages, structure = records
        totals = varints(averages)
        if not totals or not totals[0] or totals[0] < _OUTSIDE_MIN_ROWS:
            return None
        state = averages + structure
        clock, top = conn.execute(_WRITES).one()
        writes = (int(clock), int(top or 0))
        self._bring_counts_up(conn, state, writes)
        if not self._document_counts.sight(state, writes):
            return None  # rewritten since the last search: counting would cost what bm25() does
        holders_query = _holders_query(filter_shape(where))
        values = {**filter_values(where), "limit": _OUTSIDE_MAX_PAIRS + 1}
        pairs: list[tuple[int, int, str]] = []
        for i, match in enumerate(matches):  # a query word is never None to fts5_match
            values["match"] = match
            pairs += [(i, seq, key) for seq, key in conn.execute(holders_query, values)]
            if len(pairs) > _OUTSIDE_MAX_PAIRS:
                return None
            values["limit"] = _OUTSIDE_MAX_PAIRS + 1 - len(pairs)
        if not pairs:
            return []
        keys = {seq: key for _, seq, key in pairs}
        rows = conn.execute(_ROWS, {"seqs": dumps(list(keys))}).all()
        # The query's words with the rows: one call of FTS5's own tokenizer for both, if any.
        texts = {seq: row_text for seq, row_text, _ in rows}
        sizes = {seq: varints(size) for seq, _, size in rows}  # each column's token count
        counted = {seq: size[0] for seq, size in sizes.items()}
        word_keys = _word_keys(words)
        tokenized = _tokens_of(conn, {**texts, **word_keys}, counted)
        if tokenized is None:
            return None  # too many texts for FTS5's own tokenizer, or not FTS5's tokens
        word_tokens = [tokenized[key] for key in word_keys]
        if any(len(tokens) != 1 for tokens in word_tokens):
            return None
        phrases = [tokens[0] for tokens in word_tokens]
        wanted = set(phrases)
        frequencies: dict[tuple[str, int], int] = {}
        lengths: dict[int, int] = {}
        for seq, size in sizes.items():
            lengths[seq] = sum(size)
            for token in tokenized[seq]:
                if token in wanted:
                    frequencies[(token, seq)] = frequencies.get((token, seq), 0) + 1
        if len(lengths) != len(keys) or set(frequencies) != {(phrases[i], s) for i, s, _ in pairs}:
            return None  # this tokenizer and FTS5 disagree on which rows hold a word
        counts = self._document_counts.known(state, wanted)
        missing = wanted - counts.keys()
        if missing:
            conn.exec_driver_sql(_VOCABULARY_TABLE)
            counted = {
                token: int(conn.execute(_DOCUMENT_COUNT, {"token": token}).scalar() or 0)
                for token in missing
            }
            self._document_counts.remember(state, counted)
            counts.update(counted)
        scores = bm25_scores(
            phrases,
            [[seq for i, seq, _ in pairs if i == n] for n in range(len(phrases))],
            frequencies,
            lengths,
            counts,
            totals[0],
            sum(totals[1:]),
        )
        ranked = sorted(scores.items(), key=lambda item: (-item[1], item[0]))
        return [(keys[seq], score) for seq, score in ranked]

    def _bring_counts_up(self, conn: Connection, state: bytes, writes: tuple[int, int]) -> None:
        """The remembered document counts brought to ``state`` when every write since theirs
        was an insert: add each inserted row's tokens. Every row written (insert, update,
        delete) moves ``learning_clock`` on by one (migration m007's triggers, whoever
        writes), and an insert adds a row past the highest ``seq`` the counts saw; as many rows
        past it as clock ticks means nothing else was written. Anything else (or more than
        ``_ADVANCE_MAX_ROWS`` writes) leaves them behind, to be counted anew."""
        behind = self._document_counts.behind(state)
        if behind is None:
            return
        old, (clock, top) = behind
        ticks = writes[0] - clock
        if not 0 < ticks <= _ADVANCE_MAX_ROWS:
            return
        rows = conn.execute(_INSERTED, {"top": top, "limit": ticks + 1}).all()
        if len(rows) != ticks:
            return
        texts = {seq: row_text for seq, row_text, _ in rows}
        tokenized = _tokens_of(conn, texts, {seq: varints(size)[0] for seq, _, size in rows})
        if tokenized is not None:
            inserted = [set(tokenized[seq]) for seq, _, _ in rows]
            self._document_counts.advance(old, state, writes, inserted)

    def _text_search_query(
        self,
        query: str,
        where: LearningFilter,
        limit: int,
        columns: Sequence[ColumnElement[Any]],
    ) -> tuple[Select[Any], dict[str, Any]] | None:
        """FTS5 ``MATCH`` joined to ``learnings``, filtered there, ranked by BM25
        (``_fts_query``), and its parameters.

        Every query term is quoted and OR-ed (``kern.db.fulltext.fts5_match``): BM25 ranks
        rows that match more, and rarer, terms first, and user input is never read as FTS5
        syntax. The scopes are part of the ``MATCH`` (``_scoped_match``), so FTS5 lists only
        the scopes' rows; the whole filter is applied on the join too, so ``limit`` counts
        visible rows only.
        """
        terms = fts5_match(query)
        if terms is None or (where.scopes is not None and not where.scopes):
            return None
        match = _scoped_match(terms, where.scopes)
        values = {**filter_values(where), "match": match, "limit": limit}
        return _fts_query(filter_shape(where), tuple(columns)), values

    def _explain(self, exc: BaseException) -> str:
        detail = super()._explain(exc)
        if "locked" in detail or "busy" in detail:
            detail += (
                f" (another connection held the write lock for more than busy_timeout_ms="
                f"{self.busy_timeout_ms})"
            )
        return detail

    def __repr__(self) -> str:
        return f"SqliteDb(db_file={self.db_file!r})"


def _scoped_match(terms: str, scopes: Sequence[str] | None) -> str:
    """``terms`` (an FTS5 expression) limited to the text column and, when ``scopes`` is
    given, to rows whose scope token (``hex(scope)``, as migration ``m005_scoped_full_text``
    indexes it) is one of theirs: FTS5 then walks the scopes' doclists, not the whole
    table's. Hex digits need no quoting, but the tokens are quoted like every term."""
    match = f"text: ({terms})"
    if scopes is None:
        return match
    tokens = " OR ".join(f'"{scope.encode().hex().upper()}"' for scope in dict.fromkeys(scopes))
    return f"{match} AND scope: ({tokens})"


#: FTS5's averages record (rowid 1: rows, then each column's total tokens, as varints) and
#: structure record (rowid 10: its segments and write counter), which every committed change
#: to the index rewrites: what the remembered document counts are keyed by.
_INDEX_STATE = text("SELECT block FROM learnings_fts_data WHERE id IN (1, 10) ORDER BY id")
#: Rows' ``seq``, text and FTS5's ``sz`` record (each column's token count), by ``seq``.
_INDEXED_ROWS = (
    "SELECT l.seq, l.text, d.sz FROM learnings AS l "
    "JOIN learnings_fts_docsize AS d ON d.id = l.seq "
)
_ROWS = text(_INDEXED_ROWS + "WHERE l.seq IN (SELECT value FROM json_each(:seqs))")
#: The table's write counter (migration m007: one tick per row inserted, updated or deleted)
#: and highest ``seq``: what tells ``_bring_counts_up`` whether only inserts came since.
_WRITES = text("SELECT (SELECT value FROM learning_clock), (SELECT max(seq) FROM learnings)")
#: The rows past a ``seq``.
_INSERTED = text(_INDEXED_ROWS + "WHERE l.seq > :top ORDER BY l.seq LIMIT :limit")
#: FTS5's vocabulary by token and column, this connection's own (a temporary table; it reads
#: the index, stores nothing): how many rows hold a token in their text, counted by the walk
#: ``bm25()`` itself does.
_VOCABULARY_TABLE = (
    "CREATE VIRTUAL TABLE IF NOT EXISTS temp.kern_fts_columns "
    "USING fts5vocab(main, learnings_fts, col)"
)
_DOCUMENT_COUNT = text("SELECT doc FROM temp.kern_fts_columns WHERE term = :token AND col = 'text'")

#: A temporary FTS5 table of the connection, with FTS5's own tokenizer, and its instances:
#: the tokens of the few texts ``fts5_tokens`` cannot vouch for (letters outside ASCII).
_OWN_TOKENIZER = (
    "CREATE VIRTUAL TABLE IF NOT EXISTS temp.kern_tokens USING fts5("
    "text, tokenize='porter unicode61')",
    "CREATE VIRTUAL TABLE IF NOT EXISTS temp.kern_token_instances "
    "USING fts5vocab(temp, kern_tokens, instance)",
)
_TOKENIZE = text("INSERT INTO temp.kern_tokens (rowid, text) VALUES (:key, :text)")
_TOKEN_INSTANCES = text('SELECT term, doc, "offset" FROM temp.kern_token_instances')


def _word_keys(words: Sequence[str]) -> dict[int, str]:
    """The query's words keyed as ``_tokens_of`` takes them next to rows (``seq`` >= 1)."""
    return {-1 - i: word for i, word in enumerate(words)}


def _tokens_of(
    conn: Connection, texts: dict[int, str], counted: dict[int, int]
) -> dict[int, list[str]] | None:
    """Each text's tokens by key as FTS5 makes them: ``fts5_tokens`` where it can vouch for
    them, FTS5's own tokenizer for the rest. ``counted`` holds, for the texts that are rows,
    by ``seq``, how many tokens FTS5 counted in the row's text column (its ``sz`` record):
    the tokens must number that.
    ``None`` past ``_OUTSIDE_MAX_UNSURE`` texts for FTS5's tokenizer, or on a count that
    differs (not FTS5's tokens: let ``bm25()`` count them)."""
    tokenized: dict[int, list[str]] = {}
    unsure: dict[int, str] = {}
    for key, value in texts.items():
        tokens = fts5_tokens(value)
        if tokens is None:
            unsure[key] = value
        else:
            tokenized[key] = tokens
    if unsure:
        if len(unsure) > _OUTSIDE_MAX_UNSURE:
            return None
        tokenized.update(_fts5_own_tokens(conn, unsure))
    if any(len(tokenized[seq]) != count for seq, count in counted.items()):
        return None
    return tokenized


def _fts5_own_tokens(conn: Connection, texts: dict[int, str]) -> dict[int, list[str]]:
    """Each text's tokens by FTS5's own ``porter unicode61`` tokenizer, in order, by key:
    written to this connection's temporary table, read back and deleted in the caller's
    transaction (temporary tables take no lock on the database; ~15 µs a token)."""
    for statement in _OWN_TOKENIZER:
        conn.exec_driver_sql(statement)
    conn.execute(_TOKENIZE, [{"key": key, "text": value} for key, value in texts.items()])
    found: dict[int, list[tuple[int, str]]] = {key: [] for key in texts}
    for term, doc, offset in conn.execute(_TOKEN_INSTANCES):
        found[doc].append((offset, term))
    conn.exec_driver_sql("DELETE FROM temp.kern_tokens")
    return {key: [term for _, term in sorted(pairs)] for key, pairs in found.items()}


#: Below this many rows in the index, ``bm25()``'s walk of a word's rows costs well under a
#: millisecond: the statement runs as it is.
_OUTSIDE_MIN_ROWS = 10_000
#: Above this many (word, row) matches in the scopes, tokenizing the rows here costs more
#: than ``bm25()``'s walk: the statement runs as it is (a large shared namespace).
_OUTSIDE_MAX_PAIRS = 4_000
#: Above this many candidates (or words) with letters outside ASCII, FTS5's own tokenizer
#: (``_fts5_own_tokens``) would cost more than the walk: the statement runs as it is.
_OUTSIDE_MAX_UNSURE = 100
#: Above this many rows written since the remembered document counts, tokenizing them
#: (~20 µs a row) would cost what counting the query's words anew does: they are dropped.
_ADVANCE_MAX_ROWS = 1_000


@lru_cache(maxsize=64)
def _fts_query(shape: tuple[str, ...], columns: tuple[ColumnElement[Any], ...]) -> Select[Any]:
    """``SqliteDb._text_search_query``'s statement for filters of ``shape``: ``columns`` then
    ``score`` of the rows matching ``:match`` that the filter admits, best first, at most
    ``:limit``; the filter's values are parameters too (``filter_values``)."""
    # The scope column weighs nothing: BM25 ranks by the text alone.
    rank = func.bm25(_FTS_NAME, 1.0, 0.0)
    return (
        select(*columns, (-rank).label("score"))
        .select_from(_FTS.join(learnings, learnings.c.seq == _FTS.c.rowid))
        .where(_FTS_NAME.op("MATCH")(bindparam("match")), *shape_clauses(shape))
        .order_by(rank, learnings.c.seq)
        .limit(bindparam("limit"))
    )


@lru_cache(maxsize=64)
def _holders_query(shape: tuple[str, ...]) -> Select[Any]:
    """``(seq, id)`` of the rows filters of ``shape`` admit that match ``:match`` (one word,
    bounded by the scopes), at most ``:limit``. Ordered by the index's rowid so that SQLite
    reads FTS5's matches and looks each row up, not the scope's rows one ``MATCH`` each
    (45 ms against 1 ms for a LoCoMo conversation's 419 rows)."""
    return (
        select(learnings.c.seq, learnings.c.id)
        .select_from(_FTS.join(learnings, learnings.c.seq == _FTS.c.rowid))
        .where(_FTS_NAME.op("MATCH")(bindparam("match")), *shape_clauses(shape))
        .order_by(_FTS.c.rowid)
        .limit(bindparam("limit"))
    )


def create_sqlite_engine(
    db_file: str | os.PathLike[str], *, busy_timeout_ms: int = 30_000
) -> Engine:
    """An engine configured as described in this module's docstring (no migration).

    Creates the file's parent folders. A relative path is resolved now, so a later ``chdir``
    cannot point new connections at another file.
    """
    if isinstance(busy_timeout_ms, bool) or not isinstance(busy_timeout_ms, int):
        raise ConfigError(f"busy_timeout_ms must be an integer, got {busy_timeout_ms!r}")
    if busy_timeout_ms < 0:
        raise ConfigError(f"busy_timeout_ms must be >= 0, got {busy_timeout_ms}")
    if not _is_memory(db_file) and not os.fspath(db_file):
        raise ConfigError("db_file must be a file path or ':memory:', not an empty string")

    connect_args: dict[str, Any] = {
        # Pooled connections move between threads; each is used by one thread at a time.
        "check_same_thread": False,
        # sqlite3 turns this into sqlite3_busy_timeout(): how long one attempt waits for the
        # lock; ``_begin`` retries a refused BEGIN until busy_timeout_ms in all.
        "timeout": min(busy_timeout_ms, _ATTEMPT_MS) / 1000,
    }
    json_options: dict[str, Any] = {"json_serializer": _json_dumps}
    if _is_memory(db_file):
        # One connection holds the whole database; a pool of one makes threads take turns.
        engine = create_engine(
            URL.create("sqlite+pysqlite", database=MEMORY),
            poolclass=QueuePool,
            pool_size=1,
            max_overflow=0,
            connect_args=connect_args,
            **json_options,
        )
    else:
        path = Path(db_file).expanduser().absolute()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"could not create the folder for {path}: {exc}") from exc
        engine = create_engine(
            URL.create("sqlite+pysqlite", database=str(path)),
            poolclass=QueuePool,
            connect_args=connect_args,
            **json_options,
        )
        _FILE_ENGINES.add(engine)

    wal = not _is_memory(db_file)

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        # Take BEGIN away from the driver; ``_begin`` below emits it. On Python >= 3.12 keep
        # the legacy mode explicitly, where isolation_level=None means "driver autocommit".
        if hasattr(sqlite3, "LEGACY_TRANSACTION_CONTROL"):
            dbapi_connection.autocommit = sqlite3.LEGACY_TRANSACTION_CONTROL
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA foreign_keys = ON")
            cursor.execute(f"PRAGMA cache_size = -{_CACHE_KIB}")
            if wal:
                mode = _enable_wal(cursor, busy_timeout_ms)
                if mode != "wal":
                    logger.warning(
                        "SQLite refused WAL mode for %s (journal_mode=%s); concurrent access "
                        "will be slower",
                        engine.url.database,
                        mode,
                    )
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        write = conn.get_execution_options().get(WRITE_OPTION, True)
        statement = "BEGIN IMMEDIATE" if write else "BEGIN"
        deadline = time.monotonic() + max(0, busy_timeout_ms - _ATTEMPT_MS) / 1000
        while True:
            try:
                conn.exec_driver_sql(statement)
                return
            except OperationalError as exc:
                if not _is_busy(exc) or time.monotonic() >= deadline:
                    raise
                logger.debug("%s: the database is locked; retrying", statement)
                time.sleep(random.uniform(0.005, 0.05))

    return engine


#: Each connection's page cache, in KiB (SQLite's default is 2,000). Search reads a scope's
#: rows whole, embeddings included (1.5 KB each for MiniLM): at 1,000 memories that is
#: already more than 2 MB, and a cache smaller than the rows it reads again and again is
#: re-filled from the operating system on every query. Pages are only cached once read.
_CACHE_KIB = 32_768

#: How long one BEGIN waits in SQLite's busy handler before kern retries it.
_ATTEMPT_MS = 5000


def _is_busy(exc: OperationalError) -> bool:
    detail = str(exc.orig or exc).lower()
    return "locked" in detail or "busy" in detail


def _enable_wal(cursor: Any, busy_timeout_ms: int) -> str:
    """Switch the file to WAL (persistent; a no-op once set); return the resulting mode.

    The switch needs a moment of exclusive access, and SQLite answers "database is locked"
    at once, without calling the busy handler, when another connection is opening or
    switching the same fresh file. So retry for up to the busy timeout.
    """
    deadline = time.monotonic() + busy_timeout_ms / 1000
    while True:
        try:
            return str(cursor.execute("PRAGMA journal_mode = WAL").fetchone()[0]).lower()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(random.uniform(0.005, 0.02))


def _is_memory(db_file: str | os.PathLike[str]) -> bool:
    return os.fspath(db_file) == MEMORY


def _json_dumps(value: Any) -> str:
    # Readable non-ASCII text in the file (and smaller); same JSON otherwise.
    return dumps(value, ensure_ascii=False)
