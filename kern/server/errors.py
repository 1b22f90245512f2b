"""kern's error tree as HTTP statuses: the caller's mistakes are 4xx with the message, never
a 500; a database that failed is 503, a model provider that failed is 502."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from kern.errors import (
    ConfigError,
    ConflictError,
    KernError,
    ModelError,
    NotFoundError,
    RunLimitError,
    StorageError,
    ToolError,
)

__all__ = ["error_status", "install_error_handlers"]

# Most specific first: ConflictError is a StorageError, MissingDependencyError a ConfigError.
_STATUSES: tuple[tuple[type[KernError], int], ...] = (
    (NotFoundError, 404),
    (ConflictError, 409),
    (ConfigError, 400),
    (StorageError, 503),
    (ModelError, 502),
    (RunLimitError, 502),
    (ToolError, 400),
)


def error_status(exc: KernError) -> int:
    for kind, status in _STATUSES:
        if isinstance(exc, kind):
            return status
    return 500


async def _kern_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, KernError)
    return JSONResponse(
        {"detail": str(exc), "error": type(exc).__name__}, status_code=error_status(exc)
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(KernError, _kern_error)
