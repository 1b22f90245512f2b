"""One exception tree for everything kern raises.

Provider and database errors are translated at the boundary into these classes, so callers
can catch ``KernError`` (or one branch of it) without importing any SDK.
"""

from __future__ import annotations

import re

from kern import DISTRIBUTION

__all__ = [
    "ConfigError",
    "ConflictError",
    "InvalidArgumentError",
    "JobLostError",
    "KernError",
    "MissingDependencyError",
    "ModelError",
    "ModelHTTPError",
    "ModelOutputError",
    "ModelTimeoutError",
    "NotFoundError",
    "RunLimitError",
    "StorageError",
    "TooLargeError",
    "ToolError",
    "short_error",
]


class KernError(Exception):
    """Base of every error kern raises on purpose."""


class ConfigError(KernError):
    """The developer asked for something kern cannot do; the message says what to change."""


class InvalidArgumentError(ConfigError, ValueError):
    """A call was given a value it cannot use (a negative limit, something that is not a write
    operation); the message names the argument. Also a ``ValueError``, as Python code expects
    of a bad argument."""


class TooLargeError(InvalidArgumentError):
    """An input is over one of kern's size limits (``kern.limits``); the REST API answers 413."""

    def __init__(self, what: str, size: int, limit: int, unit: str = "characters") -> None:
        self.size = size
        self.limit = limit
        super().__init__(
            f"{what} is too large: {size:,} {unit}, the limit is {limit:,} (kern.limits)"
        )


class MissingDependencyError(ConfigError):
    """An optional extra is not installed; the message carries the install command."""

    def __init__(self, package: str, extra: str) -> None:
        self.package = package
        self.extra = extra
        super().__init__(
            f"{package!r} is not installed. Install it with: pip install '{DISTRIBUTION}[{extra}]'"
        )


class ModelError(KernError):
    """A model provider failed to give a usable answer."""

    def __init__(self, message: str, *, provider: str) -> None:
        self.provider = provider
        super().__init__(f"{provider}: {message}")


class ModelHTTPError(ModelError):
    """The provider answered with an HTTP error that retrying did not (or cannot) fix."""

    def __init__(self, message: str, *, provider: str, status_code: int) -> None:
        self.status_code = status_code
        super().__init__(f"HTTP {status_code}: {message}", provider=provider)


class ModelTimeoutError(ModelError):
    """The provider did not answer in time, after retries."""


class ModelOutputError(ModelError):
    """The provider answered, but not in the shape asked for (e.g. invalid structured output)."""


class StorageError(KernError):
    """The database refused or failed a read or write; nothing was reported as saved."""


class ToolError(KernError):
    """Raised by a tool to send a clear error message back to the model."""


class RunLimitError(KernError):
    """A run exceeded a configured limit (e.g. the number of model steps)."""


class NotFoundError(KernError):
    """No such item in the caller's scope (it may not exist, or belong to someone else: the
    two cases are deliberately indistinguishable)."""


class ConflictError(StorageError):
    """A write lost a race (the row changed or is gone); nothing was written."""


class JobLostError(StorageError):
    """A job's claim is no longer held (its lease expired and another worker took it, or it is
    already done); the work was not applied, so it cannot be applied twice."""


_TRACEBACK = "Traceback (most recent call last)"
# A traceback frame ('  File "app.py", line 376, in handler' and its source line), which
# servers also send without the "Traceback" header.
_FRAME = re.compile(r'\s*File "[^"\n]*", line \d+[^\n]*(?:\n[ \t]+\S[^\n]*)?')


def short_error(error: BaseException | str, limit: int = 500) -> str:
    """An error as one bounded line, for logs and stored job errors.

    Servers put Python tracebacks in their error bodies; frames are dropped and only a
    traceback's last line (the exception itself) is kept, whitespace is collapsed and the
    text is cut at ``limit`` characters, so one failing request cannot fill a log or a
    database row.
    """
    text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    text = _FRAME.sub("", text)
    if _TRACEBACK in text:
        head, _, trace = text.partition(_TRACEBACK)
        lines = [line for line in trace.splitlines() if line.strip()]
        text = f"{head.strip()} {lines[-1].strip() if lines else ''}".strip()
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
