"""``PostgresDb``: the scale-out engine, many app servers and workers over one PostgreSQL.

Same tables and migrations as ``SqliteDb`` (``kern.db.schema``, ``kern.db.migrations``); what
differs is declared here, in the hooks ``SqlDb`` leaves to engines:

- Driver: psycopg 3 (``postgresql+psycopg://``), a pool of connections per process. A process
  that forks drops (without closing) the connections it inherited. Writes run in a
  transaction; reads (``transaction(write=False)``) run statement by statement in autocommit,
  which under READ COMMITTED loses nothing and saves the BEGIN and COMMIT round trips.
- Concurrency: rows a write reads and then changes are read ``FOR UPDATE`` and every update is
  a compare-and-swap on ``version`` (``kern.db.sql``); a transaction that loses a deadlock is
  retried. Jobs are claimed ``FOR UPDATE SKIP LOCKED``: claimers never wait on each other.
- Full text: the stored generated column ``learnings.text_search`` (``tsvector``, text-search
  configuration ``kern_english``) with a GIN index, created by migration
  ``m003_postgres_full_text``; queries are ``kern.db.fulltext.tsquery`` OR-queries ranked by
  BM25 computed in SQL (see ``_text_search_query``), as FTS5 ranks them on SQLite.
- Vectors: when the ``vector`` extension (pgvector) can be created, ``learnings.embedding``
  becomes an untyped ``vector`` column, and each embedding dimension written gets its own
  partial HNSW index (cosine), created on the first write of that dimension: one embedder per
  database is the norm, but a switch of embedder leaves old and new vectors each searchable
  against their own kind. Without pgvector the column stays ``BYTEA`` and vectors are ranked in
  numpy, as on SQLite, after one log line saying so.
"""

from __future__ import annotations

import functools
import logging
import math
import operator
import os
import random
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import fields
from datetime import datetime
from fractions import Fraction
from json import dumps
from typing import Any, Literal

import numpy as np
from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Float,
    Integer,
    RowMapping,
    Select,
    Text,
    and_,
    bindparam,
    case,
    cast,
    create_engine,
    event,
    func,
    literal,
    literal_column,
    or_,
    select,
    text,
    true,
)
from sqlalchemy.dialects.postgresql import ARRAY, TSQUERY
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.types import UserDefinedType

from kern._text import query_terms
from kern.db._candidates import SEARCH_CACHE_MB
from kern.db._learnings import filter_shape, shape_clauses
from kern.db._scopes import TOKEN_SEPARATOR, Bools, ScopeRows, ScopeText, take
from kern.db._sqlbase import check_limit
from kern.db.base import JobRecord, LearningFilter, LearningRecord, WriteOp
from kern.db.fulltext import tsquery
from kern.db.migrations import draw_scope_tokens_now, migrate, serialize_schema_changes
from kern.db.schema import learnings
from kern.db.sql import (
    LEARNING_COLUMNS,
    WRITE_OPTION,
    SqlDb,
    filter_values,
    learning_clauses,
    runnable_jobs,
)
from kern.errors import ConfigError, MissingDependencyError, StorageError

__all__ = ["PostgresDb", "create_postgres_engine"]

logger = logging.getLogger(__name__)

VectorSupport = Literal["pgvector", "bytea"]

# Okapi BM25 as SQLite's FTS5 computes it (k1, b and the floor of the inverse document frequency).
_BM25_K1 = 1.2
_BM25_B = 0.75
_MIN_IDF = 1e-6
# numeric's base (PostgreSQL's NBASE): its division scale counts digits of it.
_NBASE = 10_000
# HNSW indexes (pgvector) take at most 2,000 dimensions of ``vector``; wider ones are scanned.
_HNSW_MAX_DIMENSIONS = 2000
# SQLSTATEs of transactions Postgres aborted to break a cycle: safe to run again from scratch.
_RETRYABLE = frozenset({"40P01", "40001"})  # deadlock_detected, serialization_failure
_APPLY_ATTEMPTS = 5
# Words whose lexemes a PostgresDb remembers (``PostgresDb._lexemes``): a few MB at most.
_LEXEMES_KEPT = 50_000

