"""Search candidates: full-text hits, vector neighbours and the rows around them.

These queries feed ``kern.search``'s ranking; each engine overrides what it can do better
(``_text_search_query`` always, ``load_vectors`` / ``search_vectors`` with a vector index).
The neighbour step and the numpy vector scoring read a scope's rows from memory while the
scope is unchanged (``kern.db._scopes``), else from the database.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, ClassVar

import numpy as np
from sqlalchemy import (
    ARRAY,
    ColumnElement,
    Connection,
    DateTime,
    Engine,
    Select,
    String,
    and_,
    bindparam,
    func,
    literal_column,
    null,
    or_,
    select,
    type_coerce,
    union,
)

from kern.db._learnings import (
    LEARNING_COLUMNS,
    filter_shape,
    filter_values,
    learning_clauses,
    learning_record,
    shape_clauses,
)
from kern.db._nearest import nearest
from kern.db._scope_builds import ScopeBuilds
from kern.db._scopes import (
    TOKEN_SEPARATOR,
    ScopeCache,
    ScopeKey,
    ScopeRows,
    merged_windows,
    scope_key,
)
from kern.db._sqlbase import SqlBase, check_limit
from kern.db.base import (
    LearningFilter,
    RankingRow,
    SearchHit,
)
from kern.db.migrations import RESET_TOMBSTONE, TOMBSTONE_HORIZON
from kern.db.schema import StringList, among, learning_scopes, learning_tombstones, learnings
from kern.errors import ConfigError

__all__ = [
    "CHANGES_KEPT",
    "CHANGES_READ",
    "INLINE_BUILD_ROWS",
    "NEIGHBOUR_HEAD",
    "SEARCH_CACHE_MB",
    "CandidatesSql",
    "merged_windows",
]

NEIGHBOUR_HEAD = 80
"""Characters of a row's text ``load_neighbours`` returns: enough for a "Speaker: " label."""

INLINE_BUILD_ROWS = 2_000
"""Scopes of at most this many rows have their search snapshot built by the search that finds
it due: ~10-12 µs a row on PostgreSQL (1,000 rows in ~10 ms, 10,000 in ~100 ms), at most about
one search's time, after which that search is answered from memory. Larger ones are built in
the background while searches read the database (``kern.db._scope_builds``;
docs/decisions.md)."""

CHANGES_KEPT = 500
"""A snapshot brought up to date by more changed rows than this (``ScopeRows.with_changes``)
is read whole again in the background (``kern.db._scope_builds``) while it serves: each
search's filter and ranking pay for the changes apart from the rest, and each write for
rebuilding them (~10 µs a row)."""

CHANGES_READ = 2_000
"""The most changed rows read to bring a snapshot up to date; more (an import, a bulk update)
and the scope is read whole instead."""

SEARCH_CACHE_MB = 64
"""The default ``search_cache_mb`` of a database: the scopes' rows search keeps in memory
(a user's 1,000 memories take ~0.5 MB, ~2 MB with all-MiniLM-L6-v2 vectors)."""

logger = logging.getLogger(__name__)

_c = learnings.c
#: What ``load_neighbours`` reads of a row besides its id, session, date and scope.
_SUBJECT = _c.content["entity"].as_string().label("subject")
_HEAD = func.substr(_c.text, 1, NEIGHBOUR_HEAD).label("head")
_IN_SCOPE = (_c.store == bindparam("store"), _c.scope == bindparam("scope"))
_TOKEN = select(learning_scopes.c.token).where(
    learning_scopes.c.store == bindparam("store"), learning_scopes.c.scope == bindparam("scope")
)
#: A snapshot's dates read as the driver gives them (aware on PostgreSQL, naive UTC on SQLite),
#: not through ``UtcDateTime``: its memo of parsed values only misses over a scope's 100,000
#: distinct moments, and cost a third of the read (``ScopeRows.build`` takes either kind).
_MOMENTS = frozenset({"created_at", "valid_from", "valid_to", "expires_at"})
_SNAPSHOT = (
    select(
        *(
            type_coerce(_c[name], DateTime(timezone=True)) if name in _MOMENTS else _c[name]
            for name in ScopeRows.FIELDS
        ),
        _SUBJECT,
        _HEAD,
    )
    .where(*_IN_SCOPE)
    .order_by(_c.created_at, _c.seq)
    .limit(bindparam("rows"))
)
_COUNT = select(func.count()).select_from(
    select(_c.seq).where(*_IN_SCOPE).limit(bindparam("rows")).subquery()
)
_SNAPSHOT_VECTORS = (
    select(_c.id, _c.embedding).where(*_IN_SCOPE, _c.embedding.is_not(None)).order_by(_c.seq)
)

