"""Search candidates: full-text hits, vector neighbours and the rows around them.

These queries feed ``kern.search``'s ranking; each engine overrides what it can do better
(``_text_search_query`` always, ``load_vectors`` / ``search_vectors`` with a vector index).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, ClassVar

import numpy as np
from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    func,
    or_,
    select,
    union,
)

from kern.db._learnings import LEARNING_COLUMNS, filter_values, learning_clauses, learning_record
from kern.db._sqlbase import SqlBase, check_limit
from kern.db.base import (
    LearningFilter,
    RankingRow,
    SearchHit,
)
from kern.db.schema import among, learnings

__all__ = ["NEIGHBOUR_HEAD", "CandidatesSql", "merged_windows"]

NEIGHBOUR_HEAD = 80
"""Characters of a row's text ``load_neighbours`` returns: enough for a "Speaker: " label."""


def merged_windows(moments: Sequence[Any], gap: timedelta) -> list[tuple[str, datetime, datetime]]:
    """``(scope, created_at)`` pairs widened by ``gap`` either side, overlapping ranges of
    one scope merged: ``[(scope, start, stop)]``."""
    windows: list[tuple[str, datetime, datetime]] = []
    for scope, moment in sorted(moments, key=lambda row: (row[0], row[1])):
        start, stop = moment - gap, moment + gap
        if windows and windows[-1][0] == scope and start <= windows[-1][2]:
            windows[-1] = (scope, windows[-1][1], stop)
        else:
            windows.append((scope, start, stop))
    return windows


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

    def search_text(self, query: str, where: LearningFilter, *, limit: int = 50) -> list[SearchHit]:
        """Full-text search among rows matching ``where`` (applied inside the query), best
        first; ``[]`` when ``query`` has no searchable word."""
        check_limit(limit)
        columns = LEARNING_COLUMNS
        statement = self._text_search_query(query, where, limit, columns) if limit else None
        if statement is None:
            return []
        with self.transaction(write=False, action="search learnings") as conn:
            rows = conn.execute(statement).mappings().all()
        return [SearchHit(learning_record(row), float(row["score"])) for row in rows]

    def search_text_scores(
        self, query: str, where: LearningFilter, *, limit: int = 50
    ) -> list[tuple[str, float]]:
        """``search_text`` reading only ids and scores: decoding whole rows would cost more
        than the search itself for hybrid search's hundreds of candidates."""
        check_limit(limit)
        columns = (learnings.c.id,)
        statement = self._text_search_query(query, where, limit, columns) if limit else None
        if statement is None:
            return []
        with self.transaction(write=False, action="search learnings") as conn:
            rows = conn.execute(statement).all()
        return [(row[0], float(row[1])) for row in rows]

    def _text_search_query(
        self,
        query: str,
        where: LearningFilter,
        limit: int,
        columns: Sequence[ColumnElement[Any]],
    ) -> Select[Any] | None:
        """Engine-specific: a statement selecting ``columns`` then ``score`` (higher is better)
        of at most ``limit`` rows matching ``query`` and ``where``, best first; ``None`` when
        ``query`` has no searchable word."""
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
        dimension compete. Here: every candidate is loaded and compared in numpy; engines with
        a vector index override this."""
        check_limit(limit)
        if not limit or not vector or len(vector) % 4:
            return []
        ids, blobs = self.load_vectors(where)
        same = [(i, b) for i, b in zip(ids, blobs, strict=True) if len(b) == len(vector)]
        if not same:
            return []
        matrix = np.frombuffer(b"".join(b for _, b in same), dtype=np.float32)
        matrix = matrix.reshape(len(same), -1)
        query = np.frombuffer(vector, dtype=np.float32)
        norms = np.linalg.norm(matrix, axis=1) * float(np.linalg.norm(query))
        with np.errstate(divide="ignore", invalid="ignore"):
            similarity = np.where(norms > 0, matrix @ query / norms, np.nan)
        order = [
            int(i) for i in np.argsort(-similarity, kind="stable") if np.isfinite(similarity[i])
        ]
        return [(same[i][0], float(similarity[i])) for i in order[:limit]]

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
        ``RankingRow``."""
        if not ids:
            return []
        c = learnings.c
        columns = (
            c.id,
            c.session_id,
            c.created_at,
            c.content["entity"].as_string().label("subject"),
            c.scope,
            func.substr(c.text, 1, NEIGHBOUR_HEAD).label("head"),
            c.seq,
        )
        scoped = learning_clauses(where)
        values = filter_values(where)
        # The sessions are looked up by id (unique index) without the filter: only rows
        # matching ``where`` are returned, and filtering there would make SQLite scan the scope.
        candidate = among(c.id, ids)
        parts: list[ColumnElement[bool]] = [
            candidate,
            c.session_id.in_(select(c.session_id).where(candidate)),
        ]
        with self.transaction(write=False, action="load neighbouring learnings") as conn:
            if gap is not None and around:
                moments = conn.execute(
                    select(c.scope, c.created_at)
                    .where(*scoped, among(c.id, around), c.session_id.is_(None))
                    .params(values)
                ).all()
                # One range per run of nearby rows: the (store, scope, status, created_at)
                # index answers each with a range scan.
                parts += [
                    and_(
                        c.scope == scope,
                        c.session_id.is_(None),
                        c.created_at >= start,
                        c.created_at <= stop,
                    )
                    for scope, start, stop in merged_windows(moments, gap)
                ]
            if self._neighbours_as_union:
                both = union(*(select(*columns).where(*scoped, part) for part in parts)).subquery()
                query = select(*(both.c[column.name] for column in columns[:6]))
                query = query.order_by(both.c.created_at, both.c.seq)
            else:
                query = select(*columns[:6]).where(*scoped, or_(*parts))
                query = query.order_by(c.created_at, c.seq)
            rows = conn.execute(query.params(values)).all()
        return [RankingRow(*row) for row in rows]
