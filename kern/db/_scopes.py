"""What search reads of a scope's rows, kept in memory while the scope is unchanged.

Hybrid search reads, for every query, most of a user's rows (the neighbour step: LoCoMo's
sessions cover ~700 of 1,000 turns) and, with an embedder on SQLite, all their vectors. Between
two searches those rows rarely change. ``ScopeRows`` holds, for one ``(store, scope)``, every
row of the scope (any status) as search reads it: the columns ``LearningFilter`` tests, the
context fields (``RankingRow``'s) and, once asked for, the float32 vectors. ``ScopeCache`` keeps
those snapshots, least recently used first out, within a byte budget.

A snapshot is labelled with the scope's token (table ``learning_scopes``), which triggers draw
anew in the same transaction as every insert, update or delete of a learning of that scope,
whoever writes (migration ``m006_learning_scopes``). The token is read in the same read
transaction as the rows (on PostgreSQL, where reads run statement by statement, before them),
so a snapshot never holds rows older than its label, and it is served only to a search that
has just read the same token: no write committed since the snapshot was read, by any process
or connection; a search that reads another token first brings it up to date (below). A scope
without a token row (never written since the migration, or emptied by ``delete_user``) is
never served from memory.

Changes since a snapshot
------------------------
Rebuilding a scope's snapshot after every write reads the whole scope: ~2.5 s for a
100,000-item shared namespace, never done in time when many users' agents write to it. So a
snapshot whose token is no longer the scope's is brought up to date by what changed since it
was read (``ScopeRows.with_changes``): the triggers of migration ``m007_learning_changes``
mark each row inserted or updated with the write that did it (``learnings.changed``) and
leave a tombstone for each row deleted or moved away (``learning_tombstones``), in the
writing transaction, whoever writes. A snapshot records a ``horizon``, read with its token
before its rows, such that every write marked below it had ended, and was visible, when the
rows were read. Then its scope as of now is its rows, minus its rows tombstoned at or after
the horizon, with the rows marked at or after the horizon replacing or adding to them:

- SQLite commits one writer at a time and a read transaction sees a fixed prefix of the
  commits; the marker is a counter the triggers advance, and the horizon is the counter + 1
  read in the same read transaction as the rows.
- PostgreSQL assigns transaction ids in the order transactions first write, not the order
  they commit: a transaction holding id 10 may commit after one holding 11, so "marked after
  the last marker seen" would miss 10's rows forever. The marker is the writing
  transaction's id (``pg_current_xact_id()``), and the horizon is the ``xmin`` of the
  snapshot of the statement reading the token (``pg_snapshot_xmin``): every transaction
  below it had ended before that statement, hence before the rows, read later, so its
  writes are in them; every one at or above it is read again by the next bring-up (a row
  read twice is only replaced by itself). Reads run statement by statement there: the
  tombstones are read before the changed rows, so a row deleted in between is at worst
  shown as of the token, never resurrected, and a row in the changed rows wins over an
  older tombstone of it.

A bring-up reads the new horizon with the token, then the tombstones and changed rows from
the old horizon on (an index range of ``(store, scope, changed)``), and relabels the
snapshot with both: the induction above holds again. Tombstones older than
``TOMBSTONE_HORIZON`` markers are pruned by later deletes, so a snapshot whose horizon is
that old is read whole instead; so is one when a user was forgotten since
(``forget_scope_changes``: their scopes' tombstones name them), or when more than
``CHANGES_READ`` rows changed. The rows read whole are never copied: the changes since then
(``changes``, all of them, built anew as a small snapshot) follow them at the next positions,
the base rows they replace are ``hidden``, and the full-text index, ids and codes are joined
without copying the base's. Ranking sees one set of rows: document counts, lengths and
frequencies over base and changes are what the database's statement computes (a test
compares them bit for bit). Past ``CHANGES_KEPT`` changes the scope is read whole again in
the background while the brought-up snapshot serves.

The filter is evaluated here in numpy (``ScopeRows.visible``), the same conditions as
``kern.db._learnings.learning_clauses``; tests compare the two on both engines.

An engine whose full-text index can give each row's tokens (PostgreSQL: the lexemes of its
``tsvector``) has them read with the rows, into an inverted index (``ScopeText``), so that its
full-text step can rank the scope in memory with the statistics its SQL would compute. The
index holds tokens as the engine made them: stemming and stopwords stay the engine's.

A snapshot's bytes (``nbytes``) are counted, not guessed: a fixed cost per row (its arrays,
its ``RankingRow`` and date, its entry in the id index: ``ROW_BYTES``) plus the size of
every string it holds, and the index's arrays and vocabulary. Repeated values (statuses,
kinds, sessions, subjects) are kept once. A test holds the count to what ``tracemalloc``
measures.

Rows are kept as ``RankingRow`` objects, which each full garbage collection walks (half the
tracked objects of a process holding a 100,000-row snapshot, ~140 ms a collection). Tuples of
strings and dates, which CPython does not track, would make every search build the ~1,000
rows it returns (0.5-1.9 ms) to shorten a pause that lands on about one search in 500
(docs/decisions.md).
"""