#: Per engine: the marker below which every change to ``learnings`` is visible to a read
#: made now (a snapshot's ``horizon``), and the marker the next change will be at least
#: (what tombstones are pruned against). SQLite: the counter, read in the same read
#: transaction as the rows. PostgreSQL: the xmin and xmax of the statement's own snapshot.
#: ``kern.db._scopes``, "Changes since a snapshot", says why these suffice.
_MARKERS = {
    "sqlite": ("(SELECT value + 1 FROM learning_clock)",) * 2,
    "postgresql": (
        "pg_snapshot_xmin(pg_current_snapshot())::text::bigint",
        "pg_snapshot_xmax(pg_current_snapshot())::text::bigint",
    ),
}


def _marker_queries(dialect: str) -> tuple[Select[Any], Select[Any]]:
    """The scope's token with the horizon a snapshot read after it may claim, and the
    tombstones of the scope from ``:horizon`` on (id, seq; none: ``NULL``s) each with the
    marker the next change will be at least, in one statement so both are of one moment."""
    horizon, now = _MARKERS.get(dialect, _MARKERS["sqlite"])
    token = select(learning_scopes.c.token, literal_column(horizon)).where(
        learning_scopes.c.store == bindparam("store"),
        learning_scopes.c.scope == bindparam("scope"),
    )
    t = learning_tombstones.c
    marker = select(literal_column(now).label("now")).subquery("marker")
    of_scope = and_(t.store == bindparam("store"), t.scope == bindparam("scope"))
    reset = and_(t.store == RESET_TOMBSTONE["store"], t.scope == RESET_TOMBSTONE["scope"])
    found = and_(or_(of_scope, reset), t.changed >= bindparam("horizon"))
    gone = select(marker.c.now, t.id, t.seq).select_from(
        marker.outerjoin(learning_tombstones, found)
    )
    return token, gone


#: ``load_neighbours`` pads its time windows to a multiple of this many.
_WINDOW_SLOTS = 8


@lru_cache(maxsize=64)
def _moments_query(shape: tuple[str, ...]) -> Select[Any]:
    """The scopes and dates of the session-less rows among ``neighbour_around`` that filters
    of ``shape`` admit (``load_neighbours``' time windows are drawn around them)."""
    c = learnings.c
    around = among(c.id, bindparam("neighbour_around", type_=StringList()))
    return select(c.scope, c.created_at).where(
        *shape_clauses(shape), around, c.session_id.is_(None)
    )