# The engine-specific column and configuration of migration m003, by name (constants).
_TEXT_SEARCH: ColumnElement[Any] = literal_column("learnings.text_search")
_CONFIG: ColumnElement[Any] = literal_column("'kern_english'::regconfig")
_TSQUERY = TSQUERY()
_ZERO: ColumnElement[Any] = literal(0.0, Float())

# Engines alive in this process, so a forked child can drop the connections it inherited.
_ENGINES: weakref.WeakSet[Engine] = weakref.WeakSet()


def _drop_inherited_connections() -> None:
    for engine in list(_ENGINES):
        engine.dispose(close=False)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_drop_inherited_connections)


class _Vector(UserDefinedType[bytes]):
    """pgvector's ``vector`` seen from Python as kern's float32 bytes (text on the wire, which
    round-trips float32 exactly)."""

    cache_ok = True

    def __init__(self, dimensions: int | None = None) -> None:
        self.dimensions = dimensions

    def get_col_spec(self, **kw: Any) -> str:
        return "vector" if self.dimensions is None else f"vector({self.dimensions})"

    def bind_processor(self, dialect: Any) -> Callable[[bytes | None], str | None]:
        return _vector_text

    def result_processor(self, dialect: Any, coltype: Any) -> Callable[[Any], bytes | None]:
        return _vector_bytes


def _vector_text(value: bytes | None) -> str | None:
    if value is None:
        return None
    if len(value) % 4:
        raise ValueError(
            f"an embedding is float32 bytes; {len(value)} bytes is not a multiple of 4"
        )
    # repr of a float32 widened to float64 is exact, and Postgres parses it back to that float32.
    return "[" + ",".join(map(repr, np.frombuffer(value, dtype=np.float32).tolist())) + "]"


def _vector_bytes(value: str | None) -> bytes | None:
    if value is None:
        return None
    body = value.strip()[1:-1]
    floats = [float(v) for v in body.split(",")] if body else []
    return np.asarray(floats, dtype=np.float32).tobytes()


