"""The curator keeps list stores healthy: prune old or excess items, merge duplicates.

Nothing is erased: a removed item moves to status ``deleted`` with a ``prune`` or ``merge``
history event, so every removal can be audited and undone (``undo``). ``dry_run=True``
reports what would change and writes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import numpy as np

from kern.context import DEFAULT_USER_ID, RunContext
from kern.db.base import LearningFilter, LearningRecord, SetStatus
from kern.errors import ConfigError
from kern.learn.distinct import may_be_duplicates, overlap, words
from kern.learn.scope import USER
from kern.learn.stores.listing import ListStore

if TYPE_CHECKING:
    from kern.learn.machine import LearningMachine

__all__ = ["CurationReport", "Curator"]


@dataclass(frozen=True, slots=True)
class Removal:
    id: str
    store: str
    content: str
    reason: str
    #: For merges: the item that was kept in its place.
    kept_id: str | None = None


@dataclass(frozen=True, slots=True)
class CurationReport:
    action: str
    dry_run: bool
    removed: list[Removal] = field(default_factory=list)

    @property
    def ids(self) -> list[str]:
        return [r.id for r in self.removed]

    def __len__(self) -> int:
        return len(self.removed)


class Curator:
    def __init__(self, machine: LearningMachine) -> None:
        self._machine = machine

    # ------------------------------------------------------------------ public

    def prune(
        self,
        *,
        user_id: str | None = None,
        max_age_days: float | None = None,
        max_count: int | None = None,
        stores: Sequence[str] | None = None,
        dry_run: bool = False,
    ) -> CurationReport:
        """Remove items older than ``max_age_days`` and, per store, all but the newest
        ``max_count``, among ``user_id``'s items (see ``_targets`` for what that covers)."""
        if max_age_days is None and max_count is None:
            raise ConfigError("prune needs max_age_days and/or max_count")
        if (max_age_days is not None and max_age_days < 0) or (
            max_count is not None and max_count < 0
        ):
            raise ConfigError("max_age_days and max_count must be ≥ 0")
        now = self._machine.db.now()
        removed: list[Removal] = []
        for store, where in self._targets(user_id, stores):
            # Pinned items are never pruned (nor counted against max_count).
            unpinned = replace(where, pinned=False)
            records = self._machine.db.list_learnings(unpinned, limit=1_000_000)  # newest first
            for index, record in enumerate(records):
                reason = None
                if max_count is not None and index >= max_count:
                    reason = f"beyond the newest {max_count}"
                assert record.created_at is not None
                if max_age_days is not None and record.created_at < now - timedelta(
                    days=max_age_days
                ):
                    reason = f"older than {max_age_days:g} days"
                if reason:
                    removed.append(Removal(record.id, store.name, record.text, reason))
        return self._finish("prune", removed, dry_run)

    def deduplicate(
        self,
        *,
        user_id: str | None = None,
        stores: Sequence[str] | None = None,
        threshold: float = 0.85,
        dry_run: bool = False,
    ) -> CurationReport:
        """Merge exact duplicates (same canonical content) and near-duplicates (word overlap
        ≥ ``threshold``, or embedding cosine ≥ ``max(threshold, 0.92)`` when an embedder is
        set) into the oldest item of each group. Items that differ in a number, a date, a name
        or a negation are never near-duplicates (``kern.learn.distinct``)."""
        removed: list[Removal] = []
        for store, where in self._targets(user_id, stores):
            records = self._machine.db.list_learnings(where, limit=1_000_000, newest_first=False)
            # Only items of one kind that hold over the same time are duplicates: "lived in
            # Lisbon until 2025" is not a duplicate of "lives in Lisbon".
            groups: dict[tuple[Any, ...], list[LearningRecord]] = {}
            for r in records:
                groups.setdefault((r.kind, r.valid_to, r.expires_at), []).append(r)
            for group in groups.values():
                removed += self._duplicates(store.name, group, where, threshold)
            links = replace(where, statuses=("superseded",))
            removed += self._chain_links(store.name, links, threshold)
        return self._finish("merge", removed, dry_run)

    def undo(self, report: CurationReport | Sequence[str]) -> int:
        """Restore items a prune or merge removed; returns how many came back."""
        links = (
            {r.id for r in report.removed if r.reason == "chain link"}
            if isinstance(report, CurationReport)
            else set()
        )
        ids = report.ids if isinstance(report, CurationReport) else list(report)
        ops = [
            SetStatus(
                i, "superseded" if i in links else "active", "restore", from_statuses=("deleted",)
            )
            for i in ids
        ]
        return len(self._machine.db.apply(ops, actor="curator")) if ops else 0

    # ------------------------------------------------------------------ internals

    def _targets(
        self, user_id: str | None, names: Sequence[str] | None
    ) -> list[tuple[ListStore[Any], LearningFilter]]:
        """Which rows a curation covers, per list store.

        User-scoped rows belong to one user (memories; namespaced stores configured with
        namespace "user") and are curated only with ``user_id``. In a shared namespace,
        ``user_id`` narrows the curation to the rows that user's runs created; without it,
        the namespace is curated as a whole.
        """
        targets: list[tuple[ListStore[Any], LearningFilter]] = []
        ctx = RunContext(
            run_id="",
            session_id="",
            user_id=user_id or DEFAULT_USER_ID,
            agent_id=self._machine.agent_id,
        )
        for store in self._machine.stores.values():
            if not isinstance(store, ListStore) or (names is not None and store.name not in names):
                continue
            shared = store.namespace not in (None, USER)
            if user_id is None and not shared:
                continue
            where = LearningFilter(
                store=store.name, scopes=[store.scope(ctx)], user_id=user_id if shared else None
            )
            targets.append((store, where))
        if names is not None and not targets:
            raise ConfigError(f"no enabled list store among {list(names)}")
        return targets

    def _duplicates(
        self, store: str, group: list[LearningRecord], where: LearningFilter, threshold: float
    ) -> list[Removal]:
        removed: list[Removal] = []
        kept: list[LearningRecord] = []
        seen_hash: dict[str, str] = {}
        vectors = self._vectors(where) if self._machine.embedder is not None else {}
        texts = {r.id: words(r.text) for r in group}
        for record in group:  # oldest first: the first of a group is the one kept
            if record.pinned:  # never merged away; it still absorbs later duplicates
                seen_hash.setdefault(record.content_hash, record.id)
                kept.append(record)
                continue
            if (original := seen_hash.get(record.content_hash)) is not None:
                removed.append(Removal(record.id, store, record.text, "exact duplicate", original))
                continue
            match = next(
                (
                    k
                    for k in kept
                    # Similar texts that differ in a number, date, name or negation are two
                    # facts ("two kids" / "three kids"): never merged, whatever the cosine.
                    if may_be_duplicates(k.text, record.text)
                    and _similar(
                        texts[k.id],
                        texts[record.id],
                        vectors.get(k.id),
                        vectors.get(record.id),
                        threshold,
                    )
                ),
                None,
            )
            if match is not None:
                removed.append(Removal(record.id, store, record.text, "near duplicate", match.id))
                continue
            seen_hash[record.content_hash] = record.id
            kept.append(record)
        return removed

    def _chain_links(self, store: str, where: LearningFilter, threshold: float) -> list[Removal]:
        """Superseded items whose successor says the same thing (a supersession chain that
        only reworded a fact): merged into the successor; the change stays in history."""
        removed: list[Removal] = []
        for record in self._machine.db.list_learnings(where, limit=1_000_000):
            if record.pinned or record.superseded_by is None:
                continue
            successor = self._machine.db.get_learning(record.superseded_by)
            if successor is None or successor.status not in ("active", "superseded"):
                continue
            same = record.content_hash == successor.content_hash or _similar(
                words(record.text), words(successor.text), None, None, threshold
            )
            if same:
                removed.append(Removal(record.id, store, record.text, "chain link", successor.id))
        return removed

    def _vectors(self, where: LearningFilter) -> dict[str, np.ndarray]:
        ids, blobs = self._machine.db.load_vectors(where)
        out = {}
        for i, blob in zip(ids, blobs, strict=True):
            v = np.frombuffer(blob, dtype=np.float32)
            out[i] = v / (np.linalg.norm(v) or 1.0)
        return out

    def _finish(self, action: str, removed: list[Removal], dry_run: bool) -> CurationReport:
        if removed and not dry_run:
            ops = [
                SetStatus(
                    r.id,
                    "deleted",
                    "prune" if action == "prune" else "merge",
                    from_statuses=("superseded",) if r.reason == "chain link" else ("active",),
                )
                for r in removed
            ]
            self._machine.db.apply(ops, actor="curator")
        return CurationReport(action, dry_run, removed)


def _similar(
    a: frozenset[str],
    b: frozenset[str],
    va: np.ndarray | None,
    vb: np.ndarray | None,
    threshold: float,
) -> bool:
    if a and b and overlap(a, b) >= threshold:
        return True
    return va is not None and vb is not None and float(va @ vb) >= max(threshold, 0.92)
