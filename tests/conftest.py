from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from kern._sync import wait_for_background


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
