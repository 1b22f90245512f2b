"""kern's error tree as HTTP statuses: the caller's mistakes are 4xx with the message, never
a 500; a database that failed is 503, a model provider that failed is 502."""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from kern.errors import (
    ConfigError,
    ConflictError,
    KernError,
    ModelError,
    NotFoundError,
    RunLimitError,
    StorageError,
    TooLargeError,
    ToolError,
)

__all__ = ["error_status", "install_error_handlers"]

# Most specific first: ConflictError is a StorageError; TooLargeError and
# MissingDependencyError are ConfigErrors.
_STATUSES: tuple[tuple[type[KernError], int], ...] = (
    (NotFoundError, 404),
    (ConflictError, 409),
    (TooLargeError, 413),
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


class AsciiJSONResponse(JSONResponse):
    """JSON with non-ASCII escaped: an error that echoes the caller's input stays encodable
    even when that input holds a lone surrogate (which UTF-8 cannot carry)."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False).encode("ascii")


async def _kern_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, KernError)
    return AsciiJSONResponse(
        {"detail": str(exc), "error": type(exc).__name__}, status_code=error_status(exc)
    )


async def _invalid_request(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return AsciiJSONResponse({"detail": jsonable_encoder(exc.errors())}, status_code=422)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(KernError, _kern_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
