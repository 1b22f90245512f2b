"""``SqlDb``: the ``Db`` and ``LearningDb`` contracts over a SQLAlchemy engine.

All SQL goes through SQLAlchemy Core with bound parameters. Each public method is one
transaction; every SQLAlchemy or driver error leaves as ``kern.errors.StorageError`` naming what
was being done, so nothing above ``kern.db`` reports "saved" after a failed write.

``SqlDb`` is one class assembled from one mixin per job, each in its own module over the shared
``SqlBase`` (engine, clock, transactions, lifecycle: ``kern.db._sqlbase``):

- ``SessionsSql`` (``kern.db._sessions``): sessions and their append-only runs;
- ``LearningsSql`` (``kern.db._learnings``): learning rows, their history, and ``apply``;
- ``CandidatesSql`` (``kern.db._candidates``): full-text, vector and neighbour candidates;
- ``JobsSql`` (``kern.db._jobs``): the job queue and its leases;

and, here, what crosses them all (``delete_user``).

Dialect specifics stay out of these modules: an engine factory (``kern.db.sqlite``,
``kern.db.postgres``) configures connections and how ``BEGIN`` is emitted, reading the
``WRITE_OPTION`` execution option that ``transaction`` sets. A subclass per engine overrides
only the few engine-specific hooks: ``_text_search_query`` (full-text search),
``load_vectors`` and ``search_vectors`` (vector candidates), ``_embedding_value`` (how a vector
is written) and ``_pick_job`` (which job a claim takes).

Concurrency. Every write transaction is serialised on SQLite (``BEGIN IMMEDIATE`` takes the
database's write lock before the first read). On Postgres, rows a write reads and then changes
are read ``FOR UPDATE``, every ``UPDATE`` also checks the version it read (compare-and-swap),
and the one insert that can race — a keyed ``Put`` creating its row — is ``ON CONFLICT DO
NOTHING`` followed by an update of the row that won.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, delete, exists, or_, select, update

from kern.db._candidates import CandidatesSql
from kern.db._jobs import JobsSql, runnable_jobs
from kern.db._learnings import LEARNING_COLUMNS, LearningsSql, filter_values, learning_clauses
from kern.db._sessions import SessionsSql
from kern.db._sqlbase import WRITE_OPTION, utcnow
from kern.db.migrations import draw_scope_tokens_now, forget_scope_changes
from kern.db.schema import jobs, learning_history, learning_scopes, learnings, runs, sessions
from kern.errors import InvalidArgumentError

__all__ = [
    "LEARNING_COLUMNS",
    "WRITE_OPTION",
    "SqlDb",
    "filter_values",
    "learning_clauses",
    "runnable_jobs",
    "utcnow",
]


class SqlDb(SessionsSql, LearningsSql, CandidatesSql, JobsSql):
    """kern's data (sessions and runs, learnings and their history, jobs) in a SQL database
    reached through a SQLAlchemy ``Engine``.

    Thread-safe: each transaction checks out its own pooled connection. The schema is expected
    to be migrated already (``kern.db.migrations.migrate``); subclasses do that on open.
    """

    def delete_user(self, user_id: str, *, keep_shared: bool = False) -> int:
        """Remove, in one transaction, every row of ``user_id``: learnings (their text index
        entries and vectors with them), the history of those rows and the user's other history
        events, jobs, runs (also any run in the user's sessions) and sessions. Returns the
        number of rows removed.

        The scopes it empties lose their ``learning_scopes`` token and their tombstones too (a
        user's scope names the user).

        ``keep_shared=True`` (a user forgetting themselves) keeps the items the user wrote in
        shared namespaces, which the user could not delete directly: they belong to everyone
        who shares the namespace. They are detached from the user (user, session and run ids
        cleared, in their history too), so nothing of the user is left that names them.
        """
        if not isinstance(user_id, str) or not user_id:
            raise InvalidArgumentError(f"delete_user needs a user id, got {user_id!r}")
        shared = and_(learnings.c.namespace.is_not(None), learnings.c.namespace != "user")
        own = learnings.c.user_id == user_id
        if keep_shared:
            own = and_(own, ~shared)
        mine = select(learnings.c.id).where(own)
        kept = select(learnings.c.id).where(learnings.c.user_id == user_id, shared)
        their_sessions = select(sessions.c.session_id).where(sessions.c.user_id == user_id)
        detach: list[Any] = []
        if keep_shared:
            detach = [
                update(learning_history)
                .where(learning_history.c.learning_id.in_(kept))
                .values(user_id=None, run_id=None),
                update(learnings)
                .where(learnings.c.user_id == user_id, shared)
                .values(user_id=None, session_id=None, run_id=None),
            ]
        statements = [
            *detach,
            delete(learning_history).where(
                or_(learning_history.c.user_id == user_id, learning_history.c.learning_id.in_(mine))
            ),
            delete(learnings).where(own),
            delete(jobs).where(jobs.c.user_id == user_id),
            delete(runs).where(
                or_(runs.c.user_id == user_id, runs.c.session_id.in_(their_sessions))
            ),
            delete(sessions).where(sessions.c.user_id == user_id),
        ]
        with self.transaction(action=f"delete user {user_id!r}") as conn:
            touched = conn.execute(
                select(learnings.c.store, learnings.c.scope).where(own).distinct()
            )
            scopes = touched.all()
            counts = [conn.execute(statement).rowcount for statement in statements]
            draw_scope_tokens_now(conn)
            # The token rows of the scopes this emptied: a user's scope names the user. Safe
            # for caches: a scope without a token is never served from memory (kern.db._scopes).
            emptied = []
            for store, scope in scopes:
                gone = conn.execute(
                    delete(learning_scopes).where(
                        learning_scopes.c.store == store,
                        learning_scopes.c.scope == scope,
                        ~exists().where(learnings.c.store == store, learnings.c.scope == scope),
                    )
                ).rowcount
                if gone:
                    emptied.append((store, scope))
            # Their tombstones too, for the same reason; snapshots of them are read whole.
            forget_scope_changes(conn, emptied)
        return sum(counts[len(detach) :])