class PostgresDb(SqlDb):
    """kern's data in a PostgreSQL database, migrated on open.

    Args:
        db_url: ``postgresql://user:password@host:5432/dbname`` (``postgresql+psycopg://``
            and ``postgres://`` are accepted too); the database must exist.
        pool_size, max_overflow, pool_timeout, pool_recycle: this process's connection pool
            (SQLAlchemy ``QueuePool``): connections kept open, extra ones allowed under load,
            seconds to wait for one, and seconds after which one is replaced. Every app server
            and worker process has its own pool, so the server's ``max_connections`` must cover
            processes x (pool_size + max_overflow), or put PgBouncer in front (docs/scaling.md).
        pgvector: ``None`` (default) uses pgvector when the extension can be created, else
            falls back to ``BYTEA`` + numpy with one log line; ``True`` requires it (a
            ``ConfigError`` if unavailable); ``False`` never enables it (a column converted
            earlier stays ``vector``).
        connect_args: extra psycopg connection parameters (``sslmode``, ``options`` …).
        clock: injectable clock (tests).
        search_cache_mb: how much of the scopes' rows search keeps in memory between writes
            (docs/search.md; 0 turns it off).
    """

    _neighbours_as_union = True
    _row_tokens = (
        func.array_to_string(func.tsvector_to_array(_TEXT_SEARCH), TOKEN_SEPARATOR),
        func.length(_TEXT_SEARCH),
    )

    def __init__(
        self,
        db_url: str,
        *,
        pool_size: int = 5,
        max_overflow: int = 10,
        pool_timeout: float = 30.0,
        pool_recycle: float = 1800.0,
        pgvector: bool | None = None,
        connect_args: dict[str, Any] | None = None,
        clock: Callable[[], datetime] | None = None,
        search_cache_mb: float = SEARCH_CACHE_MB,
    ) -> None:
        engine = create_postgres_engine(
            db_url,
            pool_size=pool_size,
            max_overflow=max_overflow,
            pool_timeout=pool_timeout,
            pool_recycle=pool_recycle,
            connect_args=connect_args,
        )
        super().__init__(engine, clock=clock, search_cache_mb=search_cache_mb)
        self.db_url = self._name
        self.vectors: VectorSupport = "bytea"
        self._indexed_dimensions: set[int] = set()
        self._stems: dict[str, tuple[str, ...]] = {}  # word -> its lexemes (_lexemes)
        try:
            migrate(self)
            self.vectors = self._enable_vectors(pgvector)
            if self.vectors == "pgvector":
                self._indexed_dimensions = self._vector_indexes()
        except BaseException:
            self.close()
            raise

    # -- vectors -------------------------------------------------------------------------------

    def _vectors_in_memory(self) -> bool:
        return self.vectors == "bytea"

    def _enable_vectors(self, wanted: bool | None) -> VectorSupport:
        """Make ``learnings.embedding`` a pgvector column if it is not yet and ``wanted`` allows;
        return what the column is now."""
        with self.transaction(action="set up vector storage") as conn:
            if _embedding_type(conn) == "vector":
                return "pgvector"
            if wanted is False:
                logger.info("%r: pgvector=False, embeddings are stored as BYTEA", self)
                return "bytea"
            serialize_schema_changes(conn)
            if _embedding_type(conn) == "vector":  # another process converted it meanwhile
                return "pgvector"
            reason = _create_vector_extension(conn)
            if reason is None:
                converted = _convert_embedding_column(conn)
                logger.info(
                    "%r: pgvector enabled, learnings.embedding is a vector column (%d stored "
                    "embeddings converted)",
                    self,
                    converted,
                )
                return "pgvector"
        if wanted:
            raise ConfigError(f"pgvector=True, but {self!r} cannot use pgvector: {reason}")
        logger.warning(
            "pgvector is not available in %r (%s): embeddings are stored as BYTEA and ranked in "
            "Python with numpy, which reads every candidate vector per search. Install the "
            "pgvector extension (https://github.com/pgvector/pgvector) and reopen to switch.",
            self,
            reason,
        )
        return "bytea"

    def _vector_indexes(self) -> set[int]:
        query = text(
            "SELECT indexname FROM pg_indexes "
            "WHERE tablename = 'learnings' AND indexname LIKE 'ix_learnings_embedding_hnsw_%'"
        )
        with self.transaction(write=False, action="list vector indexes") as conn:
            names = conn.execute(query).scalars().all()
        return {int(name.rsplit("_", 1)[1]) for name in names}

    def _index_dimensions(self, dimensions: set[int]) -> None:
        """Create the HNSW index of each dimension in ``dimensions`` that has none yet.

        In its own short transaction before the write that needs it, not inside that write:
        ``CREATE INDEX`` blocks other writers until it commits, which must not be held while a
        write transaction also waits for row locks. Once per dimension per database.
        """
        for size in sorted(dimensions - self._indexed_dimensions):
            if 0 < size <= _HNSW_MAX_DIMENSIONS:
                with self.transaction(action=f"create the vector index for {size} dimensions") as c:
                    serialize_schema_changes(c)
                    c.exec_driver_sql(
                        f"CREATE INDEX IF NOT EXISTS ix_learnings_embedding_hnsw_{size} "
                        f"ON learnings USING hnsw ((embedding::vector({size})) vector_cosine_ops) "
                        f"WHERE vector_dims(embedding) = {size}"
                    )
                logger.info("%r: created the HNSW index for %d-dimension embeddings", self, size)
            self._indexed_dimensions.add(size)

    def _embedding_value(self, embedding: bytes | None) -> Any:
        if embedding is None or self.vectors == "bytea":
            return embedding
        return cast(bindparam(None, embedding, type_=_Vector()), _Vector())

    def load_vectors(self, where: LearningFilter) -> tuple[list[str], list[bytes]]:
        if self.vectors == "bytea":
            return super().load_vectors(where)
        query = (
            select(learnings.c.id, cast(learnings.c.embedding, _Vector()))
            .where(learnings.c.embedding.is_not(None), *learning_clauses(where))
            .order_by(learnings.c.seq)
            .params(filter_values(where))
        )
        with self.transaction(write=False, action="load learning vectors") as conn:
            rows = conn.execute(query).all()
        return [row[0] for row in rows], [row[1] for row in rows]

    def search_vectors(
        self, vector: bytes, where: LearningFilter, *, limit: int = 50
    ) -> list[tuple[str, float]]:
        """Nearest neighbours by cosine, found by the database: through the HNSW index of the
        vector's dimension when the planner finds that cheaper than scanning the rows the
        filter leaves (pgvector's iterative scan keeps filtered index scans from coming back
        short), else exactly."""
        if self.vectors == "bytea" or not vector or len(vector) % 4 or limit <= 0:
            return super().search_vectors(vector, where, limit=limit)
        query = _vector_query(filter_shape(where), len(vector) // 4)
        values = {**filter_values(where), "query_vector": vector, "limit": limit}
        # A transaction (write=True), though it only reads: SET LOCAL needs one.
        with self.transaction(action="search learning vectors") as conn:
            conn.exec_driver_sql(f"SET LOCAL hnsw.ef_search = {_hnsw_ef_search(limit)}")
            conn.exec_driver_sql("SET LOCAL hnsw.iterative_scan = relaxed_order")
            rows = conn.execute(query, values).all()
        # relaxed_order may return neighbours slightly out of order; zero vectors have no angle.
        hits = [(row[0], 1.0 - float(row[1])) for row in rows if row[1] is not None]
        hits = [(key, score) for key, score in hits if np.isfinite(score)]
        return sorted(hits, key=lambda hit: -hit[1])

    # -- writes ----------------------------------------------------------------------------------

    def apply(
        self,
        ops: Sequence[WriteOp],
        *,
        run_id: str | None = None,
        actor: str | None = None,
        job: JobRecord | None = None,
    ) -> list[LearningRecord]:
        """``SqlDb.apply``, run again (from scratch, up to 5 attempts) when Postgres aborts it
        to break a deadlock: two writes locking the same rows in different orders."""
        ops = list(ops)
        if self.vectors == "pgvector":
            self._index_dimensions(
                {len(e) // 4 for op in ops if (e := getattr(op, "embedding", None)) is not None}
            )
        for attempt in range(1, _APPLY_ATTEMPTS + 1):
            try:
                return super().apply(ops, run_id=run_id, actor=actor, job=job)
            except StorageError as exc:
                if attempt == _APPLY_ATTEMPTS or _sqlstate(exc) not in _RETRYABLE:
                    raise
                logger.info("%r: write aborted (%s), retrying", self, _sqlstate(exc))
                time.sleep(random.uniform(0.005, 0.05) * attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    # -- full text and jobs ----------------------------------------------------------------------

    def search_text_scores(
        self, query: str, where: LearningFilter, *, limit: int = 50
    ) -> list[tuple[str, float]]:
        """``SqlDb.search_text_scores``, ranked in memory when the scope's snapshot is current
        (``_text_scores_in_memory``), else by the database (``_text_search_query``)."""
        check_limit(limit)
        found = self._text_scores_in_memory(query, where, limit) if limit else None
        return super().search_text_scores(query, where, limit=limit) if found is None else found

    def _text_scores_in_memory(
        self, query: str, where: LearningFilter, limit: int
    ) -> list[tuple[str, float]] | None:
        """``_text_search_query``'s ids and scores, computed from the scope's snapshot and its
        inverted index of the rows' lexemes (``kern.db._scopes``): the same rows, statistics
        and arithmetic (``_bm25_in_memory``), without the visit to every row of the scope
        that the statement pays for ``N``. ``None`` when the scope has no current snapshot
        (the first searches after a write), the filter cannot be evaluated in memory, or a
        query word has several lexemes (``to_tsquery`` makes a phrase of them, which the
        index does not hold): then the database ranks.
        """
        if tsquery(query) is None:
            return []
        words = self._term_lexemes(query)
        if any(len(lexemes) > 1 for lexemes in words.values()):
            return None
        lexemes = sorted({lexeme for lexemes in words.values() for lexeme in lexemes})
        if not lexemes:
            return []
        snapshot = self._scope_rows(where, first=True)
        if snapshot is None or snapshot.text is None:
            return None
        visible = snapshot.visible(where)
        if visible is None:
            return None
        return _bm25_in_memory(snapshot, snapshot.text, visible, lexemes, limit)

    def _text_search_query(
        self,
        query: str,
        where: LearningFilter,
        limit: int,
        columns: Sequence[ColumnElement[Any]] = LEARNING_COLUMNS,
    ) -> tuple[Select[Any], dict[str, Any]] | None:
        """Rows matching ``where`` and any query term (``text_search @@ to_tsquery(…)``),
        ranked by Okapi BM25 in one statement that reads the scope once.

        PostgreSQL's own ``ts_rank_cd`` has no inverse document frequency: a name in half of a
        conversation's turns counts as much as the one rare word that matters. kern's default
        search found 0.667 of LoCoMo's evidence in the top 10 with it, 0.75 with this. A query
        lexeme's document frequency is the number of matching rows holding it (every row that
        holds it matches the OR query), ``N`` the number of rows in ``where``, and a row's
        length its number of distinct lexemes against the matches' average. A term counts
        once per row (BM25 with tf = 1): memories are short, and testing a row for each term
        (``@@``) is several times cheaper than unnesting every matching row's lexemes.

        ``N`` needs every row of the scope (the filter's time conditions are not in any
        index), so the statement reads the scope once and keeps of each row only its number,
        its length and which lexemes it holds (``scope``); the statistics and the scores come
        from that. The query's lexemes are read first (one small statement: stemming is the
        database's), so each is a column of its own. Before, the scope was counted by one scan
        and the matches read by another, their ``tsvector``s kept whole, joined to the terms
        twice and sorted by them: same scores, about twice the time over a 100,000-row shared
        namespace (benchmarks/scale.md, "Issue 13").
        """
        expression = tsquery(query)
        if expression is None:
            return None
        lexemes = self._lexemes(query)
        if not lexemes:  # nothing the index holds: no row can score
            return None
        values: dict[str, Any] = {f"lexeme_{i}": lexeme for i, lexeme in enumerate(lexemes)}
        values.update(filter_values(where), tsquery=expression, limit=limit)
        return _bm25_query(where, len(lexemes), columns), values

    def _lexemes(self, query: str) -> list[str]:
        """The query's words as the index holds them (``to_tsvector``: stemmed), sorted."""
        words = self._term_lexemes(query)
        return sorted({lexeme for lexemes in words.values() for lexeme in lexemes})

    def _term_lexemes(self, query: str) -> dict[str, tuple[str, ...]]:
        """Each of the query's words (``query_terms``) and its lexemes (``to_tsvector``).

        Each word's lexemes are remembered (``_LEXEMES_KEPT`` words per database): a word
        always stems the same way under the configuration migration m003 creates, and asking
        the database costs a round trip, which a user's recall (a few milliseconds in all)
        would otherwise pay on every search. Words are stemmed one by one, as ``to_tsvector``
        of the whole query would stem them: its parser splits on the spaces between them.
        """
        found = {term: self._stems.get(term) for term in query_terms(query)}
        missing = [term for term, lexemes in found.items() if lexemes is None]
        if missing:
            word = func.unnest(bindparam("words", missing, type_=ARRAY(Text())))
            stems = select(word.label("word")).subquery()
            lexemes = func.tsvector_to_array(func.to_tsvector(_CONFIG, stems.c.word))
            with self.transaction(write=False, action="read the search terms") as conn:
                rows = {
                    term: tuple(stem) for term, stem in conn.execute(select(stems.c.word, lexemes))
                }
            found.update(rows)
            if len(self._stems) + len(rows) > _LEXEMES_KEPT:
                self._stems.clear()  # other threads may read it meanwhile: they copy first
            self._stems.update(rows)
        return {term: lexemes or () for term, lexemes in found.items()}

    def _pick_job(
        self, conn: Connection, now: datetime, *, job_id: str | None, user_id: str | None
    ) -> RowMapping | None:
        query = runnable_jobs(now, job_id=job_id, user_id=user_id).with_for_update(skip_locked=True)
        return conn.execute(query).mappings().first()

    def __repr__(self) -> str:
        return f"PostgresDb({self._name!r})"


# ``_bm25_query``'s statements by filter shape, number of lexemes and columns: building one
# costs more than running it over a user's few hundred rows (~4 ms of Python against well
# under 1 ms in the database, on a quiet machine).
_BM25_QUERIES: dict[tuple[Any, ...], Select[Any]] = {}


@functools.lru_cache(maxsize=64)
def _vector_query(shape: tuple[str, ...], size: int) -> Select[Any]:
    """``PostgresDb.search_vectors``' statement for filters of ``shape`` and vectors of
    ``size`` dimensions: ids and cosine distances to ``:query_vector``, nearest first, at most
    ``:limit``; the filter's values are parameters too (``filter_values``). Built once per
    shape, as ``_bm25_query`` is."""
    # Literal dimensions (never parameters) so the planner can match the partial index.
    column: ColumnElement[Any] = literal_column(f"(learnings.embedding::vector({size}))")
    distance = column.op("<=>", return_type=Float())(
        cast(bindparam("query_vector", type_=_Vector()), _Vector(size))
    )
    return (
        select(learnings.c.id, distance.label("distance"))
        .where(
            literal_column(f"vector_dims(learnings.embedding) = {size}"),
            *shape_clauses(shape),
        )
        .order_by(literal_column("distance"))
        .limit(bindparam("limit"))
    )


def _bm25_query(
    where: LearningFilter, lexemes: int, columns: Sequence[ColumnElement[Any]]
) -> Select[Any]:
    """``PostgresDb._text_search_query``'s statement for filters shaped like ``where`` and
    queries of ``lexemes`` lexemes, every value a parameter: ``tsquery``, ``limit``,
    ``lexeme_0`` … and the filter's (``filter_values``). Built once per shape."""
    shape = tuple(f.name for f in fields(where) if getattr(where, f.name) is not None)
    key = (shape, lexemes, tuple(str(column) for column in columns))
    statement = _BM25_QUERIES.get(key)
    if statement is None:
        statement = _build_bm25_query(learning_clauses(where), lexemes, columns)
        if len(_BM25_QUERIES) >= 1024:
            _BM25_QUERIES.clear()
        _BM25_QUERIES[key] = statement
    return statement


def _build_bm25_query(
    scoped: Sequence[ColumnElement[bool]], lexemes: int, columns: Sequence[ColumnElement[Any]]
) -> Select[Any]:
    matcher = func.to_tsquery(_CONFIG, bindparam("tsquery", type_=Text()))
    holds = [f"holds_{i}" for i in range(lexemes)]
    terms = [
        cast(func.quote_literal(bindparam(f"lexeme_{i}", type_=Text())), _TSQUERY)
        for i in range(lexemes)
    ]
    scope = (
        select(
            learnings.c.seq,
            func.length(_TEXT_SEARCH).label("length"),
            _TEXT_SEARCH.op("@@")(matcher).label("matches"),
            *(
                _TEXT_SEARCH.op("@@")(term).label(name)
                for term, name in zip(terms, holds, strict=True)
            ),
        )
        .where(*scoped)
        .cte("scope")
    )
    documents = cast(func.count(), Float)

    def idf(name: str) -> ColumnElement[Any]:
        # FTS5's IDF: ln((N - n + 0.5) / (n + 0.5)), at least 1e-6 for terms in most rows.
        n = cast(func.count().filter(and_(scope.c.matches, scope.c[name])), Float)
        return func.greatest(func.ln((documents - n + 0.5) / (n + 0.5)), _MIN_IDF)

    weights = select(
        func.avg(scope.c.length).filter(scope.c.matches).label("average"),
        *(idf(name).label(name) for name in holds),
    ).cte("weights")
    length = cast(scope.c.length, Float)
    average = weights.c.average  # numeric, as avg() of an integer column returns it
    saturation = (_BM25_K1 + 1) / (1 + _BM25_K1 * (1 - _BM25_B + _BM25_B * length / average))
    idfs = [case((scope.c[name], weights.c[name]), else_=_ZERO) for name in holds]
    score = functools.reduce(operator.add, idfs) * saturation
    scored = (
        select(scope.c.seq, score.label("score"))
        .select_from(scope.join(weights, true()))
        .where(scope.c.matches, or_(*(scope.c[name] for name in holds)))
        .order_by(score.desc(), scope.c.seq)
        .limit(bindparam("limit", type_=Integer()))
        .subquery("scored")
    )
    return (
        select(*columns, scored.c.score)
        .select_from(scored.join(learnings, learnings.c.seq == scored.c.seq))
        .order_by(scored.c.score.desc(), scored.c.seq)
    )


def _bm25_in_memory(
    snapshot: ScopeRows, text: ScopeText, visible: Bools, lexemes: Sequence[str], limit: int
) -> list[tuple[str, float]]:
    """``_build_bm25_query``'s ids and scores, best first, over a scope's snapshot: rows
    ``visible`` in it, each query lexeme (sorted, each a query word's only lexeme) looked up
    in its inverted index, and the statement's arithmetic step by step in float64, so the
    scores are the statement's to the last bit (a test compares the two).

    A row matches when it holds a lexeme (the OR query of one-lexeme words); ``N`` is the
    number of visible rows, a lexeme's ``n`` the number of matches holding it, the average
    length PostgreSQL's ``avg`` (``_numeric_average``). Ties are broken by ``seq``."""
    held = [rows[visible[rows]] for rows in map(text.rows_with, lexemes)]
    hit = np.zeros(len(visible), dtype=np.bool_)
    for rows in held:
        hit[rows] = True
    matched = np.flatnonzero(hit)
    if not len(matched):
        return []
    documents = float(np.count_nonzero(visible))
    total = np.zeros(len(visible), dtype=np.float64)
    for rows in held:  # in the statement's order: sum((case ...) + (case ...) ...)
        n = float(len(rows))
        if n:
            total[rows] += max(math.log((documents - n + 0.5) / (n + 0.5)), _MIN_IDF)
    lengths = text.lengths[matched]
    average = _numeric_average(int(lengths.sum()), len(matched))
    length = lengths.astype(np.float64)
    saturation = (_BM25_K1 + 1) / (1 + _BM25_K1 * ((1 - _BM25_B) + _BM25_B * length / average))
    score = total[matched] * saturation
    if limit < len(score):  # the rows scoring at least the limit-th best, ties included
        kept = np.flatnonzero(score >= np.partition(score, len(score) - limit)[-limit])
        matched, score = matched[kept], score[kept]
    order = np.lexsort((snapshot.seq[matched], -score))[:limit]
    ids = take(snapshot.ids, matched[order].tolist())
    return list(zip(ids, score[order].tolist(), strict=True))


def _numeric_average(total: int, count: int) -> float:
    """``avg()`` of ``count`` integers summing to ``total`` as PostgreSQL computes it and
    ``_build_bm25_query`` uses it: a ``numeric`` quotient rounded half away from zero to the
    scale ``select_div_scale`` picks (16 significant digits, estimated from the first
    base-10,000 digits), then the nearest float8 (``numeric_float8``). ``total / count``
    would differ from it in the last bit for some lengths."""

    def weight_and_first_digit(value: int) -> tuple[int, int]:
        weight = 0
        while value >= _NBASE ** (weight + 1):
            weight += 1
        return weight, value // _NBASE**weight

    (w1, d1), (w2, d2) = weight_and_first_digit(total), weight_and_first_digit(count)
    quotient_weight = w1 - w2 - (1 if d1 <= d2 else 0)
    scale = min(max(16 - quotient_weight * 4, 0), 1000)
    scaled = (2 * total * 10**scale + count) // (2 * count)  # round half up, both positive
    return float(Fraction(scaled, 10**scale))


def create_postgres_engine(
    db_url: str,
    *,
    pool_size: int = 5,
    max_overflow: int = 10,
    pool_timeout: float = 30.0,
    pool_recycle: float = 1800.0,
    connect_args: dict[str, Any] | None = None,
) -> Engine:
    """A psycopg 3 engine for ``db_url`` with kern's pool settings (no migration)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise MissingDependencyError("psycopg", "postgres") from None
    if not isinstance(db_url, str) or not db_url:
        raise ConfigError(f"db_url must be a postgresql:// URL, got {db_url!r}")
    try:
        url = make_url(db_url)
    except ArgumentError as exc:
        raise ConfigError(f"db_url is not a database URL: {exc}") from None
    if url.drivername in ("postgresql", "postgres", "postgresql+psycopg"):
        url = url.set(drivername="postgresql+psycopg")
    else:
        raise ConfigError(
            f"PostgresDb needs a postgresql:// URL (driver psycopg 3), got {url.drivername}://"
        )
    for name, value in (("pool_size", pool_size), ("max_overflow", max_overflow)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"{name} must be a non-negative integer, got {value!r}")
    engine = create_engine(
        url,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_timeout=pool_timeout,
        pool_recycle=pool_recycle,
        # A connection the server closed (restart, failover, idle timeout) is replaced, not
        # handed to a transaction that would then fail.
        pool_pre_ping=True,
        json_serializer=_json_dumps,
        connect_args={
            "application_name": "kern",
            "connect_timeout": 10,
            # No server-side prepared statements: after a few runs of a prepared statement
            # Postgres may switch to a generic plan, blind to the scope and search terms it is
            # given, measured 5x slower on a large shared namespace (benchmarks/scale.md).
            # Planning each statement costs well under a millisecond, and PgBouncer in
            # transaction mode needs no prepared-statement support.
            "prepare_threshold": None,
            **(connect_args or {}),
        },
    )

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        # The driver never opens transactions by itself; ``_begin`` below does, for writes.
        dbapi_connection.autocommit = True

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        # A read (``transaction(write=False)``) runs each statement on its own: under READ
        # COMMITTED a transaction would give its statements no common snapshot anyway, and
        # skipping BEGIN and COMMIT saves two round trips per read. Writes are transactions.
        options = conn.get_execution_options()
        if options.get(WRITE_OPTION, True) and options.get("isolation_level") != "AUTOCOMMIT":
            conn.exec_driver_sql("BEGIN")

    _ENGINES.add(engine)
    return engine


def _embedding_type(conn: Connection) -> str:
    return str(
        conn.execute(
            text(
                "SELECT t.typname FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
                "WHERE a.attrelid = 'learnings'::regclass AND a.attname = 'embedding'"
            )
        ).scalar_one()
    )


def _hnsw_ef_search(limit: int) -> int:
    """``hnsw.ef_search`` for a search of the ``limit`` nearest vectors: ``limit``, at least
    200, at most pgvector's maximum (1,000).

    Measured on 200,000 all-MiniLM-L6-v2 vectors, 100,000 per scope (benchmarks/scale.md):
    the 50 nearest came back at 0.96-0.97 with ``ef_search`` 40-100 (single queries at 0.56)
    and at 0.98-0.99 with 200, for ~10-20% more time; hybrid search's 500 candidates came back
    at 0.99 with ``ef_search`` 500, and 1,000 added 0.001 for ~15% more time."""
    return min(1000, max(200, limit))


def _create_vector_extension(conn: Connection) -> str | None:
    """``CREATE EXTENSION IF NOT EXISTS vector`` in a savepoint; why it failed, or None."""
    try:
        with conn.begin_nested():
            conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS vector")
    except DBAPIError as exc:
        return str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
    return None


def _convert_embedding_column(conn: Connection) -> int:
    """``learnings.embedding`` from BYTEA (float32 bytes) to ``vector``, keeping its values;
    returns how many were converted. A value that is not a float32 vector pgvector accepts
    (odd length, NaN, infinity) is dropped with a warning: it could not be searched anyway."""
    conn.exec_driver_sql("ALTER TABLE learnings ADD COLUMN embedding_vector vector")
    converted = dropped = 0
    last = -1
    batch = text(
        "SELECT seq, embedding FROM learnings WHERE embedding IS NOT NULL AND seq > :last "
        "ORDER BY seq LIMIT 1000"
    )
    store = text("UPDATE learnings SET embedding_vector = CAST(:vector AS vector) WHERE seq = :seq")
    while rows := conn.execute(batch, {"last": last}).all():
        last = rows[-1][0]
        values = []
        for seq, blob in rows:
            vector = np.frombuffer(bytes(blob), dtype=np.float32) if len(blob) % 4 == 0 else None
            if vector is None or not len(vector) or not np.isfinite(vector).all():
                dropped += 1
                continue
            values.append({"seq": seq, "vector": _vector_text(vector.tobytes())})
        if values:
            conn.execute(store, values)
            converted += len(values)
    draw_scope_tokens_now(conn)  # PostgreSQL refuses ALTER TABLE with trigger events pending
    conn.exec_driver_sql("ALTER TABLE learnings DROP COLUMN embedding")
    conn.exec_driver_sql("ALTER TABLE learnings RENAME COLUMN embedding_vector TO embedding")
    if dropped:
        logger.warning("%d stored embeddings were not float32 vectors and were dropped", dropped)
    return converted


def _sqlstate(exc: BaseException) -> str | None:
    cause = exc.__cause__
    orig = getattr(cause, "orig", None)
    return getattr(orig, "sqlstate", None)


def _json_dumps(value: Any) -> str:
    # Same JSON as SqliteDb writes: readable non-ASCII text.
    return dumps(value, ensure_ascii=False)