@lru_cache(maxsize=256)
def _neighbours_query(shape: tuple[str, ...], windows: int, as_union: bool) -> Select[Any]:
    """``load_neighbours``' statement for filters of ``shape`` and ``windows`` time windows,
    every value a parameter (``neighbour_ids``, the filter's, and the windows': ``w<i>_scope``
    / ``_start`` / ``_stop``, or with ``as_union`` the arrays ``w_scopes`` / ``w_starts`` /
    ``w_stops``, where only whether there are windows matters): built once per shape.
    Building ~50 window conditions anew for every search cost 10-15 ms of Python, more than
    the query (a user's recall at 1M stored items)."""
    c = learnings.c
    columns = (c.id, c.session_id, c.created_at, _SUBJECT, c.scope, _HEAD, c.seq)
    scoped = shape_clauses(shape)
    # The sessions are looked up by id (unique index) without the filter: only rows
    # matching ``where`` are returned, and filtering there would make SQLite scan the scope.
    candidate = among(c.id, bindparam("neighbour_ids", type_=StringList()))
    parts: list[ColumnElement[bool]] = [
        candidate,
        c.session_id.in_(select(c.session_id).where(candidate)),
    ]
    if as_union:
        selects = [select(*columns).where(*scoped, part) for part in parts]
        if windows:
            # One part for every window: a join with the arrays of windows, each answered by
            # a range scan of the (store, scope, status, created_at) index. A part per window
            # cost PostgreSQL ~13 ms of planning for ~50 windows (executing them: 1.8 ms).
            window = (
                func.unnest(
                    bindparam("w_scopes", type_=ARRAY(String)),
                    bindparam("w_starts", type_=ARRAY(DateTime(timezone=True))),
                    bindparam("w_stops", type_=ARRAY(DateTime(timezone=True))),
                )
                .table_valued("scope", "start", "stop")
                .render_derived(name="w")
            )
            within = and_(
                c.scope == window.c.scope,
                c.created_at >= window.c.start,
                c.created_at <= window.c.stop,
            )
            timed = select(*columns).join_from(learnings, window, within)
            selects.append(timed.where(*scoped, c.session_id.is_(None)))
        both = union(*selects).subquery()
        query = select(*(both.c[column.name] for column in columns[:6]))
        return query.order_by(both.c.created_at, both.c.seq)
    # One range per run of nearby rows: the (store, scope, status, created_at) index answers
    # each with a range scan.
    parts += [
        and_(
            c.scope == bindparam(f"w{i}_scope"),
            c.session_id.is_(None),
            c.created_at >= bindparam(f"w{i}_start", type_=c.created_at.type),
            c.created_at <= bindparam(f"w{i}_stop", type_=c.created_at.type),
        )
        for i in range(windows)
    ]
    query = select(*columns[:6]).where(*scoped, or_(*parts))
    return query.order_by(c.created_at, c.seq)


@lru_cache(maxsize=64)
def _texts_query(shape: tuple[str, ...]) -> Select[Any]:
    """``load_texts``' statement for filters of ``shape`` (which includes ``ids``)."""
    return select(learnings.c.id, learnings.c.text).where(*shape_clauses(shape))


