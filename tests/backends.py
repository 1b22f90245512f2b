"""The database engines the storage and learning tests run on, and how a test reaches one.

A test (or a process it spawns) names its database by a *target*: a SQLite file path or a
PostgreSQL URL. ``open_db`` opens either; module-level so spawned processes can import it.
The PostgreSQL server comes from ``tests/conftest.py`` (pgserver, or KERN_TEST_POSTGRES_URL).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from kern.db._candidates import SEARCH_CACHE_MB
from kern.db.sql import SqlDb
from kern.db.sqlite import SqliteDb, create_sqlite_engine

Clock = Callable[[], datetime]


def is_postgres(target: str) -> bool:
    return target.startswith(("postgresql://", "postgresql+psycopg://", "postgres://"))


def open_db(
    target: str,
    *,
    clock: Clock | None = None,
    busy_timeout_ms: int = 30_000,
    search_cache_mb: float = SEARCH_CACHE_MB,
    **options: Any,
) -> SqlDb:
    """A migrated ``SqliteDb`` or ``PostgresDb`` for ``target``; ``options`` go to
    ``PostgresDb``. The long SQLite busy timeout lets many writers queue for the one write lock
    on a loaded 2-core machine."""
    if is_postgres(target):
        from kern.db.postgres import PostgresDb

        return PostgresDb(target, clock=clock, search_cache_mb=search_cache_mb, **options)
    return SqliteDb(
        db_file=target,
        clock=clock,
        busy_timeout_ms=busy_timeout_ms,
        search_cache_mb=search_cache_mb,
    )


def bare_engine(target: str) -> Engine:
    """An engine for ``target`` that migrates nothing (for ``SqlDb(engine)``)."""
    if is_postgres(target):
        from kern.db.postgres import create_postgres_engine

        return create_postgres_engine(target)
    return create_sqlite_engine(target)


class PostgresCluster:
    """A PostgreSQL server where tests create and drop their own databases.

    Each test gets a fresh database: a copy of a template migrated once per session
    (``create``), or an empty one (``create(migrated=False)``) for migration tests.
    """

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self._admin = create_engine(
            make_url(admin_url).set(drivername="postgresql+psycopg"),
            isolation_level="AUTOCOMMIT",
            poolclass=NullPool,
        )
        self._names = itertools.count()
        self._prefix = f"kern_test_{os.getpid()}"
        self.template = f"{self._prefix}_template"
        self._execute(f"DROP DATABASE IF EXISTS {self.template}")
        self._execute(f"CREATE DATABASE {self.template}")
        open_db(self.url(self.template)).close()  # migrated once, copied by every test

    def url(self, database: str) -> str:
        return make_url(self.admin_url).set(database=database).render_as_string(False)

    def create(self, *, migrated: bool = True) -> str:
        name = f"{self._prefix}_{next(self._names)}"
        template = f" TEMPLATE {self.template} STRATEGY FILE_COPY" if migrated else ""
        self._execute(f"CREATE DATABASE {name}{template}")
        return self.url(name)

    def drop(self, url: str) -> None:
        # FORCE: a test that failed may have left a pool (or a killed worker) connected.
        self._execute(f"DROP DATABASE IF EXISTS {make_url(url).database} WITH (FORCE)")

    def close(self) -> None:
        self._execute(f"DROP DATABASE IF EXISTS {self.template} WITH (FORCE)")
        self._admin.dispose()

    def _execute(self, statement: str) -> None:
        with self._admin.connect() as conn:
            conn.exec_driver_sql(statement)


class Backend:
    """One test's database on one engine: ``target`` is migrated; ``fresh`` makes more."""

    def __init__(self, name: str, tmp_path: Path, cluster: PostgresCluster | None) -> None:
        self.name = name
        self._tmp_path = tmp_path
        self._cluster = cluster
        self._created: list[str] = []
        self._files = itertools.count()
        self.target = self.fresh(migrated=True)

    @property
    def postgres(self) -> bool:
        return self.name == "postgres"

    def fresh(self, *, migrated: bool = False) -> str:
        """Another database of this engine, empty (or migrated), dropped after the test."""
        if self._cluster is None:
            path = self._tmp_path / "db" / f"kern-{next(self._files)}.db"
            if migrated:
                SqliteDb(db_file=path).close()
            return str(path)
        url = self._cluster.create(migrated=migrated)
        self._created.append(url)
        return url

    def open(self, target: str | None = None, **kwargs: Any) -> SqlDb:
        return open_db(target or self.target, **kwargs)

    def cleanup(self) -> None:
        if self._cluster is not None:
            for url in self._created:
                self._cluster.drop(url)