from __future__ import annotations

import sys
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from itertools import repeat
from typing import Any, TypeVar, overload

import numpy as np
import numpy.typing as npt

from kern.db._nearest import best_first, cosine_similarities, row_norms
from kern.db.base import LearningFilter, RankingRow

__all__ = [
    "ScopeCache",
    "ScopeKey",
    "ScopeRows",
    "ScopeText",
    "merged_windows",
    "scope_key",
    "take",
]

ScopeKey = tuple[str, str]
"""``(store, scope)``: what a snapshot holds, and what a token is kept for."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_NEVER = np.iinfo(np.int64).max  # an unset valid_to / expires_at: open towards the future
_ALWAYS = np.iinfo(np.int64).min  # an unset valid_from: open towards the past

#: What a snapshot costs per row besides its strings, vectors and text index: its column
#: arrays (73 bytes), its ``RankingRow`` (80) and its date (48), its places in the lists of
#: rows and ids (16) and its entry in the id index with the int it maps to (~70), measured
#: with ``tracemalloc`` (287 per row for 100,000 rows, 273 for 2,000). Strings are counted
#: one by one.
ROW_BYTES = 288

#: Up to how many values ``ScopeRows._among`` compares one by one, not by a lookup table.
_COMPARED = 4

#: What separates a row's tokens in the string an engine gives (``ScopeText.build``).
TOKEN_SEPARATOR = " "

Bools = npt.NDArray[np.bool_]
Floats = npt.NDArray[np.float32]


def scope_key(where: LearningFilter) -> ScopeKey | None:
    """The one ``(store, scope)`` a filter reads, or ``None`` when it names no store or not
    exactly one scope (such reads are not served from memory)."""
    if where.store is None or where.scopes is None or len(set(where.scopes)) != 1:
        return None
    return where.store, where.scopes[0]


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


def _us(moment: datetime) -> int:
    return (moment - _EPOCH) // _US


def _micros(moments: Sequence[datetime | None], unset: int) -> npt.NDArray[np.int64]:
    """Microseconds since the epoch of each of ``moments``, ``unset`` for ``None``. Naive
    moments are UTC (SQLite's, read as the driver gives them); all are of one kind."""
    first = next((moment for moment in moments if moment is not None), None)
    if first is None:  # valid_from, valid_to and expires_at are mostly unset
        return np.full(len(moments), unset, dtype=np.int64)
    epoch = _EPOCH if first.tzinfo is not None else _EPOCH.replace(tzinfo=None)
    return np.fromiter(
        (unset if moment is None else (moment - epoch) // _US for moment in moments),
        dtype=np.int64,
        count=len(moments),
    )


T = TypeVar("T")


class _Joined(Sequence[T]):
    """Two sequences read as one, neither copied: a snapshot's rows then its changes'."""

    __slots__ = ("_first", "_second")

    def __init__(self, first: Sequence[T], second: Sequence[T]) -> None:
        self._first, self._second = first, second

    def __len__(self) -> int:
        return len(self._first) + len(self._second)

    @overload
    def __getitem__(self, i: int) -> T: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[T]: ...
    def __getitem__(self, i: int | slice) -> T | Sequence[T]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        n = len(self._first)
        return self._first[i] if i < n else self._second[i - n]

    def take(self, positions: Sequence[int]) -> list[T]:
        """The items at ``positions`` (ascending or not), each list indexed by C loops."""
        n = len(self._first)
        first, second = self._first.__getitem__, self._second.__getitem__
        return [first(i) if i < n else second(i - n) for i in positions]


class _JoinedIndex(Mapping[str, int]):
    """The positions of a snapshot's ids when it is brought up to date: a changed row's in
    the changes (after the ``len(hidden)`` base rows), else the base row's unless hidden."""

    __slots__ = ("_base", "_hidden", "_n", "_tail")

    def __init__(self, base: Mapping[str, int], hidden: Bools, tail: Mapping[str, int]) -> None:
        self._base, self._tail, self._n = base, tail, len(hidden)
        #: The hidden base positions (at most ``CHANGES_READ``): a set answers faster than
        #: indexing the array for each id.
        self._hidden = frozenset(np.flatnonzero(hidden).tolist())

    def __getitem__(self, key: str) -> int:
        position: int | None = self.get(key)
        if position is None:
            raise KeyError(key)
        return position

    def get(self, key: str, default: Any = None) -> Any:
        """``Mapping.get`` without raising and catching ``KeyError`` for every id missing
        (a search looks up hundreds of ids, some of them not in the scope)."""
        position = self._tail.get(key)
        if position is not None:
            return self._n + position
        position = self._base.get(key)
        if position is None or position in self._hidden:
            return default
        return position

    def positions(self, keys: Iterable[str]) -> list[int | None]:
        """``[self.get(key) for key in keys]``, each dict looked up by a C loop."""
        keys = list(keys)
        n, hidden = self._n, self._hidden
        return [
            n + t if t is not None else None if b is None or b in hidden else b
            for b, t in zip(map(self._base.get, keys), map(self._tail.get, keys), strict=True)
        ]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None

    def __iter__(self) -> Iterator[str]:
        yield from (key for key in self._base if key in self)
        yield from (key for key in self._tail if key not in self._base)

    def __len__(self) -> int:
        return sum(1 for _ in self)


class _JoinedCodes(Mapping[Any, int]):
    """A snapshot's codes of one column when it is brought up to date: the base's, then the
    values only the changes hold, numbered after them (the base's dict is not copied)."""

    __slots__ = ("_base", "_more")

    def __init__(self, base: Mapping[Any, int], more: dict[Any, int]) -> None:
        self._base, self._more = base, more

    @classmethod
    def of(cls, base: Mapping[Any, int], values: Iterable[Any]) -> Mapping[Any, int]:
        """``base`` extended by those of ``values`` it lacks."""
        if isinstance(base, _JoinedCodes):  # never nested: the base is read whole
            raise TypeError("codes are joined to a base snapshot's")
        new = [value for value in values if value not in base]
        return cls(base, {v: len(base) + i for i, v in enumerate(new)}) if new else base

    def __getitem__(self, value: Any) -> int:
        found = self._base.get(value)
        return self._more[value] if found is None else found

    def __iter__(self) -> Iterator[Any]:
        yield from self._base
        yield from self._more

    def __len__(self) -> int:
        return len(self._base) + len(self._more)


def take(items: Sequence[T], positions: list[int]) -> list[T]:
    """``[items[i] for i in positions]``, by a C loop when ``items`` is a list."""
    if isinstance(items, _Joined):
        return items.take(positions)
    return list(map(items.__getitem__, positions))


def _positions(index: Mapping[str, int], keys: Sequence[str]) -> list[int | None]:
    """The position of each of ``keys`` in ``index`` (``None``: not a row), by C loops."""
    if isinstance(index, _JoinedIndex):
        return index.positions(keys)
    return list(map(index.get, keys))


def _sessions(column: npt.NDArray[np.int32], codes: Mapping[Any, int]) -> npt.NDArray[np.int64]:
    """Each row's session as a number (``neighbours`` matches them): its code, -1 for none."""
    none = codes.get(None, -1)
    return np.where(column == none, -1, column).astype(np.int64)


def _vector_parts(
    found: Sequence[tuple[int, bytes]],
) -> dict[int, tuple[npt.NDArray[np.intp], Floats, Floats]]:
    """``(position, vector)`` pairs as one part per vector byte length: the positions, the
    vectors (one row each) and their norms; lengths not of float32 vectors are left out."""
    groups: dict[int, tuple[list[int], list[bytes]]] = {}
    for position, blob in found:
        positions, group = groups.setdefault(len(blob), ([], []))
        positions.append(position)
        group.append(blob)
    parts = {}
    for size, (positions, group) in groups.items():
        if size % 4 == 0:
            matrix = np.frombuffer(b"".join(group), dtype=np.float32).reshape(len(group), -1)
            parts[size] = (np.array(positions, dtype=np.intp), matrix, row_norms(matrix))
    return parts


def _vector_bytes(
    vectors: dict[int, list[tuple[npt.NDArray[np.intp], Floats, Floats]]] | None,
) -> int:
    if vectors is None:
        return 0
    return sum(m.nbytes + norms.nbytes for parts in vectors.values() for _, m, norms in parts)


def _string_bytes(values: Sequence[str | None]) -> int:
    return sum(map(sys.getsizeof, [value for value in values if value is not None]))


def _int_bytes(count: int) -> int:
    """The ints ``range(count)`` a dict holds as values: those past 256 are objects."""
    return max(0, count - 257) * sys.getsizeof(2**20)


@dataclass(frozen=True, eq=False)
class ScopeText:
    """An inverted index of a snapshot's rows, engine-neutral: for each token (as the engine's
    full-text index holds it), the positions of the rows holding it, ascending, and for each
    row its number of distinct tokens. Built by ``ScopeText.build``.

    Postings are one array sorted by token (``offsets[t]:offsets[t + 1]`` are token ``t``'s),
    not an array per token: 20,000 small numpy arrays would cost more than their contents.
    """

    vocabulary: dict[str, int]
    offsets: npt.NDArray[np.int64]
    postings: npt.NDArray[np.int32]
    lengths: npt.NDArray[np.int32]
    nbytes: int

    @classmethod
    def build(cls, tokens: Sequence[str], lengths: Sequence[int]) -> ScopeText | None:
        """The index of rows whose distinct tokens are ``tokens[i]`` (joined by
        ``TOKEN_SEPARATOR``), ``lengths[i]`` of them; ``None`` when the two disagree (a token
        holding the separator), so that such a scope is ranked by the database, never here
        with a wrong length."""
        counts = np.array(lengths, dtype=np.int32)
        flat = TOKEN_SEPARATOR.join(filter(None, tokens)).split(TOKEN_SEPARATOR)
        if not counts.sum():
            flat = []
        if len(flat) != int(counts.sum()):
            return None
        # Tokens numbered in order of first appearance, by C loops (``dict.fromkeys``, ``map``):
        # one ``setdefault`` per token in a generator cost ~1 s for a 100,000-row scope.
        vocabulary = {token: t for t, token in enumerate(dict.fromkeys(flat))}
        ids = np.fromiter(map(vocabulary.__getitem__, flat), dtype=np.int32, count=len(flat))
        rows = np.repeat(np.arange(len(counts), dtype=np.int32), counts)
        # Stable, so each token's rows stay ascending; 16-bit keys sort by radix, in linear time.
        keys = ids.astype(np.uint16) if len(vocabulary) <= 2**16 else ids
        order = np.argsort(keys, kind="stable")
        offsets = np.zeros(len(vocabulary) + 1, dtype=np.int64)
        np.cumsum(np.bincount(ids, minlength=len(vocabulary)), out=offsets[1:])
        postings = rows[order]
        words = sys.getsizeof(vocabulary) + _string_bytes(list(vocabulary))
        words += _int_bytes(len(vocabulary))
        return cls(
            vocabulary=vocabulary,
            offsets=offsets,
            postings=postings,
            lengths=counts,
            nbytes=words + offsets.nbytes + postings.nbytes + counts.nbytes,
        )

    #: The index of the rows changed since the snapshot was read, at positions from
    #: ``len(lengths) - len(tail.lengths)`` on (``joined``).
    tail: ScopeText | None = None

    @classmethod
    def joined(cls, base: ScopeText, tail: ScopeText) -> ScopeText:
        """The index of ``base``'s rows followed by ``tail``'s."""
        lengths = np.concatenate([base.lengths, tail.lengths])
        return replace(
            base,
            lengths=lengths,
            tail=tail,
            nbytes=base.nbytes + tail.nbytes + lengths.nbytes,
        )

    def rows_with(self, token: str) -> npt.NDArray[np.int32]:
        """The positions of the rows holding ``token``, ascending."""
        t = self.vocabulary.get(token)
        found = (
            np.empty(0, dtype=np.int32)
            if t is None
            else self.postings[self.offsets[t] : self.offsets[t + 1]]
        )
        if self.tail is None:
            return found
        start = len(self.lengths) - len(self.tail.lengths)
        return np.concatenate([found, self.tail.rows_with(token) + np.int32(start)])


@dataclass(frozen=True, eq=False)
class ScopeRows:
    """Every row of one ``(store, scope)`` as of ``token``, by ``created_at`` then insertion
    order (the order ``load_neighbours`` returns), built by ``ScopeRows.build``.

    Built column by column (numpy arrays of what ``visible`` tests), with C loops where
    there are any: a 100,000-row scope is rebuilt after every write to it.
    """

    token: str
    scope: str
    #: Each row as ``load_neighbours`` returns it, and its id, by position; the position of
    #: each id.
    rows: Sequence[RankingRow]
    ids: Sequence[str]
    index: Mapping[str, int]
    seq: npt.NDArray[np.int64]
    #: Microseconds since the epoch (UTC) of each row's ``created_at``.
    created: npt.NDArray[np.int64]
    columns: dict[str, npt.NDArray[Any]]
    #: The columns held as codes (``_REPEATED``): each value's code, in order of code.
    codes: dict[str, Mapping[Any, int]]
    #: Each row's session as a number of its own (its code), -1 for none (``neighbours``).
    sessions: npt.NDArray[np.int64]
    #: By vector byte length, in parts (the rows read whole, then the changes since): the
    #: positions of the rows with such a vector, in insertion order, their vectors (one row
    #: each) and the vectors' norms. ``None``: not read yet.
    vectors: dict[int, list[tuple[npt.NDArray[np.intp], Floats, Floats]]] | None = None
    #: False when the vectors were read once and did not fit in the cache's budget: they are
    #: then read from the database by every search, not read again to be dropped again.
    vectors_fit: bool = True
    #: The rows' full-text index, when the engine gives tokens (``build(..., text=True)``)
    #: and they could be indexed.
    text: ScopeText | None = None
    nbytes: int = field(default=0)
    #: Every change committed below this marker is in the snapshot (``learnings.changed``;
    #: "Changes since a snapshot" above): what ``changed_since`` reads from.
    horizon: int = 0
    #: For a snapshot brought up to date (``with_changes``): the snapshot read whole, whose
    #: rows are this one's first ``len(base)`` positions, and the rows changed since then as
    #: read (each followed by its embedding, or ``None``), this one's next positions. ``None``
    #: and ``()`` for a snapshot read whole.
    base: ScopeRows | None = None
    changes: tuple[Sequence[Any], ...] = ()
    #: The base rows changed or deleted since (their current versions are among the changes):
    #: no filter lets a read see them. ``None``: none.
    hidden: Bools | None = None

    #: The columns ``build`` expects, in order, before ``subject`` and ``head``.
    FIELDS = (
        "seq",
        "id",
        "kind",
        "status",
        "user_id",
        "session_id",
        "key",
        "run_id",
        "created_at",
        "valid_from",
        "valid_to",
        "expires_at",
        "pinned",
    )

    #: The ``LearningFilter`` fields ``visible`` evaluates; ``store`` and ``scopes`` are what
    #: the snapshot is of (``scope_key``).
    FILTERS = (
        "statuses",
        "user_id",
        "session_id",
        "key",
        "run_id",
        "pinned",
        "kinds",
        "ids",
        "created_after",
        "created_before",
        "valid_at",
        "valid_during",
        "unexpired_at",
    )

    #: Columns whose values repeat from row to row, kept once per snapshot.
    _REPEATED = ("kind", "status", "user_id", "session_id", "key", "run_id")

    @classmethod
    def build(
        cls,
        token: str,
        scope: str,
        rows: Sequence[Sequence[Any]],
        *,
        text: bool = False,
        horizon: int = 0,
    ) -> ScopeRows:
        """A snapshot from rows of ``FIELDS`` then ``subject`` and ``head`` (then, with
        ``text``, the row's tokens and their number, ``ScopeText.build``), in ``created_at``
        then ``seq`` order, read under ``token`` with every change below ``horizon`` visible.

        Column by column, with C loops where there are any (``zip``, ``map``,
        ``dict.fromkeys``, ``np.fromiter``): a 100,000-row scope costs ~1 s to build, and a
        Python loop per row and column cost seconds."""
        return replace(cls._from_rows(token, scope, rows, text=text), horizon=horizon)

    @classmethod
    def _from_rows(
        cls, token: str, scope: str, rows: Sequence[Sequence[Any]], *, text: bool
    ) -> ScopeRows:
        """``build``'s work, also what ``with_changes`` makes of the rows changed."""
        n = len(rows)
        width = len(cls.FIELDS) + (4 if text else 2)
        read: list[Sequence[Any]] = list(zip(*rows, strict=True)) if n else [()] * width
        by_name = dict(zip(cls.FIELDS, read, strict=False))
        columns: dict[str, npt.NDArray[Any]] = {}
        codes: dict[str, Mapping[Any, int]] = {}
        for name in cls._REPEATED:
            # Compared as small integers: ``==`` over 100,000 Python strings costs ms.
            values = by_name[name]
            code = codes[name] = {v: i for i, v in enumerate(dict.fromkeys(values))}
            columns[name] = np.fromiter(map(code.__getitem__, values), dtype=np.int32, count=n)
        for name, unset in (("valid_from", _ALWAYS), ("valid_to", _NEVER), ("expires_at", _NEVER)):
            columns[name] = _micros(by_name[name], unset)
        columns["pinned"] = np.fromiter(map(bool, by_name["pinned"]), dtype=np.bool_, count=n)
        sessions = _sessions(columns["session_id"], codes["session_id"])
        once: dict[str | None, str | None] = {}  # each subject kept once
        subjects = map(once.setdefault, read[13], read[13])
        ids, heads = list(read[1]), read[14]
        created = _micros(read[8], 0)
        # ``RankingRow``s made by ``map`` over the columns, dates from their microseconds (as
        # ``UtcDateTime`` reads them: UTC), each session the one its code keeps.
        moments = [_EPOCH + timedelta(microseconds=us) for us in created.tolist()]
        by_code = tuple(codes["session_id"])
        session_ids = [by_code[c] for c in columns["session_id"].tolist()]
        made = list(map(RankingRow, ids, session_ids, moments, subjects, repeat(scope, n), heads))
        index = None if not text else ScopeText.build(read[15], read[16])
        strings = _string_bytes(ids) + _string_bytes(heads) + _string_bytes(list(once))
        for held in codes.values():
            strings += _string_bytes([v for v in held if isinstance(v, str)])
            strings += sys.getsizeof(held) + _int_bytes(len(held))
        return cls(
            token=token,
            scope=scope,
            rows=made,
            ids=ids,
            index=dict(zip(ids, range(n), strict=True)),
            seq=np.fromiter(read[0], dtype=np.int64, count=n),
            created=created,
            columns=columns,
            codes=codes,
            sessions=sessions,
            text=index,
            nbytes=n * ROW_BYTES + strings + (0 if index is None else index.nbytes),
        )

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def base_rows(self) -> int:
        """How many of the positions are rows read whole (in ``created_at`` then ``seq``
        order); the changes since (``with_changes``) follow, in that order among themselves."""
        return len(self) if self.base is None else len(self.base)

    def with_changes(
        self,
        token: str,
        horizon: int,
        rows: Sequence[Sequence[Any]],
        gone: Sequence[tuple[str, int]],
        *,
        text: bool = False,
    ) -> ScopeRows:
        """This snapshot brought up to date, labelled ``token`` and ``horizon`` (read before
        what follows): ``rows`` are the scope's rows changed since ``self.horizon`` as they
        are now (as ``build`` takes them, each followed by its embedding or ``None``), and
        ``gone`` the ``(id, seq)`` of its rows deleted or moved away since. A change read
        again replaces itself; a row in ``rows`` replaces any earlier version, so ``gone`` is
        applied first.

        The rows read whole stay where they are (``base``: never copied row by row); the
        changes, all of them since ``base`` was read, are built anew into a small snapshot
        whose positions follow, and the base rows they replace are ``hidden``. Its cost is
        the changes' plus copies of the base's arrays and id index (a few ms at 100,000
        rows), paid once per write, not per search."""
        base = self if self.base is None else self.base
        n = len(base)
        hidden = np.zeros(n, dtype=np.bool_) if self.hidden is None else self.hidden[:n].copy()
        changes = {row[1]: row for row in self.changes}
        for key, seq in gone:
            row = changes.get(key)
            if row is not None and row[0] == seq:
                del changes[key]
            position = base.index.get(key)
            if position is not None and base.seq[position] == seq:
                hidden[position] = True
        for row in rows:
            changes[row[1]] = row
            position = base.index.get(row[1])
            if position is not None:
                hidden[position] = True
        ordered = tuple(sorted(changes.values(), key=lambda row: (row[8], row[0])))
        tail = ScopeRows._from_rows(token, self.scope, [row[:-1] for row in ordered], text=text)
        return base._joined(tail, ordered, hidden, self, horizon)

    def _joined(
        self,
        tail: ScopeRows,
        changes: tuple[Sequence[Any], ...],
        hidden: Bools,
        previous: ScopeRows,
        horizon: int,
    ) -> ScopeRows:
        """This (base) snapshot followed by ``tail``, the changes since, as one snapshot;
        vectors kept if ``previous`` held them."""
        n, k = len(self), len(tail)
        columns: dict[str, npt.NDArray[Any]] = {}
        codes: dict[str, Mapping[Any, int]] = {}
        tail_sessions = tail.sessions
        for name in self._REPEATED:
            # The tail's codes translated into the base's, the new values coded after them.
            code = _JoinedCodes.of(self.codes[name], tail.codes[name])
            codes[name] = code
            translate = np.array([code[v] for v in tail.codes[name]], dtype=np.int32)
            moved = translate[tail.columns[name]] if k else tail.columns[name]
            columns[name] = np.concatenate([self.columns[name], moved])
            if name == "session_id":
                tail_sessions = _sessions(moved, code)
        for name in ("valid_from", "valid_to", "expires_at", "pinned"):
            columns[name] = np.concatenate([self.columns[name], tail.columns[name]])
        sessions = np.concatenate([self.sessions, tail_sessions])
        index = _JoinedIndex(self.index, hidden, tail.index)
        text = None
        if self.text is not None and tail.text is not None:
            text = ScopeText.joined(self.text, tail.text)
        seq = np.concatenate([self.seq, tail.seq])
        created = np.concatenate([self.created, tail.created])
        covered = np.concatenate([hidden, np.zeros(k, dtype=np.bool_)])
        vectors = None
        if previous.vectors is not None:
            vectors = {
                size: [part for part in parts if len(part[0]) and part[0][0] < n]
                for size, parts in previous.vectors.items()
            }
            blobs = [(n + i, row[-1]) for i, row in enumerate(changes) if row[-1] is not None]
            for size, part in _vector_parts(blobs).items():
                vectors.setdefault(size, []).append(part)
        arrays = [seq, created, covered, sessions, *columns.values()]
        nbytes = (
            self.nbytes
            - _vector_bytes(self.vectors)
            + tail.nbytes
            + sum(array.nbytes for array in arrays)
            + (0 if text is None else text.lengths.nbytes)
            + _vector_bytes(vectors)
        )
        return replace(
            self,
            token=tail.token,
            rows=_Joined(self.rows, tail.rows),
            ids=_Joined(self.ids, tail.ids),
            index=index,
            seq=seq,
            created=created,
            columns=columns,
            codes=codes,
            sessions=sessions,
            vectors=vectors,
            vectors_fit=previous.vectors_fit,
            text=text,
            nbytes=nbytes,
            horizon=horizon,
            base=self,
            changes=changes,
            hidden=covered,
        )

    def with_vectors(self, ids: Sequence[str], blobs: Sequence[bytes]) -> ScopeRows | None:
        """This snapshot with the vectors of its rows (``ids`` in insertion order, read under
        the same token); ``None`` if one of them is not a row of it."""
        base: list[tuple[int, bytes]] = []
        changed: list[tuple[int, bytes]] = []
        n = self.base_rows
        for key, blob in zip(ids, blobs, strict=True):
            position = self.index.get(key)
            if position is None:
                return None
            (base if position < n else changed).append((position, blob))
        vectors: dict[int, list[tuple[npt.NDArray[np.intp], Floats, Floats]]] = {}
        for found in (base, changed):  # kept apart: ``with_changes`` drops the changes' part
            for size, part in _vector_parts(found).items():
                vectors.setdefault(size, []).append(part)
        return replace(self, vectors=vectors, nbytes=self.nbytes + _vector_bytes(vectors))

    def visible(self, where: LearningFilter) -> Bools | None:
        """Which rows ``where`` lets a read see (``learning_clauses``' conditions), or
        ``None`` when a value cannot be compared here (a naive datetime: the database
        refuses it, so the read must go there to fail the same way)."""
        c = self.columns
        mask = self._among("status", where.statuses)
        if self.hidden is not None:  # base rows whose current version is among the changes
            mask &= ~self.hidden
        for name in ("user_id", "session_id", "key", "run_id"):
            value = getattr(where, name)
            if value is not None:
                mask &= c[name] == self.codes[name].get(value, -1)
        if where.pinned is not None:
            mask &= c["pinned"] == where.pinned
        if where.kinds is not None:
            mask &= self._among("kind", where.kinds)
        if where.ids is not None:
            chosen = np.zeros(len(self), dtype=np.bool_)
            chosen[[self.index[i] for i in where.ids if i in self.index]] = True
            mask &= chosen
        moments = [
            where.created_after,
            where.created_before,
            where.valid_at,
            where.unexpired_at,
            *(where.valid_during or ()),
        ]
        if any(m is not None and (m.tzinfo is None or m.utcoffset() is None) for m in moments):
            return None
        if where.created_after is not None:
            mask &= self.created >= _us(where.created_after)
        if where.created_before is not None:
            mask &= self.created < _us(where.created_before)
        if where.valid_at is not None:
            at = _us(where.valid_at)
            mask &= (c["valid_from"] <= at) & (c["valid_to"] > at)
        if where.valid_during is not None:
            start, end = (_us(m) for m in where.valid_during)
            mask &= (c["valid_from"] < end) & (c["valid_to"] > start)
        if where.unexpired_at is not None:
            mask &= c["expires_at"] > _us(where.unexpired_at)
        return mask

    def _among(self, name: str, values: Sequence[Any]) -> Bools:
        """The rows whose ``name`` is one of ``values``: one ``==`` over the codes per value
        (~15 µs at 100,000 rows), or a lookup table for many. ``np.isin`` sorted the column
        on each call, ~1 ms, four times per search (statuses and kinds, two steps)."""
        code = self.codes[name]
        wanted = sorted({code[v] for v in values if v in code})
        column = self.columns[name]
        if len(wanted) > _COMPARED:
            table = np.zeros(len(code), dtype=np.bool_)
            table[wanted] = True
            found: Bools = table[column]
            return found
        mask = np.zeros(len(column), dtype=np.bool_)
        for value in wanted:
            mask |= column == value
        return mask

    def neighbours(
        self,
        where: LearningFilter,
        ids: Sequence[str],
        around: Sequence[str],
        gap: timedelta | None,
    ) -> list[RankingRow] | None:
        """``load_neighbours`` over this snapshot, or ``None`` when it cannot answer here: an
        id that is not a row of this scope (the database looks its session up anywhere)."""
        visible = self.visible(where)
        found = _positions(self.index, ids)
        positions = [p for p in found if p is not None]
        if visible is None or len(positions) != len(found):
            return None
        picked = np.zeros(len(self), dtype=np.bool_)
        picked[positions] = True
        # Sessions by id whatever the filter, as the database looks them up.
        sessions = set(self.sessions[positions].tolist()) - {-1}
        if sessions:  # by a table of the session codes (-1, no session, its last entry)
            table = np.zeros(len(self.codes["session_id"]) + 1, dtype=np.bool_)
            table[list(sessions)] = True
            picked |= table[self.sessions]
        if gap is not None and around:
            moments = [
                (self.scope, self.rows[p].created_at)
                for p in (self.index.get(key) for key in around)
                if p is not None and visible[p] and self.sessions[p] == -1
            ]
            window = np.zeros(len(self), dtype=np.bool_)
            n = self.base_rows
            for _, start, stop in merged_windows(moments, gap):
                low = np.searchsorted(self.created[:n], _us(start), side="left")
                high = np.searchsorted(self.created[:n], _us(stop), side="right")
                window[low:high] = True
                if n < len(self):  # the changes are few, and not in order after the base
                    tail = self.created[n:]
                    window[n:] |= (tail >= _us(start)) & (tail <= _us(stop))
            picked |= window & (self.sessions == -1)
        picked &= visible
        chosen = np.flatnonzero(picked)
        if self.base is not None:  # the changes after the base rows: back into date order
            chosen = chosen[np.lexsort((self.seq[chosen], self.created[chosen]))]
        return take(self.rows, chosen.tolist())

    def nearest(
        self, where: LearningFilter, vector: bytes, limit: int
    ) -> list[tuple[str, float]] | None:
        """``search_vectors`` over this snapshot: the ids and similarities of the ``limit`` rows
        ``where`` lets a read see whose vectors (of ``vector``'s length) are nearest, best
        first, equal ones in insertion order; ``None`` when vectors were not read or the filter
        cannot be evaluated here."""
        if self.vectors is None:
            return None
        visible = self.visible(where)
        if visible is None:
            return None
        parts = self.vectors.get(len(vector))
        if not parts:
            return []
        query = np.frombuffer(vector, dtype=np.float32)
        # Every row is scored and the hidden ones dropped after: selecting the visible rows
        # first would copy the matrix (150 MB at 100,000 MiniLM vectors) on every search.
        similarity = np.concatenate([cosine_similarities(m, query, norms) for _, m, norms in parts])
        positions = np.concatenate([part[0] for part in parts])
        similarity[~visible[positions]] = np.nan
        if len(parts) == 1:  # one part is in insertion order: ties are broken by position
            order = best_first(similarity, limit)
        else:  # the best (ties at the cut included), equal ones in insertion order (seq)
            top = best_first(similarity, limit)
            if not len(top):
                return []
            best = np.flatnonzero(similarity >= similarity[top[-1]])
            order = best[np.lexsort((self.seq[positions[best]], -similarity[best]))][:limit]
        return [(self.ids[positions[i]], float(similarity[i])) for i in order.tolist()]


class ScopeCache:
    """Snapshots of scopes (``ScopeRows``) within ``max_bytes`` (counted as they are held:
    ``ScopeRows.nbytes``), least recently used evicted first; thread-safe.

    A snapshot is built only for a token seen by an earlier search (``seen``): a scope written
    between every two searches (a chat whose every turn adds a memory) would otherwise pay a
    whole-scope read per search for a snapshot never used again.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._snapshots: OrderedDict[ScopeKey, ScopeRows] = OrderedDict()
        self._bytes = 0
        #: The last token each scope was seen with, and whether it was too big to keep.
        self._seen: OrderedDict[ScopeKey, tuple[str, bool]] = OrderedDict()

    @property
    def max_rows(self) -> int:
        """The most rows one snapshot may hold."""
        return self.max_bytes // ROW_BYTES

    @property
    def nbytes(self) -> int:
        return self._bytes

    def peek(self, key: ScopeKey) -> ScopeRows | None:
        """The snapshot held for ``key``, whatever its token."""
        with self._lock:
            snapshot = self._snapshots.get(key)
            if snapshot is not None:
                self._snapshots.move_to_end(key)
            return snapshot

    def get(self, key: ScopeKey, token: str) -> ScopeRows | None:
        """The snapshot of ``key`` if it was read under ``token``."""
        with self._lock:
            snapshot = self._snapshots.get(key)
            if snapshot is None or snapshot.token != token:
                return None
            self._snapshots.move_to_end(key)
            return snapshot

    def rows(self, key: ScopeKey) -> int | None:
        """How many rows the snapshot held for ``key`` has, whatever its token (how large
        the scope was when last read); ``None`` when none is held."""
        with self._lock:
            snapshot = self._snapshots.get(key)
            return None if snapshot is None else len(snapshot)

    def seen(self, key: ScopeKey, token: str, *, record: bool = True) -> bool:
        """Whether an earlier call saw ``key`` with ``token`` (and it was not too big); records
        this sighting unless ``record`` is false (a search's first step asks without recording,
        so that its next step does not take it for an earlier search)."""
        with self._lock:
            if not record:
                return self._seen.get(key) == (token, False)
            before = self._seen.pop(key, None)
            self._seen[key] = (
                before if before is not None and before[0] == token else (token, False)
            )
            while len(self._seen) > _SIGHTINGS:
                self._seen.popitem(last=False)
            return before == (token, False)

    def too_big(self, key: ScopeKey, token: str) -> None:
        """``key`` has more rows than a snapshot may hold: do not read it again under ``token``."""
        with self._lock:
            self._seen[key] = (token, True)

    def put(self, key: ScopeKey, snapshot: ScopeRows) -> None:
        """Keep ``snapshot`` (unless it alone exceeds the budget), evicting the least recently
        used ones to make room."""
        with self._lock:
            old = self._snapshots.pop(key, None)
            if old is not None:
                self._bytes -= old.nbytes
            if snapshot.nbytes > self.max_bytes:
                return
            self._snapshots[key] = snapshot
            self._bytes += snapshot.nbytes
            while self._bytes > self.max_bytes:
                _, evicted = self._snapshots.popitem(last=False)
                self._bytes -= evicted.nbytes

    def __len__(self) -> int:
        return len(self._snapshots)


#: How many scopes' last tokens ``ScopeCache.seen`` remembers (a few hundred bytes each).
_SIGHTINGS = 4096