class CandidatesSql(SqlBase):
    """Candidate queries for hybrid search (full text, vectors, neighbours)."""

    #: How ``load_neighbours`` asks for candidates and the rest of their sessions: as one
    #: ``OR`` (SQLite reads the scope once through its index, cheapest for a user's hundreds
    #: of rows, while a ``UNION`` reads it twice: 3.4 against 5.1 ms on LoCoMo), or as a
    #: ``UNION`` of two index lookups (PostgreSQL). On PostgreSQL the ``OR`` reads the whole
    #: scope too: 5.5 against 7–8 ms for a user's 600 LoCoMo turns, but 12.9 against 8.6 ms
    #: p50 in a 10,000-item shared namespace and ~110 ms against a few at 100,000; the
    #: ``UNION`` is bounded by the rows it returns, not by the scope.
    _neighbours_as_union: ClassVar[bool] = False

    #: What the engine's full-text index holds of a row, read with a scope's snapshot so the
    #: engine can rank the scope's full text in memory (``kern.db._scopes.ScopeText``): its
    #: distinct tokens joined by ``TOKEN_SEPARATOR``, and their number. ``None``: not read.
    _row_tokens: ClassVar[tuple[ColumnElement[Any], ColumnElement[Any]] | None] = None

    def __init__(
        self,
        engine: Engine,
        *,
        clock: Callable[[], datetime] | None = None,
        search_cache_mb: float = SEARCH_CACHE_MB,
    ) -> None:
        if (
            isinstance(search_cache_mb, bool)
            or not isinstance(search_cache_mb, int | float)
            or not search_cache_mb >= 0
        ):
            raise ConfigError(f"search_cache_mb must be a number >= 0, got {search_cache_mb!r}")
        super().__init__(engine, clock=clock)
        self._scope_cache = ScopeCache(int(search_cache_mb * 2**20)) if search_cache_mb else None
        self._builds = ScopeBuilds(repr(self))
        self._inline_rows = INLINE_BUILD_ROWS
        tokens = self._row_tokens
        self._snapshot_query = _SNAPSHOT if tokens is None else _SNAPSHOT.add_columns(*tokens)
        self._token_query, self._gone_query = _marker_queries(engine.dialect.name)
        # In the order of the (store, scope, changed) index (``with_changes`` sorts them by
        # date): with the limit, PostgreSQL reads that index's range even when its statistics
        # know nothing of ``changed`` (right after m007 it estimated a third of the scope and
        # scanned the table instead: ~60 ms at 100,000 rows).
        changed = self._snapshot_query.where(_c.changed >= bindparam("horizon"))
        changed = changed.order_by(None).order_by(_c.changed)
        #: The rows changed since a snapshot, each followed by its embedding (or ``None``:
        #: ``_vectors_in_memory``).
        self._changes_queries = {
            True: changed.add_columns(_c.embedding),
            False: changed.add_columns(null()),
        }

    def _vectors_in_memory(self) -> bool:
        """Whether ``search_vectors`` scores a snapshot's vectors (not a vector index)."""
        return True

    def search_text(self, query: str, where: LearningFilter, *, limit: int = 50) -> list[SearchHit]:
        """Full-text search among rows matching ``where`` (applied inside the query), best
        first; ``[]`` when ``query`` has no searchable word."""
        check_limit(limit)
        found = self._text_search_query(query, where, limit, LEARNING_COLUMNS) if limit else None
        if found is None:
            return []
        with self.transaction(write=False, action="search learnings") as conn:
            rows = conn.execute(*found).mappings().all()
        return [SearchHit(learning_record(row), float(row["score"])) for row in rows]

    def search_text_scores(
        self, query: str, where: LearningFilter, *, limit: int = 50
    ) -> list[tuple[str, float]]:
        """``search_text`` reading only ids and scores: decoding whole rows would cost more
        than the search itself for hybrid search's hundreds of candidates."""
        check_limit(limit)
        found = self._text_search_query(query, where, limit, (learnings.c.id,)) if limit else None
        if found is None:
            return []
        with self.transaction(write=False, action="search learnings") as conn:
            rows = conn.execute(*found).all()
        return [(row[0], float(row[1])) for row in rows]

    def _text_search_query(
        self,
        query: str,
        where: LearningFilter,
        limit: int,
        columns: Sequence[ColumnElement[Any]],
    ) -> tuple[Select[Any], dict[str, Any]] | None:
        """Engine-specific: a statement selecting ``columns`` then ``score`` (higher is better)
        of at most ``limit`` rows matching ``query`` and ``where``, best first, and its
        parameters; ``None`` when ``query`` has no searchable word. The statement is built
        once per filter shape (and columns) and every value is a parameter: SQLAlchemy
        remembers a statement object's cache key, so a statement built anew, or given its
        values by ``.params()``, costs ~1 ms more to execute than the same one reused."""
        raise NotImplementedError(
            f"{type(self).__name__} has no full-text search; use SqliteDb (or PostgresDb)"
        )

    def load_vectors(self, where: LearningFilter) -> tuple[list[str], list[bytes]]:
        """Ids and float32 embeddings of rows matching ``where`` that have one, in insertion
        order (engines with a vector index override this)."""
        query = (
            select(learnings.c.id, learnings.c.embedding)
            .where(learnings.c.embedding.is_not(None), *learning_clauses(where))
            .order_by(learnings.c.seq)
            .params(filter_values(where))
        )
        with self.transaction(write=False, action="load learning vectors") as conn:
            rows = conn.execute(query).all()
        return [row[0] for row in rows], [bytes(row[1]) for row in rows]

    def search_vectors(
        self, vector: bytes, where: LearningFilter, *, limit: int = 50
    ) -> list[tuple[str, float]]:
        """Ids and cosine similarities of the ``limit`` rows matching ``where`` whose embedding
        is nearest to ``vector`` (float32 bytes), best first. Only embeddings of the same
        dimension compete. Here: every candidate is compared in numpy, its vector read from
        the scope's snapshot (``kern.db._scopes``) or else from the database; engines with a
        vector index override this."""
        check_limit(limit)
        if not limit or not vector or len(vector) % 4:
            return []
        snapshot = self._scope_rows(where, vectors=True)
        found = None if snapshot is None else snapshot.nearest(where, vector, limit)
        if found is not None:
            return found
        every, blobs = self.load_vectors(where)
        same = [(i, b) for i, b in zip(every, blobs, strict=True) if len(b) == len(vector)]
        ids = [i for i, _ in same]
        matrix = np.frombuffer(b"".join(b for _, b in same), dtype=np.float32)
        matrix = matrix.reshape(len(same), len(vector) // 4)
        return nearest(ids, matrix, vector, limit) if ids else []

    def load_neighbours(
        self,
        where: LearningFilter,
        ids: Sequence[str],
        *,
        around: Sequence[str] = (),
        gap: timedelta | None = None,
    ) -> list[RankingRow]:
        """Rows matching ``where`` that are among ``ids`` or share a session with one of them,
        and with ``gap`` the session-less rows recorded within ``gap`` of a session-less row
        of ``around`` in its scope; by ``created_at`` then insertion order. See
        ``RankingRow``. From the scope's snapshot when it has one (``kern.db._scopes``)."""
        if not ids:
            return []
        snapshot = self._scope_rows(where)
        found = None if snapshot is None else snapshot.neighbours(where, ids, around, gap)
        if found is not None:
            return found
        shape = filter_shape(where)
        values = {**filter_values(where), "neighbour_ids": list(ids)}
        with self.transaction(write=False, action="load neighbouring learnings") as conn:
            windows: list[tuple[str, datetime, datetime]] = []
            if gap is not None and around:
                moments = conn.execute(
                    _moments_query(shape), {**values, "neighbour_around": list(around)}
                ).all()
                windows = merged_windows(moments, gap)
            if self._neighbours_as_union:
                values["w_scopes"] = [scope for scope, _, _ in windows]
                values["w_starts"] = [start for _, start, _ in windows]
                values["w_stops"] = [stop for _, _, stop in windows]
                query = _neighbours_query(shape, min(len(windows), 1), True)
            else:
                # Padded to a multiple of 8 with copies of the last window (the same rows): a
                # dozen statements per shape, compiled once, instead of one per count.
                slots = -(-len(windows) // _WINDOW_SLOTS) * _WINDOW_SLOTS
                for i in range(slots):
                    scope, start, stop = windows[min(i, len(windows) - 1)]
                    values.update({f"w{i}_scope": scope, f"w{i}_start": start, f"w{i}_stop": stop})
                query = _neighbours_query(shape, slots, False)
            rows = conn.execute(query, values).all()
        return [RankingRow(*row) for row in rows]

    def load_texts(self, where: LearningFilter, ids: Sequence[str]) -> dict[str, str]:
        """The searchable text of the rows among ``ids`` that ``where`` admits, by id: what
        ranking reads of the best full-text candidates (their query words), without decoding
        whole rows. Looked up by id, so its cost is the ids', not the scope's."""
        if not ids:
            return {}
        bounded = replace(where, ids=list(ids))
        query = _texts_query(filter_shape(bounded))
        with self.transaction(write=False, action="load learning texts") as conn:
            return {row[0]: row[1] for row in conn.execute(query, filter_values(bounded))}

    def _scope_rows(
        self, where: LearningFilter, *, vectors: bool = False, first: bool = False
    ) -> ScopeRows | None:
        """The snapshot of the one scope ``where`` reads, if it is current: its token is read
        first, in the same read transaction as anything read to build or complete it.

        Built (from one read of the scope's rows, with their tokens when the engine has
        ``_row_tokens``) only when an earlier search saw the same token (``ScopeCache.seen``):
        by the full-text step (``first``: it asks without recording a sighting, being the
        first read of its search) or by the neighbour step, which records one. With
        ``vectors``, an existing snapshot is completed with the scope's vectors. A scope of
        more than ``_inline_rows`` rows is built or completed in the background
        (``kern.db._scope_builds``) while this search reads the database. ``None``: read the
        database.
        """
        key, cache = scope_key(where), self._scope_cache
        if key is None or cache is None:
            return None
        values = {"store": key[0], "scope": key[1]}
        with self.transaction(write=False, action="read a scope's search snapshot") as conn:
            found = conn.execute(self._token_query, values).first()
            if found is None:
                return None
            token, horizon = found
            snapshot = cache.get(key, token)
            if snapshot is None and (held := cache.peek(key)) is not None:
                snapshot = self._bring_up_to_date(conn, key, held, token, horizon)
            if snapshot is None:
                if vectors or not cache.seen(key, token, record=not first):
                    return None
            elif not (vectors and snapshot.vectors is None and snapshot.vectors_fit):
                return snapshot
            if self._builds.running(key):
                return snapshot
            rows = cache.rows(key)  # of the snapshot held under an earlier token, if any
            if rows is None:  # counted no further than the threshold: an index range
                limit = {**values, "rows": self._inline_rows + 1}
                rows = int(conn.execute(_COUNT, limit).scalar_one())
            if rows > self._inline_rows:
                self._builds.start(key, functools.partial(self._build_in_background, key, vectors))
                return snapshot
            if snapshot is None:
                read = self._read_snapshot(conn, values)
                snapshot = self._keep_snapshot(key, token, read, horizon)
            if snapshot is not None and vectors:
                snapshot = self._complete_vectors(conn, key, snapshot)
            return snapshot

    def _bring_up_to_date(
        self, conn: Connection, key: ScopeKey, held: ScopeRows, token: str, horizon: int
    ) -> ScopeRows | None:
        """``held`` (read under another token) with the scope's rows changed since it was
        read, read on ``conn`` after ``token`` and ``horizon`` (``ScopeRows.with_changes``),
        kept in the cache; past ``CHANGES_KEPT`` changes it is also read whole again in the
        background. ``None`` when the changes cannot be read from its horizon (tombstones it
        would need may be pruned, or were removed with a user: ``forget_scope_changes``) or
        are more than ``CHANGES_READ``: then it is read whole."""
        cache = self._scope_cache
        assert cache is not None
        values = {"store": key[0], "scope": key[1], "horizon": held.horizon}
        tombstones = conn.execute(self._gone_query, values).all()
        if held.horizon <= tombstones[0][0] - TOMBSTONE_HORIZON:
            return None
        gone = [(row[1], row[2]) for row in tombstones if row[1] is not None]
        if (RESET_TOMBSTONE["id"], RESET_TOMBSTONE["seq"]) in gone:  # a user was forgotten
            return None
        query = self._changes_queries[self._vectors_in_memory()]
        rows = conn.execute(query, {**values, "rows": CHANGES_READ + 1}).all()
        if len(rows) > CHANGES_READ:
            return None
        read = [(*row[:-1], None if row[-1] is None else bytes(row[-1])) for row in rows]
        text = self._row_tokens is not None
        snapshot = held.with_changes(token, horizon, read, gone, text=text)
        cache.put(key, snapshot)
        if len(snapshot.changes) > CHANGES_KEPT:
            self._builds.start(key, functools.partial(self._build_in_background, key, False, True))
        return snapshot

    def _build_in_background(self, key: ScopeKey, vectors: bool, whole: bool = False) -> None:
        """What ``_scope_rows`` would have built inline, under the scope's token and horizon as
        they are now, in a ``ScopeBuilds`` thread: its rows read in one transaction, built
        outside it (a pooled connection is not held while Python works; an in-memory SQLite
        database has only one), its vectors read in another under the same token. With
        ``whole``, read whole even if the snapshot held is current (it has gathered
        ``CHANGES_KEPT`` changes). A scope written meanwhile is brought up to date by the
        next search (``_bring_up_to_date``). Given up when the database is closing."""
        cache = self._scope_cache
        assert cache is not None
        values = {"store": key[0], "scope": key[1]}
        with self.transaction(write=False, action="build a scope's search snapshot") as conn:
            found = conn.execute(self._token_query, values).first()
            if found is None or self._builds.stopping:
                return
            token, horizon = found
            snapshot = None if whole else cache.get(key, token)
            if snapshot is None:
                if vectors:
                    return
                rows = self._read_snapshot(conn, values)
                if self._builds.stopping:
                    return
        if snapshot is None:
            snapshot = self._keep_snapshot(key, token, rows, horizon)
        if snapshot is None or not vectors or self._builds.stopping:
            return
        with self.transaction(write=False, action="read a scope's vectors") as conn:
            if conn.execute(_TOKEN, values).scalar() == token:
                self._complete_vectors(conn, key, snapshot)

    def _read_snapshot(self, conn: Connection, values: dict[str, str]) -> Sequence[Any]:
        """The rows of a scope's snapshot (``ScopeRows.build``), one more than a snapshot may
        hold if there are more."""
        cache = self._scope_cache
        assert cache is not None
        return conn.execute(self._snapshot_query, {**values, "rows": cache.max_rows + 1}).all()

    def _keep_snapshot(
        self, key: ScopeKey, token: str, rows: Sequence[Sequence[Any]], horizon: int
    ) -> ScopeRows | None:
        """The snapshot of ``rows`` (read after ``token`` and ``horizon``), kept in the cache;
        ``None`` when it is too big to keep (then not read again under ``token``)."""
        cache = self._scope_cache
        assert cache is not None
        text = self._row_tokens is not None
        snapshot = (
            None
            if len(rows) > cache.max_rows
            else ScopeRows.build(token, key[1], rows, text=text, horizon=horizon)
        )
        if snapshot is None or snapshot.nbytes > cache.max_bytes:
            cache.too_big(key, token)
            return None
        if text and snapshot.text is None:
            logger.warning(
                "%r: a token of scope %r holds %r; its full text is ranked by the database",
                self,
                key,
                TOKEN_SEPARATOR,
            )
        cache.put(key, snapshot)
        return snapshot

    def _complete_vectors(
        self, conn: Connection, key: ScopeKey, snapshot: ScopeRows
    ) -> ScopeRows | None:
        """``snapshot`` with the scope's vectors, read on ``conn`` after its token, kept in the
        cache if they fit (else the snapshot is kept marked ``vectors_fit=False``)."""
        cache = self._scope_cache
        assert cache is not None
        if snapshot.vectors is not None or not snapshot.vectors_fit:
            return snapshot
        read = conn.execute(_SNAPSHOT_VECTORS, {"store": key[0], "scope": key[1]}).all()
        full = snapshot.with_vectors([r[0] for r in read], [bytes(r[1]) for r in read])
        if full is None:
            return None
        fits = full.nbytes <= cache.max_bytes
        cache.put(key, full if fits else replace(snapshot, vectors_fit=False))
        if not fits:
            logger.info(
                "search_cache_mb=%.0f cannot hold %s %r with its vectors (%.0f MB): "
                "vector search reads them from the database on every search until "
                "the scope changes; a larger search_cache_mb keeps them in memory",
                cache.max_bytes / 2**20,
                key[0],
                key[1],
                full.nbytes / 2**20,
            )
        return full

    def close(self) -> None:
        """Stop and join the snapshot builds running in the background, then close."""
        self._builds.close()
        super().close()
